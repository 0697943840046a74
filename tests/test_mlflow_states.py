"""One trial, one state, in the study and in MLflow, however the trials ran: a trial the sweeper fails after its run
finished (its DeepFool margin could not be measured) ends FAILED and tagged FAIL, and only complete trials carry the
values the sweep's charts plot. The sweep run in this process is checked in the browser by tests/test_ui.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import fresh_storage, run_cli

FAILING = ["-m", "+experiment=quick/lr_bs_grid", "optimizer.lr=choice(1e-4,0.5)", "train.batch_size=choice(8,128)",
           "train.epochs=1", "deepfool.samples=40", "deepfool.max_iter=1", "deepfool.min_share=0.6", "name=states"]
STATUS = {"COMPLETE": "FINISHED", "FAIL": "FAILED"}


@pytest.mark.slow
@pytest.mark.parametrize("how", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"],
                                 ["hydra.sweeper.workers=2"]], ids=["joblib-processes", "worker-processes"])
def test_a_trial_failed_after_its_run_finished_is_failed_in_mlflow_however_it_ran(tmp_path: Path,
                                                                                   how: list[str]) -> None:
    from mlflow import MlflowClient

    result = run_cli(*FAILING, *how, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="states", storage=fresh_storage(
        str(tmp_path / "multirun" / "states" / "optuna.journal")))
    states = {t.number: t.state.name for t in study.trials}
    assert set(states.values()) == {"COMPLETE", "FAIL"}  # lr 1e-4: too few samples crossed in one DeepFool step
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("states").experiment_id],
                              "tags.`optuna.trial_number` != ''")
    found = {int(r.data.tags["optuna.trial_number"]): (r.info.status, r.data.tags["optuna.state"]) for r in runs}
    assert found == {n: (STATUS[state], state) for n, state in states.items()}
    for run in runs:  # the charts' values: complete trials only; what a failed trial measured stays as final_*
        complete = states[int(run.data.tags["optuna.trial_number"])] == TrialState.COMPLETE.name
        assert ("complete.test_acc" in run.data.metrics) == complete and "final_test_acc" in run.data.metrics
