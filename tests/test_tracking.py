"""MLflow runs that never take a trial down, against a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra_optuna_studies.sweep_run import RunsView
from mlflow import MlflowClient

from sweep.tracking import TrialRun, flatten, shown


def test_epoch_metrics_are_queued_and_all_arrive_by_the_end(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    run = TrialRun(True, uri, "e")
    run.start("r", {"a": 1}, {"t": "x"})
    for epoch in range(1, 6):
        run.log_epoch({"loss": 1.0 / epoch}, epoch)
    run.end("FINISHED")
    client = MlflowClient(uri)
    history = client.get_metric_history(run.id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]
    assert client.get_run(run.id).info.status == "FINISHED"


@pytest.fixture
def no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow retries a request with backoff for minutes; the tests of a store that fails need its first failure."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def test_a_store_that_fails_is_warned_about_once_and_the_run_gives_up(caplog, no_retries: None) -> None:
    run = TrialRun(True, "http://127.0.0.1:9", "e")  # a tracking server that is not there
    run.start("r", {}, {})
    run.log({"x": 1.0})
    run.end("FINISHED")
    assert not run.enabled and run.run_id is None
    assert sum("MLflow logging to " in r.getMessage() for r in caplog.records) == 1


def test_flatten_turns_nested_config_into_param_names() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": None}) == {"a.b": 1, "a.c.d": [2], "e": None}


def test_a_store_that_failed_is_not_tried_again_by_later_runs(no_retries: None) -> None:
    import time

    first = TrialRun(True, "http://127.0.0.1:9", "e")
    first.start("r", {}, {})
    assert not first.enabled
    started = time.perf_counter()
    second = TrialRun(True, "http://127.0.0.1:9", "e")
    second.start("r", {}, {})
    assert not second.enabled and time.perf_counter() - started < 0.1


def test_metrics_reach_mlflow_with_six_significant_digits_and_an_accuracy_keeps_its_count(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    run = TrialRun(True, uri, "e")
    run.start("r", {}, {})
    run.log({"acc": 141 / 144, "small": 1.23456789e-7, "big": 123456789.0})
    run.end("FINISHED")
    metrics = MlflowClient(uri).get_run(run.id).data.metrics
    assert metrics == {"acc": 0.979167, "small": 1.23457e-7, "big": 123457000.0}
    for n in (144, 9_999, 999_999):  # k/n at 6 significant digits still names its k
        assert all(round(shown(k / n) * n) == k for k in range(0, n + 1, max(1, n // 997)))


def test_the_sweep_view_shows_its_study_flat_in_the_first_objectives_direction_and_charts_complete_trials() -> None:
    view = RunsView(study="bob's", params=["optimizer.lr", "train.batch_size"],
                    columns=["final_val_loss", "final_test_acc"], ascending=True,
                    charted=["val_loss", "deepfool_margin"], curves=["val_loss"], log_params=["optimizer.lr"])
    state = view.state()
    assert view.key == "sweep.bob_s" and state["searchFilter"] == 'tags.`sweep.study` = "bob\'s"'
    assert state["orderByKey"] == "metrics.`complete.val_loss`" and state["orderByAsc"] is True  # failed last
    assert state["groupBy"] is None  # no group row: it would show each column's max as if it were a config
    assert state["columnOrder"][:6] == ["0", "attributes.`Run Name`", "tags.`optuna.state`", "tags.`sweep.best`",
                                        "params.`optimizer.lr`", "params.`train.batch_size`"]
    widths = state["columnWidths"]  # each header fits (8 px a character beside the sort and menu icons)
    assert widths["metrics.`final_test_acc`"] >= 8 * len("final_test_acc") + 40
    scatter = [(c["xaxis"]["key"], c["yaxis"]["key"]) for c in state["compareRunCharts"] if c["type"] == "SCATTER"]
    assert sorted(scatter) == sorted((x, f"complete.{m}") for x in ("log10 optimizer.lr", "train.batch_size")
                                     for m in view.charted)  # lr on a log10 axis, only complete trials' values
    assert len({c["uuid"] for c in state["compareRunCharts"]}) == len(state["compareRunCharts"]) == 5
    sections = {s["uuid"]: s for s in state["compareRunSections"]}
    assert {c["metricSectionId"] for c in state["compareRunCharts"]} <= set(sections)
    assert {s["columns"] for s in sections.values()} == {2}  # two charts a row: titles and legends less cut
