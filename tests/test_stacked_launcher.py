"""``hydra/launcher=stacked`` end to end: real sweeps of the app, stacked and not, on the bundled digits.

A stacked sweep must leave the records the same sweep leaves unstacked (the study's values, states and params, each
trial's metrics, files and MLflow run), with only the clock's numbers differing; trials that cannot share a stack, or
that fail, diverge or are pruned inside one, end alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, fresh_storage, run_cli

pytestmark = pytest.mark.slow
TIMING = re.compile(r"seconds$")  # train_seconds, deepfool_seconds, epoch_seconds: the clock's, not the trial's
GRID = ["hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "train.epochs=2", "deepfool.samples=40"]


def _sweep(cwd: Path, name: str, *overrides: str, stacked: bool = True, env: dict | None = None) -> tuple[list, str]:
    cwd.mkdir(parents=True, exist_ok=True)
    launcher = ["hydra/launcher=stacked"] if stacked else []
    result = run_cli("-m", *GRID, f"name={name}", *launcher, *overrides, cwd=cwd, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    journal = cwd / "multirun" / name / "optuna.journal"
    trials = optuna.load_study(study_name=name, storage=fresh_storage(str(journal))).trials
    return sorted(trials, key=lambda t: t.number), result.stdout + result.stderr


def _untimed(values: dict) -> dict:
    return {k: v for k, v in values.items() if not TIMING.search(k)}


def _record(trial: optuna.trial.FrozenTrial) -> tuple:
    """What a trial's record says, less the clock."""
    metrics = _untimed(trial.user_attrs.get("metrics") or {})
    return trial.state, trial.params, trial.values, metrics, trial.user_attrs.get("fail_reason")


def _mlflow_runs(cwd: Path, name: str) -> dict[str, tuple]:
    """Each trial's MLflow child run: its status, state tag and final metrics (less the clock), by trial number."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_number` != ''")
    return {run.data.tags["optuna.trial_number"]: (run.info.status, run.data.tags.get("optuna.state"),
                                                    {k: v for k, v in _untimed(run.data.metrics).items()
                                                     if k.startswith("final_")})
            for run in runs}


JOB_ENDS = '''
import json
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback


class JobEnds(Callback):
    """Writes what each job's on_job_end sees: its number, its return, whether its metrics are written."""

    def on_job_end(self, config, job_return, **kwargs):
        done = job_return.status.name == "COMPLETED"  # a failed job's return_value raises its error
        seen = {"job": HydraConfig.get().job.num, "status": job_return.status.name,
                "value": job_return.return_value if done else None,
                "metrics": (Path(HydraConfig.get().runtime.output_dir) / "metrics.json").exists()}
        with open(Path(config.hydra.sweep.dir) / "job_ends.jsonl", "a") as out:
            out.write(json.dumps(seen) + "\\n")
'''


def _job_ends(folder: Path) -> list[dict]:
    return sorted((json.loads(line) for line in (folder / "job_ends.jsonl").read_text().splitlines()),
                  key=lambda seen: seen["job"])


def _log_lines(folder: Path, word: str) -> list[str]:
    """The messages of the job's log file (Hydra's ``<job name>.log``) that hold ``word``, without their time."""
    (log,) = folder.glob("*.log")
    return [line.split(" - ", 1)[1] for line in log.read_text().splitlines() if word in line]


def test_a_stacked_grid_leaves_the_records_of_the_same_grid_unstacked(tmp_path: Path) -> None:
    """Four learning rates and two dropout rates in one stack, one diverging (lr 1e6): the study, each trial's
    metrics.json, MLflow run, log file lines and what Hydra's ``on_job_end`` callbacks see equal the unstacked
    sweep's; the diverged trial fails alone."""
    (tmp_path / "job_ends.py").write_text(JOB_ENDS)
    space = ["optimizer.lr=choice(0.02,0.2,1e6)", "model.dropout=choice(0.0,0.3)", "hydra.verbose=sweep.trial",
             "+hydra.callbacks.ends._target_=job_ends.JobEnds"]
    env = {"PYTHONPATH": str(tmp_path)}
    stacked, output = _sweep(tmp_path / "stacked", "grid", *space, env=env)
    alone, _ = _sweep(tmp_path / "alone", "grid", *space, stacked=False, env=env)
    assert "train as one stack" in output
    ends = _job_ends(tmp_path / "stacked" / "multirun" / "grid")
    assert ends == _job_ends(tmp_path / "alone" / "multirun" / "grid")  # once each, trained, with its return
    assert [seen["metrics"] for seen in ends] == [t.state == TrialState.COMPLETE for t in stacked]
    for trial in stacked:  # each trial's own epoch lines in its own log file, and the stack's line
        folders = [tmp_path / side / "multirun" / "grid" / str(trial.number) for side in ("stacked", "alone")]
        epochs = _log_lines(folders[0], "epoch ")
        assert epochs == _log_lines(folders[1], "epoch ") and (epochs or trial.state != TrialState.COMPLETE)
        assert len(_log_lines(folders[0], "train as one stack")) == 1
    assert [_record(t) for t in stacked] == [_record(t) for t in alone]
    states = [t.state for t in stacked]
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.COMPLETE) == 4  # lr 1e6 at both dropouts
    assert all("diverged" in t.user_attrs["fail_reason"] for t in stacked if t.state == TrialState.FAIL)
    for trial in stacked:
        if trial.state != TrialState.COMPLETE:
            continue
        folder = f"multirun/grid/{trial.number}"
        files = {p.name for p in (tmp_path / "stacked" / folder).iterdir()}
        assert {"metrics.json", "history.json", "learning_curves.png", ".hydra"} <= files
        ours, theirs = (json.loads((tmp_path / side / folder / "metrics.json").read_text())
                        for side in ("stacked", "alone"))
        assert _untimed(ours) == _untimed(theirs)
    assert _mlflow_runs(tmp_path / "stacked", "grid") == _mlflow_runs(tmp_path / "alone", "grid")


def test_jobs_that_cannot_share_a_stack_run_apart_and_every_job_returns_in_order(tmp_path: Path) -> None:
    """Two batch sizes make two stacks; resnet cannot stack and runs alone; each trial's values are its own."""
    space = ["optimizer.lr=choice(0.05,0.1)", "train.batch_size=choice(32,64)", "model=choice(mlp,resnet)"]
    stacked, output = _sweep(tmp_path / "stacked", "mixed", *space)
    alone, _ = _sweep(tmp_path / "alone", "mixed", *space, stacked=False)
    assert [_record(t) for t in stacked] == [_record(t) for t in alone]
    stacks = re.findall(r"Trials ([\d, ]+) train as one stack", output)
    assert len(stacks) == 2 and all(len(s.split(", ")) == 2 for s in stacks)
    assert len(re.findall(r"Trial \d+ runs alone: model=resnet", output)) == 4


def test_a_pruned_trial_leaves_its_stack_and_the_others_go_on(tmp_path: Path) -> None:
    """A threshold pruner on val_acc: the trial whose lr cannot learn in an epoch is pruned at epoch 1; the rest
    complete with the values they have unstacked."""
    space = ["optimizer.lr=choice(1e-7,0.05,0.1)", "train.epochs=3",
             "+hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 0.5}"]
    stacked, _ = _sweep(tmp_path / "stacked", "pruned", *space)
    alone, _ = _sweep(tmp_path / "alone", "pruned", *space, stacked=False)
    assert [t.state for t in stacked] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.COMPLETE]
    assert [_record(t) for t in stacked] == [_record(t) for t in alone]
    runs = _mlflow_runs(tmp_path / "stacked", "pruned")
    assert runs["0"][:2] == ("KILLED", "PRUNED") and runs["1"][:2] == ("FINISHED", "COMPLETE")


def test_a_group_larger_than_the_stack_cap_is_split_evenly(tmp_path: Path) -> None:
    """Wide hidden layers make each trial about 13 MB of weights, gradients and momentum: the CPU's cache budget
    (sweep.stacked.memory) holds two at a time, so four trials train as two stacks of two."""
    _, output = _sweep(tmp_path, "wide", "optimizer.lr=choice(0.01,0.02,0.05,0.1)", "model.hidden_dims=[768,768]",
                       "train.epochs=1", "deepfool.enabled=false", "objective=val_acc")
    stacks = re.findall(r"Trials ([\d, ]+) train as one stack", output)
    assert [len(s.split(", ")) for s in stacks] == [2, 2], output


def test_the_stacked_launcher_refuses_another_app_and_a_bad_batch_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    sphere = ROOT / "sweeper" / "tests" / "apps" / "sphere" / "sphere.py"
    other = subprocess.run([sys.executable, str(sphere), "-m", "hydra/launcher=stacked", "hydra.sweeper.n_trials=2"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0
    assert "hydra/launcher: stacked trains sweep's own trials" in other.stderr, other.stderr
    assert not list(tmp_path.glob("multirun/*/*/.hydra"))  # no trial ran
    bad = run_cli("-m", *GRID, "hydra/launcher=stacked", "hydra.launcher.batch=0", "optimizer.lr=choice(0.1,0.2)",
                  cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].endswith(
        "hydra.launcher.batch: must be an integer >= 1, got 0"), bad.stderr
