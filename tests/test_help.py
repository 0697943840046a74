"""`sweep --help` and the one-line answers of the command line."""

from __future__ import annotations

from pathlib import Path

from sweep.config import METRICS
from tests.conftest import run_cli


def test_help_has_usage_examples_groups_metrics_and_sweeper_keys(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    text = result.stdout
    assert result.returncode == 0 and text.startswith("sweep: train and measure one PyTorch classifier")
    assert "Usage:" in text and "sweep -m +experiment=quickstart" in text
    assert "optimizer: adam, adamw, rmsprop, sgd" in text and "experiment/quick: " in text
    flat = " ".join(text.split())
    assert all(metric in flat for metric in METRICS)
    assert "n_trials" in flat and "heartbeat_interval" in flat and "nsgaii" in flat
    assert "powered by Hydra" not in text and "optuna:" not in text


def test_cfg_with_multirun_is_one_line(tmp_path: Path) -> None:
    result = run_cli("-m", "+experiment=quickstart", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "drop -m" in result.stderr and not list(tmp_path.iterdir())


def test_shell_completion_is_hydras(tmp_path: Path) -> None:
    result = run_cli("-sc", "install=bash", cwd=tmp_path)
    assert result.returncode == 0 and "hydra_bash_completion" in result.stdout and "complete" in result.stdout
