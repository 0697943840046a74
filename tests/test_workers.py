"""sweep's trials across workers: one MLflow parent run for a study that three workers share through a real MLflow
server (PostgreSQL-backed), and a sweep through a real single-node SLURM cluster (``hydra/launcher=slurm``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.contract import MLFLOW_RUN_ATTR
from optuna.trial import TrialState

from sweeper.tests.helpers import fresh_storage
from sweeper.tests.servers import PG_PASSWORD, fresh_database, mlflow_server
from tests.conftest import SWEEP

pytestmark = pytest.mark.slow
TINY = ["train.epochs=1", "deepfool.enabled=false", "data.train_subset=200"]


def _sweep(cwd: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([SWEEP, "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", *TINY, *args],
                            cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_three_workers_log_every_trial_under_one_parent_run_on_an_mlflow_server(postgres: str,
                                                                               tmp_path: Path) -> None:
    from mlflow import MlflowClient

    url, stop = mlflow_server(tmp_path / "mlflow", fresh_database(postgres, "mlflow_workers"))
    storage = fresh_database(postgres, "optuna_mlflow_workers")
    try:
        args = ["name=shared", f"hydra.sweeper.storage={storage}", "optimizer.lr=choice(0.01,0.02,0.05,0.1,0.2,0.5)"]
        workers = [_sweep(tmp_path, {"MLFLOW_TRACKING_URI": url}, *args) for _ in range(3)]
        outputs = [w.communicate(timeout=600)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0, 0], outputs
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("shared").experiment_id
        (parent,) = client.search_runs([experiment], "tags.`sweep.role` = 'sweep'")
        children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == list(range(6))
        assert {r.data.tags["optuna.state"] for r in children} == {"COMPLETE"}
        study = optuna.load_study(study_name="shared", storage=fresh_storage(storage))
        assert study.user_attrs[MLFLOW_RUN_ATTR]["run_id"] == parent.info.run_id
        assert {t.state for t in study.trials} == {TrialState.COMPLETE} and len(study.trials) == 6
        logged = "".join(outputs) + (tmp_path / "mlflow" / "server.log").read_text()
        assert PG_PASSWORD not in logged
    finally:
        stop()


def test_a_sweep_through_the_local_slurm_cluster_completes(slurm: dict, postgres: str, tmp_path: Path) -> None:
    """hydra/launcher=slurm (hydra-submitit-launcher) on a real SLURM cluster, trials in a shared PostgreSQL study;
    the preset's GPU and memory requests are set to what this one-node cluster has."""
    storage = fresh_database(postgres, "optuna_slurm")
    worker = _sweep(tmp_path, {**slurm, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}, "name=slurm",
                    f"hydra.sweeper.storage={storage}", "optimizer.lr=choice(0.02,0.1)", "hydra/launcher=slurm",
                    "hydra.launcher.partition=local", "hydra.launcher.gpus_per_node=null",
                    "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null", "hydra.launcher.timeout_min=10",
                    "hydra.sweeper.n_jobs=2")
    output = worker.communicate(timeout=600)[0]
    assert worker.returncode == 0, output
    study = optuna.load_study(study_name="slurm", storage=fresh_storage(storage))
    assert sorted(t.params["optimizer.lr"] for t in study.trials) == [0.02, 0.1]
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert list((tmp_path / "multirun" / "slurm" / ".submitit").iterdir())  # they ran as SLURM jobs
    assert PG_PASSWORD not in output
