"""The study side loads without torch: sweep-export, sweep-report and the sweeper answer fast."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["sweep.study.export", "sweep.study.report", "sweep.reporting", "hydra_plugins.sweep_optuna_sweeper._impl"],
)
def test_study_side_modules_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
