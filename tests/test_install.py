"""The package as users get it: a wheel installed into a fresh virtual environment, used from another folder.

The fresh environment holds only the wheel (sweep, its configs and the hydra_plugins entry); the third-party
packages it needs are read from this project's environment through a ``.pth`` file, so the test needs no network
and no second multi-gigabyte torch. A ``.pth`` in a folder added that way is not processed, so the project's own
editable install stays invisible: what runs is what the wheel holds.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import optuna
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
APPS = Path(__file__).parent / "apps"


def _fresh_venv(path: Path) -> Path:
    """A new venv that sees the project's third-party packages (pip and setuptools too) but none of its code."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=300)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(subprocess.run([path / "bin" / "python", "-c", where], check=True, capture_output=True,
                                  text=True).stdout.strip())
    (purelib / "project-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return path


def _pip(env: Path, *args: str) -> None:
    subprocess.run([env / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", *args],
                   check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the project's wheel installed."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"  # a clean copy: setuptools would reuse a stale build/ folder of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "src"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(base / "wheels"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (base / "wheels").glob("sweep-*.whl")
    env = _fresh_venv(base / "venv")
    _pip(env, str(wheel))
    return env


def test_the_wheel_holds_the_code_configs_and_plugin(venv: Path) -> None:
    code = "import sweep, hydra_plugins.sweep_optuna_sweeper as p; print(sweep.__file__); print(p.__file__)"
    out = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(line.startswith(str(venv)) for line in out.splitlines()), out
    assert str(ROOT / "src") not in out
    assert sysconfig.get_path("purelib") not in out


def test_a_one_trial_sweep_runs_from_any_folder(venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [venv / "bin" / "sweep", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "name=wheel",
         "optimizer.lr=choice(0.05)", "train.epochs=1", "deepfool.samples=20",
         f"mlflow.tracking_uri=sqlite:///{tmp_path}/m.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    journal = optuna.storages.journal.JournalFileBackend(str(tmp_path / "multirun" / "wheel" / "optuna.journal"))
    study = optuna.load_study(study_name="wheel", storage=optuna.storages.JournalStorage(journal))
    assert [t.state.name for t in study.trials] == ["COMPLETE"]


def test_an_unrelated_hydra_app_gets_the_sweeper(venv: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [venv / "bin" / "python", "-W", "error", str(APPS / "sphere" / "sphere.py"), "-m",
         f"hydra.sweep.dir={tmp_path}/s", "hydra.sweeper.n_trials=3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "s" / "optimization_results.yaml").is_file()


def test_installed_beside_hydra_optuna_sweeper_it_says_so_in_one_line(tmp_path: Path) -> None:
    """The official plugin's real wheel (downloaded by ``make setup``), installed into a folder on PYTHONPATH."""
    (wheel,) = (ROOT / ".venv" / "wheels").glob("hydra_optuna_sweeper-*.whl")
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


def test_a_strict_editable_install_finds_the_plugin_and_the_configs(tmp_path: Path) -> None:
    """setuptools' strict editable mode links the files into a tree of its own; Hydra must still discover the
    plugin there and the CLI its configs (the default mode is what make setup uses)."""
    env = _fresh_venv(tmp_path / "venv")
    _pip(env, "--no-build-isolation", "-e", str(ROOT), "--config-settings", "editable_mode=strict")
    code = ("from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
            "print([p.__module__ for p in Plugins.instance().discover(Sweeper)])")
    found = subprocess.run([env / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hydra_plugins.sweep_optuna_sweeper.optuna_sweeper" in found
    job = subprocess.run([env / "bin" / "sweep", "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True)
    assert job.returncode == 0 and "optimizer:" in job.stdout, job.stderr
