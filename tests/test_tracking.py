"""MLflow runs that never take a trial down, against a real SQLite store."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from sweep.tracking import TrialRun, flatten


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


def test_a_store_that_fails_is_warned_about_once_and_the_run_gives_up(caplog) -> None:
    run = TrialRun(True, "http://127.0.0.1:9", "e")  # a tracking server that is not there
    run.start("r", {}, {})
    run.log({"x": 1.0})
    run.end("FINISHED")
    assert not run.enabled and run.run_id is None
    assert sum("MLflow logging failed" in r.getMessage() for r in caplog.records) == 1


def test_flatten_turns_nested_config_into_param_names() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": None}) == {"a.b": 1, "a.c.d": [2], "e": None}


def test_a_store_that_failed_is_not_tried_again_by_later_runs() -> None:
    import time

    first = TrialRun(True, "http://127.0.0.1:9", "e")
    first.start("r", {}, {})
    assert not first.enabled
    started = time.perf_counter()
    second = TrialRun(True, "http://127.0.0.1:9", "e")
    second.start("r", {}, {})
    assert not second.enabled and time.perf_counter() - started < 0.1
