"""The app as users get it: its wheel and the sweeper's, installed into a fresh virtual environment, used from
another folder.

The fresh environment holds only the two wheels (sweep and its configs; hydra-optuna-studies and its Hydra plugin);
the third-party packages they need are read from this project's environment through a ``.pth`` file, so the test
needs no network and no second multi-gigabyte torch. A ``.pth`` in a folder added that way is not processed, so the
project's own editable installs stay invisible: what runs is what the wheels hold. (The sweeper alone, in an
environment with no torch at all: sweeper/tests/test_install.py.)
"""

from __future__ import annotations

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
APPS = ROOT / "sweeper" / "tests" / "apps"


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


def build_wheel(folder: Path, out: Path) -> Path:
    """The wheel of the distribution in ``folder``, built from a clean copy (setuptools would reuse a stale build/
    folder of the checkout)."""
    source = out / f"{folder.name}-source"
    shutil.copytree(folder, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "tests", "__pycache__"))
    before = set(out.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the project's two wheels installed: the sweeper's and the app's."""
    base = tmp_path_factory.mktemp("install")
    app = base / "app"  # the app's distribution without the sweeper's folder, as its sdist would be
    app.mkdir()
    for name in ("pyproject.toml", "README.md", "src"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, app / name)
    wheels = [build_wheel(ROOT / "sweeper", base), build_wheel(app, base)]
    env = _fresh_venv(base / "venv")
    _pip(env, *map(str, wheels))
    return env


def test_the_wheel_holds_the_code_configs_and_plugin(venv: Path) -> None:
    code = ("import sweep, hydra_optuna_studies, hydra_plugins.hydra_optuna_studies as p\n"
            "for m in (sweep, hydra_optuna_studies, p): print(m.__file__)")
    out = subprocess.run([venv / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout
    assert all(line.startswith(str(venv)) for line in out.splitlines()), out
    assert str(ROOT / "src") not in out and str(ROOT / "sweeper") not in out
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


def test_a_strict_editable_install_finds_the_plugin_and_the_configs(tmp_path: Path) -> None:
    """setuptools' strict editable mode links the files into a tree of its own; Hydra must still discover the
    plugin there and the CLI its configs (the default mode is what make setup uses)."""
    env = _fresh_venv(tmp_path / "venv")
    _pip(env, "--no-build-isolation", "--config-settings", "editable_mode=strict", "-e", str(ROOT / "sweeper"),
         "-e", str(ROOT))
    code = ("from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
            "print([p.__module__ for p in Plugins.instance().discover(Sweeper)])")
    found = subprocess.run([env / "bin" / "python", "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hydra_plugins.hydra_optuna_studies.optuna_sweeper" in found
    job = subprocess.run([env / "bin" / "sweep", "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True)
    assert job.returncode == 0 and "optimizer:" in job.stdout, job.stderr
