"""The trial side's public API (hydra_optuna_studies.reporting) against a real journal study, as a job sees it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies import reporting
from hydra_optuna_studies.contract import ENV_STORAGE, PRUNER_ATTR, TrialLink, current_link
from hydra_optuna_studies.storage import open_storage

from sweeper.tests.helpers import fresh_storage


def _linked_trial(tmp_path: Path, monkeypatch, pruner: dict) -> optuna.Trial:
    """A RUNNING trial of a study in a journal file, and this process's environment pointing at it."""
    spec = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(spec))
    study.set_user_attr(PRUNER_ATTR, pruner)
    trial = study.ask()
    for key, value in TrialLink(spec, "s", trial.number).env().items():
        monkeypatch.setenv(key, value)
    return trial


def _stored(tmp_path: Path) -> optuna.trial.FrozenTrial:
    storage = fresh_storage(str(tmp_path / "optuna.journal"))  # a fresh reader: what is on disk
    return optuna.load_study(study_name="s", storage=storage).trials[0]


def test_outside_a_sweep_every_call_is_a_no_op(monkeypatch) -> None:
    monkeypatch.delenv(ENV_STORAGE, raising=False)
    assert current_link() is None
    reporting.report(1.0, step=1)
    reporting.record({"a": 1.0})


def test_report_stores_values_and_raises_when_the_pruner_says_stop(tmp_path: Path, monkeypatch) -> None:
    _linked_trial(tmp_path, monkeypatch, {"_target_": "optuna.pruners.ThresholdPruner", "upper": 1.0})
    reporting.report(0.5, step=1)
    with pytest.raises(optuna.TrialPruned, match="pruned at step 2"):
        reporting.report(2.0, step=2)
    assert _stored(tmp_path).intermediate_values == {1: 0.5, 2: 2.0}


def test_without_a_pruner_nothing_is_written_per_step(tmp_path: Path, monkeypatch) -> None:
    _linked_trial(tmp_path, monkeypatch, {"_target_": "optuna.pruners.NopPruner"})
    for step in range(1, 4):
        reporting.report(10.0 * step, step=step)
    assert _stored(tmp_path).intermediate_values == {}


def test_record_keeps_metrics_as_strict_json(tmp_path: Path, monkeypatch) -> None:
    _linked_trial(tmp_path, monkeypatch, {"_target_": "optuna.pruners.NopPruner"})
    reporting.record({"val_acc": 0.9, "margin": float("nan"), "epochs": 3})
    assert _stored(tmp_path).user_attrs["metrics"] == {"val_acc": 0.9, "margin": None, "epochs": 3.0}


def test_link_round_trips_through_the_environment() -> None:
    link = TrialLink("sqlite:///x.db", "study", 7, parent_run_id="abc", experiment="exp")
    assert current_link(link.env()) == link
    assert current_link({**link.env(), "SWEEP_TRIAL_NUMBER": ""}) is None
