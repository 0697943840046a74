"""hydra-optuna-studies as a Hydra user installs it: its wheel alone, in a fresh virtual environment with no torch.

The environment is built the way pip builds it for a user, resolving the wheel's dependencies, only offline: from
the wheelhouse ``make setup`` downloads for the sweeper (``pip download ./sweeper``). So the test fails if the wheel
ever needs torch, torchvision, scikit-learn or the app, and a foreign app's whole workflow runs there: a TPE sweep on
SQLite with pruning, a resume, the report, the export.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.tests.helpers import APPS, run_app
from sweeper.tests.servers import ROOT

pytestmark = pytest.mark.slow
WHEELHOUSE = ROOT / ".venv" / "wheels"


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    """A fresh venv with the sweeper's wheel and what it depends on, and nothing else."""
    base = tmp_path_factory.mktemp("alone")
    source = base / "source"  # a clean copy: setuptools would reuse a stale build/ folder of the checkout
    shutil.copytree(ROOT / "sweeper", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(base), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = base.glob("hydra_optuna_studies-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=300)
    subprocess.run([base / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(WHEELHOUSE), "--no-build-isolation", str(wheel)], check=True, timeout=600)
    return base / "venv"


def test_the_sweeper_installs_without_torch_or_the_app(alone: Path) -> None:
    code = ("import importlib.util as u\n"
            "print([m for m in ('torch', 'torchvision', 'sklearn', 'sweep') if u.find_spec(m)])")
    out = subprocess.run([alone / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_foreign_apps_whole_workflow_runs_there(alone: Path, tmp_path: Path) -> None:
    python = str(alone / "bin" / "python")
    storage = f"sqlite:///{tmp_path}/study.db"
    args = ["hydra/sweeper=optuna", "hydra/sweeper/sampler=tpe", "hydra.sweeper.sampler.seed=1",
            "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.n_startup_trials=2",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=pruned", "lr=interval(0.01, 6.0)"]
    first = run_app("pruned", *args, "hydra.sweeper.n_trials=6", cwd=tmp_path, python=python)
    assert first.returncode == 0, first.stderr
    again = run_app("pruned", *args, "hydra.sweeper.n_trials=9", "hydra/launcher=pool", "hydra.sweeper.n_jobs=2",
                    cwd=tmp_path, python=python)  # resumed, two at a time in the pool's processes
    assert again.returncode == 0, again.stderr
    assert "3 trial(s) to run" in again.stdout
    tools = alone / "bin"
    report = subprocess.run([tools / "sweep-report", "--storage", storage, "--out", str(tmp_path / "report")],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "report.html").is_file()
    export = subprocess.run([tools / "sweep-export", "--storage", storage, "--out", str(tmp_path / "best")],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    assert "lr:" in (tmp_path / "best" / "best.yaml").read_text()
    code = ("import optuna; s = optuna.load_study(study_name='pruned', storage='" + storage + "');"
            "print(len(s.trials), sorted({t.state.name for t in s.trials}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("9 ") and "COMPLETE" in out


def test_installed_beside_hydra_optuna_sweeper_it_says_so_in_one_line(tmp_path: Path) -> None:
    """The official plugin's real wheel (downloaded by ``make setup``), installed into a folder on PYTHONPATH."""
    (wheel,) = WHEELHOUSE.glob("hydra_optuna_sweeper-*.whl")
    target = tmp_path / "official"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    result = subprocess.run(
        [sys.executable, str(APPS / "sphere" / "sphere.py"), "-m", f"hydra.sweep.dir={tmp_path}/s",
         "hydra.sweeper.n_trials=2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(target)},
    )
    clash = [line for line in result.stderr.splitlines() if "hydra-optuna-sweeper is installed beside" in line]
    assert len(clash) == 1, result.stderr
