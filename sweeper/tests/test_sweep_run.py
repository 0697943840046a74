"""The sweep's MLflow run against a real SQLite store: each trial's run ends in the state the study gave the trial,
charted only when complete, and the end of the sweep settles every run as the study has it."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import warnings
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
from hydra_optuna_studies.contract import METRICS_ATTR, STATE_TAG, STUDY_TAG, TRIAL_TAG
from hydra_optuna_studies.results import summarize
from hydra_optuna_studies.sweep_run import BEST_COLOUR, OFF_COLOUR, PALETTE, RunsView, SweepRun, log_axis
from hydra_optuna_studies.tracking import Run
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

PARAMS = {"optimizer.lr": 0.01, "train.batch_size": 8}


def _view(study: str = "s") -> RunsView:
    return RunsView(study=study, params=list(PARAMS), columns=["final_val_acc", "final_deepfool_margin"],
                    ascending=False, charted=["val_acc", "deepfool_margin"], curves=["val_acc"],
                    log_params=["optimizer.lr"], value_chars={"optimizer.lr": 6, "train.batch_size": 3})


def _sweep(uri: str, study: str = "s", experiment: str = "e") -> SweepRun:
    parent = SweepRun(True, uri, experiment)
    parent.open(study, {"sampler": "grid"}, {}, None)
    parent.save_view(_view(study))
    return parent


def _trial(parent: SweepRun, number: int, lr: float, metrics: dict[str, float], status: str = "FINISHED",
           name: str | None = None) -> str:
    """A trial's run as an app makes it (the contract): nested, tagged, its config as params, final_* metrics."""
    run = Run(True, parent.uri, parent.experiment)
    run.start(name or f"trial_{number}", {"optimizer.lr": lr, "train.batch_size": 8},
              {TRIAL_TAG: str(number), STUDY_TAG: "s"}, parent.run_id)
    run.log({f"final_{k}": v for k, v in metrics.items()})
    run.end(status)
    assert run.run_id is not None
    return run.run_id


def test_a_trial_failed_by_the_sweeper_after_its_run_finished_is_failed_and_not_charted(tmp_path: Path) -> None:
    """The app closed its run FINISHED with the margin it could not measure; the sweeper then failed the trial."""
    uri = f"sqlite:///{tmp_path}/m.db"
    parent = _sweep(uri)
    run_id = _trial(parent, 0, 1e-4, {"val_acc": 0.5, "deepfool_margin": math.nan})
    parent.mark_trial(0, "FAIL", "SweepError: deepfool_margin: not measurable (7 samples counted)")
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags[STATE_TAG] == "FAIL"
    assert run.data.tags["sweep.failure"].startswith("SweepError: deepfool_margin: not measurable")
    assert not any(k.startswith("complete.") for k in run.data.metrics)  # the view's charts plot no failed trial
    assert run.data.metrics["final_val_acc"] == 0.5  # what it measured stays, as the app logged it
    assert run.data.tags["mlflow.runColor"] == OFF_COLOUR
    assert run.info.run_name == "trial_0 lr=0.0001 batch_size=8"


def test_a_complete_trial_gets_its_chart_values_a_log10_companion_and_its_values_in_its_name(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    parent = _sweep(uri)
    run_id = _trial(parent, 1, 0.1891787858799261, {"val_acc": 0.9, "deepfool_margin": 0.5, "test_acc": 0.8})
    parent.mark_trial(1, "COMPLETE")
    parent.mark_trial(1, "COMPLETE")  # marking again changes nothing (params cannot be logged twice)
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[STATE_TAG] == "COMPLETE"
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("complete.")} == {
        "complete.val_acc": 0.9, "complete.deepfool_margin": 0.5}  # charted metrics only
    assert float(run.data.params["log10 optimizer.lr"]) == pytest.approx(math.log10(0.1891787858799261), abs=1e-5)
    assert run.info.run_name == "trial_1 lr=0.189179 batch_size=8"  # 6 significant digits, as the tables
    assert run.data.tags["mlflow.runColor"] == PALETTE[1]
    named = _trial(parent, 2, 0.5, {"val_acc": 0.8}, name="lr0.5")  # named by the app's own template
    parent.mark_trial(2, "COMPLETE")
    assert MlflowClient(uri).get_run(named).info.run_name == "lr0.5"


def test_a_pruned_trial_is_killed_and_one_stopped_from_outside_stays_killed_at_the_end(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    parent = _sweep(uri)
    pruned = _trial(parent, 0, 0.5, {"val_acc": 0.1}, status="KILLED")
    orphan = _trial(parent, 1, 0.5, {}, status="FINISHED")
    parent.mark_trial(0, "PRUNED", "pruned at step 2")
    parent.mark_trial(1, "FAIL", "its worker stopped", "KILLED")
    study = _study([(TrialState.PRUNED, 0.5, None, {}), (TrialState.FAIL, 0.5, None, {})])
    parent.log_summary(summarize(study, "memory"), "table", _report(tmp_path))
    client = MlflowClient(uri)
    assert (client.get_run(pruned).info.status, client.get_run(pruned).data.tags[STATE_TAG]) == ("KILLED", "PRUNED")
    assert (client.get_run(orphan).info.status, client.get_run(orphan).data.tags[STATE_TAG]) == ("KILLED", "FAIL")


def test_the_end_of_the_sweep_settles_every_run_as_the_study_has_it(tmp_path: Path) -> None:
    """A result no worker marked (told by a later sweep) gets its state; the best trial its mark and red; a run a
    resumed sweep has beaten loses both; the sweep's run carries the best trial's values under best.* names only."""
    uri = f"sqlite:///{tmp_path}/m.db"
    parent = _sweep(uri)
    client = MlflowClient(uri)
    beaten = _trial(parent, 0, 0.5, {"val_acc": 0.6, "deepfool_margin": 0.3})
    parent.mark_trial(0, "COMPLETE")
    client.set_tag(beaten, "sweep.best", "best")  # best of an earlier sweep of the study
    client.set_tag(beaten, "mlflow.runColor", BEST_COLOUR)
    unmarked = _trial(parent, 1, 0.01, {"val_acc": 0.9, "deepfool_margin": 0.5})
    failed = _trial(parent, 2, 1e-4, {"val_acc": 0.2, "deepfool_margin": math.nan})
    study = _study([(TrialState.COMPLETE, 0.5, 0.6, {"val_acc": 0.6, "test_acc": 0.55}),
                    (TrialState.COMPLETE, 0.01, 0.9, {"val_acc": 0.9, "test_acc": 0.85}),
                    (TrialState.FAIL, 1e-4, None, {"val_acc": 0.2, "test_acc": 0.1})])
    parent.log_summary(summarize(study, "memory"), "table", _report(tmp_path))

    best = client.get_run(unmarked)
    assert best.data.tags[STATE_TAG] == "COMPLETE" and best.data.tags["sweep.best"] == "best"
    assert best.data.tags["mlflow.runColor"] == BEST_COLOUR and best.data.metrics["complete.val_acc"] == 0.9
    old = client.get_run(beaten)
    assert "sweep.best" not in old.data.tags and old.data.tags["mlflow.runColor"] == PALETTE[0]
    gone = client.get_run(failed)
    assert gone.info.status == "FAILED" and gone.data.tags[STATE_TAG] == "FAIL"
    own = client.get_run(parent.id)
    assert own.data.tags["sweep.best"] == "trial 1" and own.data.tags["best.optimizer.lr"] == "0.01"
    assert own.data.metrics["best.val_acc"] == 0.9 and own.data.metrics["best.test_acc"] == 0.85
    assert not any(k.startswith(("final_", "complete.")) for k in own.data.metrics)  # never poses as a trial
    assert own.data.tags["mlflow.note.content"].startswith("Best: trial 1 (val_acc 0.9000; optimizer.lr=0.01)")


def test_the_sweeps_of_a_store_open_in_one_view_each_experiment_saved_by_its_own_sweeps(tmp_path: Path) -> None:
    """A sweep's link shows the store's sweeps side by side: its experiment's runs page while they share one, the
    compare-experiments page once two experiments hold sweeps. Each experiment's view is written by its own sweeps,
    never by another experiment's."""
    uri = f"sqlite:///{tmp_path}/m.db"
    client = MlflowClient(uri)
    assert _sweep(uri, "a", "one").sweeps_url() is None  # a lone sweep: nothing to compare
    one = client.get_experiment_by_name("one").experiment_id
    view = "viewStateShareKey=sweeps&workflowType=machine_learning"
    assert _sweep(uri, "b", "one").sweeps_url() == f"http://127.0.0.1:5000/#/experiments/{one}/runs?{view}"
    state = json.loads(client.get_experiment(one).tags["mlflow.sharedViewState.sweeps"])
    assert state["searchFilter"] == "tags.`sweep.role` = 'sweep'" and state["groupBy"] is None
    url = _sweep(uri, "c", "two").sweeps_url()
    two = client.get_experiment_by_name("two").experiment_id
    assert url == ("http://127.0.0.1:5000/#/compare-experiments/s?experiments="
                   f"{quote(json.dumps(sorted([one, two])))}&{view}")
    client.delete_experiment_tag(one, "mlflow.sharedViewState.sweeps")
    url = _sweep(uri, "d", "three").sweeps_url()
    three = client.get_experiment_by_name("three").experiment_id
    compared = quote(json.dumps(sorted([two, three])))
    assert url == f"http://127.0.0.1:5000/#/compare-experiments/s?experiments={compared}&{view}"
    assert "mlflow.sharedViewState.sweeps" not in client.get_experiment(one).tags  # not the other sweeps' to write


def test_a_view_of_the_sweeps_the_store_refuses_costs_its_link_only(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A server that refuses the experiment tag (a trigger in the real SQLite store, as a permission would): one
    warning line, no link; the store is not given up, what comes after is still logged."""
    uri = f"sqlite:///{tmp_path}/m.db"
    _sweep(uri, "a", "one")
    parent = _sweep(uri, "b", "one")
    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("CREATE TRIGGER refuse BEFORE INSERT ON experiment_tags WHEN NEW.key = 'mlflow.sharedViewState.sweeps' "
               "BEGIN SELECT RAISE(ABORT, 'permission denied'); END")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING):
        assert parent.sweeps_url() is None
    (warned,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "permission denied" in warned and "\n" not in warned and "nothing more is logged" not in warned
    assert parent.enabled
    parent.log({"after": 1.0})
    assert MlflowClient(uri).get_run(parent.id).data.metrics["after"] == 1.0
    later = Run(True, uri, "one")  # another run of this process: the store is not marked failed
    later.start("later", {}, {})
    assert later.enabled and later.run_id is not None


def test_a_log_axis_is_what_the_report_uses() -> None:
    assert log_axis(FloatDistribution(1e-4, 0.5, log=True))
    assert log_axis(CategoricalDistribution([1e-4, 1e-2, 0.1, 0.5]))  # a learning-rate grid: four decades
    assert not log_axis(CategoricalDistribution([8, 32, 128]))  # 16x: read on a linear axis
    assert not log_axis(CategoricalDistribution(["adam", "sgd"]))


def _study(trials: list[tuple[TrialState, float, float | None, dict[str, float]]]) -> optuna.Study:
    """A study in memory with these (state, lr, value, recorded metrics) trials."""
    study = optuna.create_study(direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["val_acc"])
    study.set_user_attr("app", {"shown": ["test_acc"]})
    distributions = {"optimizer.lr": FloatDistribution(1e-5, 1.0, log=True)}
    for state, lr, value, metrics in trials:
        study.add_trial(create_trial(state=state, params={"optimizer.lr": lr}, distributions=distributions,
                                     value=value, user_attrs={METRICS_ATTR: metrics}))
    return study


def _report(tmp_path: Path) -> Path:
    folder = tmp_path / "report"
    folder.mkdir(exist_ok=True)
    (folder / "report.md").write_text("# report\n")
    return folder


def test_a_sqlite_stores_artifacts_sit_beside_it_whatever_folder_the_sweep_runs_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    uri = f"sqlite:///{store}/m.db"
    run = Run(True, uri, "beside")
    run.start("a run", {}, {})
    assert MlflowClient(uri).get_experiment_by_name("beside").artifact_location == (store / "mlruns").as_uri()
    assert not (tmp_path / "elsewhere" / "mlruns").exists()
