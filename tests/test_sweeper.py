"""The Optuna sweeper end to end: real Hydra CLI, real Optuna storages, real MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from hydra_optuna_studies.results import counted
from optuna.trial import TrialState

from tests.conftest import SWEEP, fresh_storage, run_cli

pytestmark = pytest.mark.slow
FAST = ["train.epochs=2", "deepfool.samples=50", "data.train_subset=400"]


def _sweep(cwd: Path, *args: str, name: str = "s", timeout: int = 300) -> subprocess.CompletedProcess:
    return run_cli("-m", "hydra/sweeper=optuna", f"name={name}", *FAST, *args, cwd=cwd, timeout=timeout)


def _study(cwd: Path, name: str = "s", storage: str | None = None) -> optuna.Study:
    spec = storage or str(cwd / "multirun" / name / "optuna.journal")
    return optuna.load_study(study_name=name, storage=fresh_storage(spec))


def test_grid_covers_the_product_once_and_resumes_only_whats_missing(tmp_path: Path) -> None:
    grid = ["hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.01,0.1)", "train.batch_size=choice(32,128)"]
    first = _sweep(tmp_path, *grid, "hydra.sweeper.n_trials=3")
    assert first.returncode == 0, first.stderr
    assert len(_study(tmp_path).trials) == 3

    second = _sweep(tmp_path, *grid)
    assert second.returncode == 0, second.stderr
    trials = _study(tmp_path).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    points = sorted((t.params["optimizer.lr"], t.params["train.batch_size"]) for t in trials)
    assert points == [(0.01, 32), (0.01, 128), (0.1, 32), (0.1, 128)]
    assert "1 trial(s) to run" in second.stdout

    third = _sweep(tmp_path, *grid)
    assert "0 trial(s) to run" in third.stdout and len(_study(tmp_path).trials) == 4
    results = yaml.safe_load((tmp_path / "multirun" / "s" / "optimization_results.yaml").read_text())
    assert results["states"] == {"COMPLETE": 4} and len(results["best"]) == 1
    assert results["best"][0]["values"][0] == max(t.value for t in trials)


def _wait_until_one_trial_done_and_one_training(cwd: Path, tracking_uri: str) -> None:
    """Until the study has a COMPLETE trial and a RUNNING one whose MLflow run has logged an epoch."""
    from mlflow import MlflowClient

    journal = cwd / "multirun" / "s" / "optuna.journal"
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists():
            trials = _study(cwd).trials
            running = [t.number for t in trials if t.state == TrialState.RUNNING]
            if running and any(t.state == TrialState.COMPLETE for t in trials):
                client = MlflowClient(tracking_uri)
                query = f"tags.`optuna.trial_number` = '{running[0]}' and attributes.status = 'RUNNING'"
                runs = client.search_runs([client.get_experiment_by_name("s").experiment_id], query)
                if runs and "train_loss" in runs[0].data.metrics:
                    return
        time.sleep(0.2)
    raise AssertionError("the sweep never had a trial done and another one training")


@pytest.mark.parametrize(
    ("launcher", "sig"),
    [("basic", signal.SIGINT), ("joblib", signal.SIGINT), ("pool", signal.SIGINT), ("basic", signal.SIGKILL)],
    ids=["ctrl-c", "ctrl-c-joblib", "ctrl-c-pool", "kill-9"],
)
def test_interrupted_sweep_leaves_study_consistent_and_resumes(tmp_path: Path, launcher: str, sig: int) -> None:
    grid = ["hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.01,0.02,0.05,0.1)", "train.epochs=100",
            "deepfool.enabled=false", "data.train_subset=null"]
    if launcher != "basic":
        grid += [f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    process = subprocess.Popen([SWEEP, "-m", "hydra/sweeper=optuna", "name=s", *grid], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_until_one_trial_done_and_one_training(tmp_path, env["MLFLOW_TRACKING_URI"])
    if sig == signal.SIGINT:
        os.killpg(process.pid, sig)  # Ctrl-C reaches every process in the terminal's group, workers included
    else:
        process.send_signal(sig)  # kill -9 of the sweep process alone: nothing of it runs to clean up
    process.wait(timeout=60)
    assert process.returncode != 0
    trials = _study(tmp_path).trials
    states = [t.state for t in trials]
    assert TrialState.COMPLETE in states
    if sig == signal.SIGINT:
        assert TrialState.RUNNING not in states and TrialState.FAIL in states
        assert all(t.user_attrs["fail_reason"] == "interrupted" for t in trials if t.state == TrialState.FAIL)
    else:
        assert TrialState.RUNNING in states
    done_before = sum(s == TrialState.COMPLETE for s in states)
    interrupted = [t.number for t in trials if t.state in (TrialState.FAIL, TrialState.RUNNING)]

    resumed = _sweep(tmp_path, *grid)
    assert resumed.returncode == 0, resumed.stderr
    trials = _study(tmp_path).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["optimizer.lr"] for t in complete) == [0.01, 0.02, 0.05, 0.1]
    assert f"{4 - done_before} trial(s) to run" in resumed.stdout
    assert all(trials[n].state == TrialState.FAIL for n in interrupted)
    if sig == signal.SIGKILL:  # the resumed sweep found the dead process's trial and closed it everywhere
        assert "ended while it ran" in trials[interrupted[0]].user_attrs["fail_reason"]
        from mlflow import MlflowClient

        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        (orphan,) = client.search_runs(
            [client.get_experiment_by_name("s").experiment_id], f"tags.`optuna.trial_number` = '{interrupted[0]}'"
        )
        assert orphan.info.status == "KILLED" and orphan.data.tags["optuna.state"] == "FAIL"
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (parent,) = client.search_runs([client.get_experiment_by_name("s").experiment_id], "tags.`sweep.role` = 'sweep'")
    assert parent.info.status == "FINISHED" and "sweep.failure" not in parent.data.tags  # the resume took it back


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_bayesian_studies_run_and_persist_in_sqlite(tmp_path: Path, sampler: str) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = [f"hydra.sweeper.sampler={sampler}", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.seed=0", "optimizer.lr=tag(log,interval(1e-3,0.3))", "optimizer.momentum=interval(0,0.95)"]
    result = _sweep(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    study = _study(tmp_path, storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert study.metric_names == ["val_acc"]
    assert all(1e-3 <= t.params["optimizer.lr"] <= 0.3 for t in study.trials)
    more = _sweep(tmp_path, *args[:1], "hydra.sweeper.n_trials=4", *args[2:])
    assert more.returncode == 0 and len(_study(tmp_path, storage=storage).trials) == 4


def test_multi_objective_reports_pareto_front(tmp_path: Path) -> None:
    result = _sweep(
        tmp_path, "hydra.sweeper.sampler=nsga2", "hydra.sweeper.n_trials=4", "hydra.sweeper.seed=1",
        "objective=[val_acc,deepfool_margin]", "optimizer.lr=tag(log,interval(1e-3,0.3))",
    )
    assert result.returncode == 0, result.stderr
    study = _study(tmp_path)
    assert study.metric_names == ["val_acc", "deepfool_margin"]
    results = yaml.safe_load((tmp_path / "multirun" / "s" / "optimization_results.yaml").read_text())
    front = {t["number"] for t in results["pareto_front"]}
    assert front == {t.number for t in study.best_trials} and front
    assert f"Pareto front of {counted(len(front), 'trial')}: trial {min(front)} (val_acc " in result.stdout
    marked = {int(line.split("|")[2]) for line in result.stdout.splitlines() if line.startswith("| * ")}
    assert marked == front
    report = tmp_path / "multirun" / "s" / "report"  # a config to rerun per member of the front
    assert len(list(report.glob("pareto-*.yaml"))) == len(front)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("s").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "sweep"]
    assert parent.data.tags["pareto.trials"] == ", ".join(str(n) for n in sorted(front))
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {f"pareto-{i + 1}.yaml" for i in
                                                                           range(len(front))}
    tagged = {int(r.data.tags["optuna.trial_number"]): r.data.tags.get("sweep.best") for r in runs if r != parent}
    assert tagged == {n: "Pareto front" if n in front else None for n in range(4)}


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])
def test_pruning_stops_a_bad_learning_rate_early(tmp_path: Path, launcher: list[str]) -> None:
    result = _sweep(
        tmp_path, *launcher, "hydra.sweeper.sampler=grid", "hydra.sweeper.pruner=median",
        "+hydra.sweeper.pruner_options.n_startup_trials=2", "optimizer.lr=choice(0.1,0.05,0.00001)",
        "train.epochs=6", "deepfool.enabled=false",
    )
    assert result.returncode == 0, result.stderr
    trials = {t.params["optimizer.lr"]: t for t in _study(tmp_path).trials}
    bad = trials[0.00001]
    assert bad.state == TrialState.PRUNED
    assert len(bad.intermediate_values) < 6
    assert trials[0.1].state == TrialState.COMPLETE and len(trials[0.1].intermediate_values) == 6


def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    result = _sweep(tmp_path, "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.05,1e12,0.1)", "train.epochs=3")
    assert result.returncode == 0, result.stderr
    by_lr = {t.params["optimizer.lr"]: t for t in _study(tmp_path).trials}
    assert by_lr[0.05].state == by_lr[0.1].state == TrialState.COMPLETE
    assert by_lr[1e12].state == TrialState.FAIL
    assert "diverged" in by_lr[1e12].user_attrs["fail_reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=choice(0.1"], "error: optimizer.lr=choice(0.1: cannot parse"),
        (["hydra.sweeper.sampler=grid", "optimizer.lr=interval(0.01,0.1)"],
         "error: hydra.sweeper.sampler: grid needs discrete values, but optimizer.lr is a continuous interval"),
        (["hydra.sweeper.sampler=annealing", "optimizer.lr=choice(0.1)"],
         "error: hydra.sweeper.sampler: got 'annealing', allowed: grid, random, tpe, gp, cmaes, nsgaii, nsga2, qmc"),
        (["hydra.sweeper.pruner=early", "optimizer.lr=choice(0.1)"],
         "error: hydra.sweeper.pruner: got 'early', allowed: none, median, percentile, successive_halving, "
         "hyperband, threshold"),
        (["hydra.sweeper.storage=postgresql://nobody@127.0.0.1:9/none", "optimizer.lr=choice(0.1)"],
         "error: hydra.sweeper.storage: cannot open Optuna storage"),
        (["hydra.sweeper.direction=[maximize,minimize]", "optimizer.lr=choice(0.1)"],
         "error: hydra.sweeper.direction: 2 direction(s) ['maximize', 'minimize'] for 1 objective(s) ['val_acc']"),
        (["optimizer.lr=choice(0.1)", "model=transformer"], "error: model: no option 'transformer'"),
        (["optimizer.lr=choice(0.1)", "train.batch_size=0"], "error: train.batch_size: must be >= 1, got 0"),
    ],
)
def test_bad_sweep_input_is_one_line_before_any_trial(tmp_path: Path, args: list[str], message: str) -> None:
    result = _sweep(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "multirun").exists()  # no study, no job folder
    assert not (tmp_path / "mlflow.db").exists()


def test_mlflow_parent_run_nests_trials_and_gets_the_best(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    result = _sweep(tmp_path, "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1)", name="nested")
    assert result.returncode == 0, result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("nested")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'sweep'")
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1"]
    assert {r.data.tags["optuna.state"] for r in children} == {"COMPLETE"}
    assert {r.info.run_name for r in children} == {"trial_0 lr=0.02", "trial_1 lr=0.1"}  # swept values in names
    study = _study(tmp_path, "nested")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best.val_acc"] == pytest.approx(study.best_value, rel=1e-5)
    # the sweep's run carries its best trial's final metrics under best.* names: it never poses as a trial
    best_run = next(r for r in children if r.data.tags["optuna.trial_number"] == str(study.best_trial.number))
    for name in ("val_acc", "test_acc", "deepfool_margin", "deepfool_success_rate"):
        assert parent.data.metrics.get(f"best.{name}") == best_run.data.metrics.get(f"final_{name}"), name
    assert not any(k.startswith("final_") for k in parent.data.metrics)
    assert {r.data.tags["sweep.study"] for r in [parent, *children]} == {"nested"}
    assert parent.data.tags["best.optimizer.lr"] == str(study.best_params["optimizer.lr"])
    assert [r.data.tags.get("sweep.best") for r in children] == [
        "best" if r == best_run else None for r in children]
    assert {"optimization_results.yaml", "trials.md"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_a_study_named_with_an_apostrophe_keeps_its_mlflow_run_on_resume(tmp_path: Path) -> None:
    """MLflow's filter strings quote with ' : a study named bob's must still find its sweep's run when resumed."""
    from mlflow import MlflowClient

    for n_trials in (1, 2):
        result = _sweep(tmp_path, "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1)",
                        f"hydra.sweeper.n_trials={n_trials}", name="\"bob's\"")
        assert result.returncode == 0, result.stderr
        assert "MLflow logging to " not in result.stdout + result.stderr
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("bob's").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`sweep.role` = 'sweep'")
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1"]


def test_a_whole_sweep_passes_under_python_W_error(tmp_path: Path) -> None:
    """Every warning an error, as Hydra's plugin test harness runs: the trials, MLflow, the report and figures."""
    import sys

    from mlflow import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "sweep.cli", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid",
         "name=strict", *FAST, "optimizer.lr=choice(0.02,0.1)", "train.batch_size=choice(32,64)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "MLflow logging to " not in result.stdout + result.stderr
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("strict").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`sweep.role` = 'sweep'")
    assert parent.info.status == "FINISHED" and "best.val_acc" in parent.data.metrics
    assert (tmp_path / "multirun" / "strict" / "report" / "heatmap_test_acc.png").is_file()


def test_a_joblib_sweep_prints_no_launcher_chatter(tmp_path: Path) -> None:
    """joblib's launcher echoes its Parallel(...) settings and every job's overrides; a sweep shows one line a trial."""
    result = _sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                    "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1)", name="quiet")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for chatter in ("Joblib.Parallel", "Launching", "#0 :", "#1 :", "env_set"):
        assert chatter not in output, chatter
    assert len([line for line in output.splitlines() if "] Trial " in line]) == 2
