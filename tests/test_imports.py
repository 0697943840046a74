"""The app's command line and a sweep's planning load no torch: `sweep --help` and a bad command answer fast."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["sweep.cli", "sweep.config"])
def test_the_command_line_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_planning_a_sweep_of_sweeps_own_trial_does_not_import_torch() -> None:
    """The schema, the app's description of its study and the sweeper's checks: what runs before any trial."""
    code = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from sweep.cli import CONFIG_DIR, describe_study\n"
        "with initialize_config_dir(config_dir=CONFIG_DIR, version_base='1.3'):\n"
        "    cfg = compose('config', overrides=['model=cnn', 'optimizer=adam', 'data=mnist', 'data.download=true'])\n"
        "spec = describe_study(cfg)\n"
        "print(spec.metrics, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['val_acc'] False"
