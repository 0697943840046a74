"""``hydra/launcher=pool``: the sweep's Hydra context is set up once in each worker process, not for every job.

The probe app (``apps/probe``) writes, for each job, its process, how many jobs that process ran before it with the
context kept (a mark on Hydra's ConfigStore singleton, which setting the context up again replaces: under Hydra's
joblib launcher it is 0 for every job) and what it found in its environment. Hydra's own launcher suites run the
pool too (``test_hydra_suites.py``); killed job processes and SIGTERM are in ``test_outages.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from joblib.externals.loky import cpu_count

from sweeper.tests.helpers import APPS, run_app

pytestmark = pytest.mark.slow
PROBE = APPS / "probe" / "probe.py"


def _probes(folder: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(folder.rglob("probe.json"))]


def _environ(**values: str) -> dict[str, str]:
    """This environment without a thread count of its own (the pool's split shows), plus ``values``."""
    return {**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}, **values}


def test_each_process_sets_the_sweeps_context_up_once_and_runs_each_job_with_its_own_config(tmp_path: Path) -> None:
    result = run_app("probe", "hydra.sweeper.n_jobs=2", "point=range(0,8)", cwd=tmp_path,
                     env=_environ(POOL_PROBE="outer"))
    assert result.returncode == 0, result.stderr
    probes = _probes(tmp_path / "sweep")
    assert sorted(p["point"] for p in probes) == list(range(8))  # each job its own config
    by_process = defaultdict(list)
    for probe in probes:
        by_process[probe["pid"]].append(probe["jobs_before"])
    assert 1 <= len(by_process) <= 2  # n_jobs processes, by default the sweeper's slots
    for counts in by_process.values():  # 0, 1, 2, ...: each job found the mark of the jobs before it
        assert sorted(counts) == list(range(len(counts))), by_process
    assert max(len(c) for c in by_process.values()) > 1  # at least one process ran several jobs
    assert {p["threads_at_start"] for p in probes} == {str(max(1, cpu_count() // 2))}  # split, as joblib splits
    assert {p["probe"] for p in probes} == {"outer"}


def test_a_later_sweep_in_the_same_process_gets_its_own_context_and_environment(tmp_path: Path) -> None:
    """Kept processes serve the next sweep of the same process (Hydra's suites, a notebook), with that sweep's
    context and environment, not the first one's: a variable the second sweep's process no longer has is gone."""
    driver = f"""
import os, runpy, sys
for value in ("first", "second"):
    if value == "first":
        os.environ["POOL_PROBE"] = value
    else:
        del os.environ["POOL_PROBE"]
    sys.argv = ["probe.py", "-m", f"hydra.sweep.dir={tmp_path}/{{value}}", "hydra.sweeper.n_jobs=2", "point=range(0,4)"]
    runpy.run_path({str(PROBE)!r}, run_name="__main__")
"""
    result = subprocess.run([sys.executable, "-c", driver], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=_environ())
    assert result.returncode == 0, result.stderr
    first, second = _probes(tmp_path / "first"), _probes(tmp_path / "second")
    assert {p["probe"] for p in first} == {"first"} and {p["probe"] for p in second} == {None}
    assert {p["pid"] for p in second} & {p["pid"] for p in first}  # the processes were kept ...
    assert min(p["jobs_before"] for p in second) == 0  # ... and set up again for the new sweep
    assert sorted(p["point"] for p in second) == list(range(4))


def test_a_pool_of_no_process_is_refused_in_one_line_before_any_trial(tmp_path: Path) -> None:
    result = run_app("probe", "hydra.launcher.n_jobs=0", "point=range(0,2)", cwd=tmp_path)
    assert result.returncode == 1
    assert "hydra.launcher.n_jobs: the pool's worker processes, 1 or more (got 0)" in result.stderr
    assert not (tmp_path / "sweep").exists()
