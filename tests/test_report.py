"""Browse, compare, export: parent-run artifacts, sweep-report, sweep-export round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import fresh_storage, run_cli

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
GRID = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1)",
        "train.batch_size=choice(32,128)", "train.epochs=3", "deepfool.samples=100", "data.train_subset=600"]


def _tool(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> Path:
    """A real 2 x 2 lr x batch-size sweep with an MLflow SQLite store, shared by the tests below."""
    cwd = tmp_path_factory.mktemp("swept")
    result = run_cli(*GRID, "name=rep", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd


def _study(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=fresh_storage(str(cwd / "multirun" / name / "optuna.journal")))


def test_parent_run_has_plots_best_config_and_children_their_curves(swept: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{swept}/mlflow.db")
    experiment = client.get_experiment_by_name("rep")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`sweep.role` = 'sweep'")
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    report = {a.path.split("/")[-1] for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"best.yaml", "optimization_results.yaml", "trials.md", "report"} <= top
    assert {"history_val_acc.png", "parallel_val_acc.png", "by_param_val_acc.png", "curves.png",
            "heatmap_test_acc.png", "heatmap_deepfool_margin.png", "report.md", "report.html"} <= report
    assert "importances_val_acc.png" not in report  # 4 trials are too few, and the report says so
    children = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4
    for child in children:
        assert "learning_curves.png" in {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"optimizer.lr", "train.batch_size", "model.hidden_dims"} <= set(child.data.params)
    lrs = sorted((c.data.params["optimizer.lr"], c.data.params["train.batch_size"]) for c in children)
    assert lrs == [("0.02", "128"), ("0.02", "32"), ("0.1", "128"), ("0.1", "32")]
    png = Path(client.download_artifacts(parent.info.run_id, "report/heatmap_test_acc.png", str(swept)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_export_best_and_rerun_reproduces_metrics_exactly(swept: Path) -> None:
    out = swept / "exported"
    result = _tool("sweep-export", "--storage", str(swept / "multirun/rep/optuna.journal"), "--study", "rep",
                   "--out", str(out), cwd=swept)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    study = _study(swept, "rep")
    assert summary["exported"][0]["trial"] == study.best_trial.number
    config = yaml.safe_load((out / "best.yaml").read_text())
    assert config["optimizer"]["lr"] == study.best_params["optimizer.lr"]
    assert "optuna" not in config  # the sweeper keeps its bookkeeping out of the app's config

    rerun = run_cli("--config-dir", str(out), "--config-name", "best", "hydra.run.dir=rerun", cwd=swept)
    assert rerun.returncode == 0, rerun.stderr
    again = json.loads((swept / "rerun" / "metrics.json").read_text())
    original = study.best_trial.user_attrs["metrics"]
    timing = {"train_seconds", "deepfool_seconds"}
    assert {k: v for k, v in again.items() if k not in timing} == {k: v for k, v in original.items() if k not in timing}


def test_a_rerun_is_a_single_run_not_a_trial(swept: Path) -> None:
    """Rerunning best.yaml as exported writes to outputs/<name>/<time> and its MLflow run is no sweep trial: the
    trial count of the experiment, and what sweep-export --mlflow picks from, stay the sweep's."""
    from mlflow import MlflowClient

    out = swept / "exported_again"
    assert _tool("sweep-export", "--storage", str(swept / "multirun/rep/optuna.journal"), "--study", "rep",
                 "--out", str(out), cwd=swept).returncode == 0
    rerun = run_cli("--config-dir", str(out), "--config-name", "best", cwd=swept)
    assert rerun.returncode == 0, rerun.stderr
    (folder,) = (swept / "outputs" / "rep").iterdir()
    assert (folder / "metrics.json").is_file() and not (swept / "outputs" / "metrics.json").exists()
    client = MlflowClient(f"sqlite:///{swept}/mlflow.db")
    experiment = client.get_experiment_by_name("rep")
    trials = client.search_runs([experiment.experiment_id], "tags.`optuna.state` = 'COMPLETE'")
    singles = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags
               and r.data.tags.get("sweep.role") != "sweep"]
    assert len(trials) == 4 and singles and all("optuna.state" not in r.data.tags for r in singles)


def test_export_from_mlflow_matches_export_from_storage(swept: Path) -> None:
    out = swept / "from_mlflow"
    result = _tool("sweep-export", "--mlflow", f"sqlite:///{swept}/mlflow.db", "--experiment", "rep", "--top", "2",
                   "--out", str(out), cwd=swept)
    assert result.returncode == 0, result.stderr
    study = _study(swept, "rep")
    ranked = sorted(study.trials, key=lambda t: -t.value)
    first = yaml.safe_load((out / "top-1.yaml").read_text())
    second = yaml.safe_load((out / "top-2.yaml").read_text())
    assert first["optimizer"]["lr"] == ranked[0].params["optimizer.lr"]
    assert first["train"]["batch_size"] == ranked[0].params["train.batch_size"]
    assert second["train"]["batch_size"] == ranked[1].params["train.batch_size"]
    assert "optuna" not in first and set(first["mlflow"]) == {"enabled", "tracking_uri", "experiment", "run_name"}

    run_id = json.loads((out / "summary.json").read_text())["exported"][0]["trial"]
    one = _tool("sweep-export", "--mlflow", f"sqlite:///{swept}/mlflow.db", "--run-id", run_id,
                "--out", str(swept / "one"), cwd=swept)
    assert one.returncode == 0, one.stderr
    assert yaml.safe_load((swept / "one" / "run.yaml").read_text()) == first


def test_top_k_from_storage_is_ranked(swept: Path) -> None:
    out = swept / "top"
    result = _tool("sweep-export", "--storage", str(swept / "multirun/rep/optuna.journal"), "--study", "rep",
                   "--top", "3", "--out", str(out), cwd=swept)
    assert result.returncode == 0, result.stderr
    values = [e["values"]["val_acc"] for e in json.loads((out / "summary.json").read_text())["exported"]]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    assert sorted(p.name for p in out.glob("*.yaml")) == ["top-1.yaml", "top-2.yaml", "top-3.yaml"]


def test_pareto_export_of_a_multi_objective_study(tmp_path: Path) -> None:
    result = run_cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.005,0.05,0.2)",
                     "objective=[val_acc,deepfool_margin]", "train.epochs=2", "deepfool.samples=100", "name=mo",
                     "mlflow.enabled=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "front"
    export = _tool("sweep-export", "--storage", str(tmp_path / "multirun/mo/optuna.journal"), "--study", "mo",
                   "--out", str(out), cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    front = {t.number for t in _study(tmp_path, "mo").best_trials}
    summary = json.loads((out / "summary.json").read_text())
    assert {e["trial"] for e in summary["exported"]} == front
    assert len(list(out.glob("pareto-*.yaml"))) == len(front)


def test_sweep_report_from_storage_alone(tmp_path: Path) -> None:
    result = run_cli(*GRID, "name=nomlflow", "mlflow.enabled=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "mlflow.db").exists()
    out = tmp_path / "report"
    report = _tool("sweep-report", "--storage", str(tmp_path / "multirun/nomlflow/optuna.journal"),
                   "--study", "nomlflow", "--out", str(out), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    text = (out / "report.md").read_text()
    study = _study(tmp_path, "nomlflow")
    assert f"trial {study.best_trial.number}" in text and "| optimizer.lr |" in text
    assert "![heatmap_val_acc](heatmap_val_acc.png)" in text
    assert (out / "heatmap_deepfool_margin.png").stat().st_size > 1000
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage", "nowhere.journal", "--study", "ghost", "--out", "x"], "error: --storage: no journal file"),
        (["--storage", "sqlite:///s.db", "--study", "ghost", "--out", "x"], "error: --study: no study 'ghost'"),
        (["--mlflow", "sqlite:///none.db", "--experiment", "ghost", "--out", "x"],
         "error: --mlflow: no MLflow store at none.db"),
        (["--storage", "s.journal", "--out", "x"], "error: --storage: no journal file s.journal"),
    ],
)
def test_export_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = _tool("sweep-export", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert not (tmp_path / "x").exists()


def test_the_study_is_inferred_when_the_storage_holds_one(swept: Path, tmp_path: Path) -> None:
    journal = str(swept / "multirun/rep/optuna.journal")
    result = _tool("sweep-export", "--storage", journal, "--out", str(tmp_path / "best"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "best" / "summary.json").read_text())["study"] == "rep"
    report = _tool("sweep-report", "--storage", journal, "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0 and (tmp_path / "report" / "report.md").is_file(), report.stderr
    two = f"sqlite:///{tmp_path}/two.db"
    for name in ("b", "a"):
        optuna.create_study(study_name=name, storage=two)
    for tool in ("sweep-export", "sweep-report"):
        refused = _tool(tool, "--storage", two, "--out", str(tmp_path / "x"), cwd=tmp_path)
        assert refused.returncode == 2 and not (tmp_path / "x").exists()
        assert refused.stderr.strip() == f"error: --study: {two} holds a, b; name one with --study"


def test_tools_explain_themselves_with_examples(tmp_path: Path) -> None:
    for tool in ("sweep-export", "sweep-report"):
        text = _tool(tool, "--help", cwd=tmp_path).stdout
        assert "examples:" in text and f"{tool} --storage multirun/quickstart/optuna.journal --out" in text


def test_export_names_a_missing_experiment_in_a_real_store(swept: Path, tmp_path: Path) -> None:
    result = _tool("sweep-export", "--mlflow", f"sqlite:///{swept}/mlflow.db", "--experiment", "ghost", "--out",
                   str(tmp_path / "x"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --experiment: no experiment 'ghost'")
    assert not (tmp_path / "x").exists()
