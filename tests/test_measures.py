"""The registry of measures: what it finds, what it holds a measure to, and the test-split DeepFool margin."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra_optuna_studies.errors import ConfigError

from sweep.config import METRICS, parse_config
from sweep.measures import MEASURES, Measure, measure_of
from sweep.measures.deepfool import DeepFoolConfig
from sweep.trial import TrialJob, run_trial
from tests.conftest import composed, trial_config


def test_the_registry_finds_every_measure_module_and_their_metrics_are_objectives() -> None:
    assert list(MEASURES) == ["deepfool", "deepfool_test"]
    for measure in MEASURES.values():
        assert measure.headline in measure.metrics and set(measure.metrics) <= set(METRICS)
        assert all(measure_of(metric) is measure for metric in measure.metrics)
    assert measure_of("val_acc") is None


def test_a_measure_is_held_to_the_metrics_it_declares() -> None:
    sloppy = Measure("sloppy", DeepFoolConfig, lambda model, data, cfg: {"other": 1.0}, ("sloppy_x",), "sloppy_x")
    with pytest.raises(RuntimeError, match=r"measure sloppy returned \['other'\], declared \['sloppy_x'\]"):
        sloppy(None, None, None)


def test_an_objective_needs_its_measure_enabled() -> None:
    with pytest.raises(ConfigError, match="objective: deepfool_test_margin needs deepfool_test.enabled=true"):
        parse_config(composed("objective=[deepfool_test_margin]"))
    cfg = parse_config(composed("objective=[deepfool_test_margin]", "deepfool_test.enabled=true"))
    assert cfg.measures["deepfool_test"].split == "test"


def test_the_test_split_margin_is_the_deepfool_margin_measured_on_test(tmp_path: Path) -> None:
    """Both measures in one trial; the test-split numbers equal a trial that points deepfool itself at test."""
    common = ("train.epochs=3", "deepfool.samples=120", "mlflow.enabled=false", "train.device=cpu")
    cfg, resolved = trial_config(*common, "deepfool_test.enabled=true", "deepfool_test.samples=120")
    both = run_trial(TrialJob(cfg, resolved, tmp_path / "both", "both"))
    cfg, resolved = trial_config(*common, "deepfool.split=test")
    on_test = run_trial(TrialJob(cfg, resolved, tmp_path / "test", "test"))
    for statistic in ("margin", "median", "rho", "success_rate", "iterations", "misclassified"):
        assert both[f"deepfool_test_{statistic}"] == pytest.approx(on_test[f"deepfool_{statistic}"], nan_ok=True)
    assert both["deepfool_test_margin"] != both["deepfool_margin"]  # the two splits differ
