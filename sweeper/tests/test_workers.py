"""Many workers on one study, and no idle slot: real worker processes, a real PostgreSQL, real signals.

Workers are separate ``python app.py -m ...`` processes with the same storage and study name, started together, as
users start them by hand, under SLURM or in containers; a worker is killed with SIGKILL, as the OOM killer does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.contract import RETRY_OF_ATTR, WORKER_ATTR
from optuna.trial import TrialState

from sweeper.tests.helpers import APPS, fresh_storage
from sweeper.tests.servers import PG_PASSWORD, fresh_database

pytestmark = pytest.mark.slow


def _worker(app: str, cwd: Path, *overrides: str) -> subprocess.Popen:
    command = [sys.executable, str(APPS / app / f"{app}.py"), "-m", f"hydra.sweep.dir={cwd}/sweep", *overrides]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(workers: list[subprocess.Popen], timeout: float = 240) -> list[str]:
    outputs = [w.communicate(timeout=timeout)[0] for w in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output
    return outputs


def _trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=fresh_storage(storage)).trials


def test_three_workers_started_together_on_a_fresh_database_run_each_grid_point_once(postgres: str,
                                                                                     tmp_path: Path) -> None:
    """No race at table creation, each point claimed once through the storage, no random repeats at the end."""
    storage = fresh_database(postgres, "workers_grid")
    args = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared", "point=range(0,12)",
            "seconds=0.3"]
    outputs = _finish([_worker("sleepy", tmp_path, *args) for _ in range(3)])
    trials = _trials(storage, "shared")
    assert sorted(t.params["point"] for t in trials) == list(range(12))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) >= 2  # the work was shared
    assert not any(PG_PASSWORD in output or "Traceback" in output for output in outputs)


def test_three_tpe_workers_finish_exactly_n_trials(postgres: str, tmp_path: Path) -> None:
    storage = fresh_database(postgres, "workers_tpe")
    args = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=tpe", "hydra.sweeper.n_trials=30",
            "hydra/sweeper/sampler=tpe", "seconds=interval(0.0,0.05)", "point=range(0,100)"]
    _finish([_worker("sleepy", tmp_path, *args) for _ in range(3)])
    trials = _trials(storage, "tpe")
    assert len(trials) == 30 and {t.state for t in trials} == {TrialState.COMPLETE}


@pytest.mark.parametrize("launcher", [["hydra/launcher=pool"], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["pool", "joblib"])
def test_with_two_slots_a_short_trial_never_waits_for_a_long_one(tmp_path: Path, launcher: list[str]) -> None:
    """Trials of 2 s and 0.2 s alternate, two at a time. Each slot starts its next trial as soon as its own ends, so
    the sweep takes about half the summed trial time, far less than batches of two would (each batch as long as its
    slowest trial); and each trial's seconds are its own."""
    args = [*launcher, "hydra.sweeper.n_jobs=2", "point=range(0,4)", "seconds=choice(2.0,0.2)"]
    _finish([_worker("sleepy", tmp_path, *args)])
    trials = sorted(_trials(str(tmp_path / "sweep" / "optuna.journal"), "sleepy"), key=lambda t: t.number)
    assert len(trials) == 8 and {t.state for t in trials} == {TrialState.COMPLETE}
    seconds = [t.duration.total_seconds() for t in trials]
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    batches = sum(max(seconds[i : i + 2]) for i in range(0, len(seconds), 2))  # the batch-synchronous figure
    assert span < 0.8 * batches, (span, batches, seconds)
    short = [s for t, s in zip(trials[2:], seconds[2:], strict=True) if t.params["seconds"] == 0.2]
    assert max(short) < 1.5, seconds  # its own time, not its batch's (the first two also start the worker processes)


def test_a_worker_killed_mid_trial_is_failed_and_its_point_run_by_the_other(tmp_path: Path) -> None:
    args = ["point=range(0,6)", "seconds=1.5", "hydra.sweeper.heartbeat_interval=1"]
    journal = str(tmp_path / "sweep" / "optuna.journal")
    victim, survivor = _worker("sleepy", tmp_path, *args), _worker("sleepy", tmp_path, *args)
    deadline = time.time() + 120
    while time.time() < deadline:
        running = [t for t in _trials(journal, "sleepy") if t.state == TrialState.RUNNING] if Path(
            journal).exists() else []
        mine = [t for t in running if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}")]
        if mine and len(running) > len(mine):  # the survivor runs too: the time to the orphan's failure is its own
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the two workers never ran a trial at once")
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.wait()
    _finish([survivor])
    trials = _trials(journal, "sleepy")
    orphan = next(t for t in trials if t.number == mine[0].number)
    assert orphan.state == TrialState.FAIL and "ended while it ran" in orphan.user_attrs["fail_reason"]
    assert orphan.datetime_complete.timestamp() - killed_at < 3 * 1.0 + 1.5 + 5  # three beats and a trial, at most
    retry = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == orphan.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params["point"] == orphan.params.get("point", retry[0].params["point"])
    complete = sorted(t.params["point"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == list(range(6))


def test_workers_starts_that_many_local_worker_processes(tmp_path: Path) -> None:
    """One command, three worker processes on one study; this process shows the progress and the final table."""
    result = subprocess.run(
        [sys.executable, str(APPS / "sleepy" / "sleepy.py"), "-m", f"hydra.sweep.dir={tmp_path}/sweep",
         "hydra.sweeper.workers=3", "point=range(0,9)", "seconds=0.5"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stdout + result.stderr
    trials = _trials(str(tmp_path / "sweep" / "optuna.journal"), "sleepy")
    assert sorted(t.params["point"] for t in trials) == list(range(9))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.user_attrs[WORKER_ATTR] for t in trials}) >= 2
    assert result.stdout.count("Study 'sleepy': 9 trials (9 complete)") == 1  # the table once, by the starter


def test_workers_opening_a_fresh_database_at_the_same_instant_all_get_the_storage(postgres: str,
                                                                                  tmp_path: Path) -> None:
    """Optuna's first-time table creation races (a unique-key violation for all but one; optuna #1092, #4621)."""
    storage = fresh_database(postgres, "workers_race")
    start = time.time() + 3.0
    code = ("import sys, time\n"
            "from hydra_optuna_studies.storage import open_storage\n"
            f"while time.time() < {start}: time.sleep(0.001)\n"
            f"open_storage({storage!r})\n"
            "print('opened')")
    workers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(4)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert [o.strip() for o in outputs] == ["opened"] * 4, outputs
