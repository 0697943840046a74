"""Whole trials: accuracy, every option training, determinism, divergence, MLflow contents, CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sweep.errors import TrialDiverged
from sweep.tracking import shown
from sweep.trial import TrialJob, run_trial
from tests.conftest import CUDA, GROUPS_OPTIONS, trial_config


def _run(tmp_path: Path, tracking_uri: str, *overrides: str, name: str = "t") -> dict:
    cfg, resolved = trial_config(f"mlflow.tracking_uri={tracking_uri}", *overrides)
    return run_trial(TrialJob(cfg, resolved, tmp_path, name))


def test_default_mlp_on_digits_reaches_90_percent(tmp_path: Path, tracking_uri: str) -> None:
    metrics = _run(tmp_path, tracking_uri, "train.device=cpu", "deepfool.enabled=false")
    assert metrics["epochs"] == 20
    assert metrics["test_acc"] >= 0.90
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize("option", GROUPS_OPTIONS)
def test_every_option_trains(tmp_path: Path, tracking_uri: str, torchvision_root: Path, option: str) -> None:
    metrics = _run(
        tmp_path, tracking_uri, option, "train.epochs=1", "data.train_subset=64", f"data.root={torchvision_root}",
        "model.channels=[4,8]" if option in ("model=cnn", "model=resnet") else "model.hidden_dims=[16]",
        "deepfool.samples=8", "mlflow.enabled=false", "train.device=cpu",
    )
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_acc"] <= 1.0
    assert 0.0 <= metrics["deepfool_success_rate"] <= 1.0


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("activation", ["relu", "celu", "swish", "tanh", "sigmoid", "leaky_relu"])
def test_every_activation_builds(tmp_path: Path, model: str, activation: str) -> None:
    cfg, resolved = trial_config(
        f"model={model}", f"model.activation={activation}", "train.epochs=1", "data.train_subset=32",
        "deepfool.enabled=false", "mlflow.enabled=false", "train.device=cpu",
    )
    assert run_trial(TrialJob(cfg, resolved, tmp_path, "a"))["epochs"] == 1


@pytest.mark.parametrize(
    "extra", [["model.batchnorm=true", "model.dropout=0.3"], ["model=resnet", "model.bottleneck=true"]]
)
def test_cnn_variants_train(tmp_path: Path, extra: list[str]) -> None:
    cfg, resolved = trial_config(
        "model=cnn", *extra, "train.epochs=1", "data.train_subset=32", "deepfool.samples=4",
        "mlflow.enabled=false", "train.device=cpu",
    )
    assert run_trial(TrialJob(cfg, resolved, tmp_path, "v"))["epochs"] == 1


def test_same_config_and_seed_give_identical_metrics(tmp_path: Path) -> None:
    args = ("model.dropout=0.2", "train.epochs=3", "deepfool.samples=50", "mlflow.enabled=false", "train.device=cpu")
    first = _run(tmp_path / "a", "", *args)
    second = _run(tmp_path / "b", "", *args)
    other_seed = _run(tmp_path / "c", "", *args, "train.seed=1")
    drop = ("train_seconds", "deepfool_seconds")
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in second.items() if k not in drop}
    assert first["train_loss"] != other_seed["train_loss"]


def test_diverging_trial_stops_at_once_and_is_failed_in_mlflow(tmp_path: Path, tracking_uri: str) -> None:
    from mlflow import MlflowClient

    with pytest.raises(TrialDiverged, match="training loss became (nan|inf) in epoch 1"):
        _run(tmp_path, tracking_uri, "optimizer.lr=1e12", "train.epochs=50", "name=diverge", name="boom")
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("diverge")
    (run,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'boom'")
    assert run.info.status == "FAILED"
    assert "diverged" in run.data.tags["sweep.failure"]
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 0  # stopped inside epoch 1
    assert not (tmp_path / "metrics.json").exists()


def test_mlflow_run_holds_params_epoch_metrics_and_config(tmp_path: Path, tracking_uri: str) -> None:
    from mlflow import MlflowClient

    metrics = _run(tmp_path, tracking_uri, "train.epochs=4", "name=tracked", "optimizer.lr=0.02", name="tracked-run")
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tracked")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiment.experiment_id], "attributes.run_name = 'tracked-run'")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["optimizer.lr"] == "0.02" and params["model.hidden_dims"] == "[128]" and params["train.epochs"] == "4"
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in history] == [1, 2, 3, 4]
    # MLflow gets 6 significant digits (what its columns print); metrics.json keeps the exact value
    assert run.data.metrics["final_test_acc"] == shown(metrics["test_acc"]) == pytest.approx(metrics["test_acc"])
    assert run.data.metrics["final_deepfool_margin"] == float(f"{metrics['deepfool_margin']:.6g}")
    assert [m.value for m in history] == [float(f"{m.value:.6g}") for m in history]
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"  # train.device=auto
    assert run.data.tags["device"] == expected_device and run.data.tags["seed"] == "0"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json"} <= artifacts
    text = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text()
    assert "lr: 0.02" in text


def test_checkpoint_best_saves_weights(tmp_path: Path) -> None:
    import torch

    _run(tmp_path, "", "train.epochs=2", "train.checkpoint=best", "deepfool.enabled=false", "mlflow.enabled=false")
    state = torch.load(tmp_path / "model.pt")
    assert any(k.endswith("weight") for k in state)


def test_early_stopping_and_time_budget_stop_training(tmp_path: Path) -> None:
    common = ("deepfool.enabled=false", "mlflow.enabled=false", "train.epochs=200")
    early = _run(tmp_path, "", *common, "train.early_stopping=2", "optimizer.lr=0.5")
    assert early["epochs"] < 200
    budget = _run(tmp_path, "", *common, "train.time_budget_s=0.5")
    assert budget["epochs"] < 200 and budget["train_seconds"] < 5


@CUDA
def test_cuda_trial_matches_cpu_accuracy_and_frees_the_device(tmp_path: Path) -> None:
    args = ("train.epochs=10", "deepfool.samples=200", "mlflow.enabled=false")
    gpu = _run(tmp_path / "g", "", *args, "train.device=cuda")
    held = torch.cuda.memory_allocated()  # the cached data set and cuBLAS's workspace stay; nothing of the trial
    again = _run(tmp_path / "g2", "", *args, "train.device=cuda")
    cpu = _run(tmp_path / "c", "", *args, "train.device=cpu")
    assert abs(gpu["test_acc"] - cpu["test_acc"]) < 0.05
    assert gpu["deepfool_margin"] == pytest.approx(cpu["deepfool_margin"], rel=0.1)
    assert again["test_acc"] == pytest.approx(gpu["test_acc"], abs=0.02)
    assert torch.cuda.memory_allocated() <= held  # a second trial leaves no more behind than the first


@pytest.mark.slow
def test_default_trial_peak_memory_stays_under_1_5_gb(tmp_path: Path) -> None:
    """The whole default CPU trial (imports, data, training, DeepFool, MLflow) in a fresh process, as `sweep` runs it.

    The peak is the process's own VmHWM: getrusage's ru_maxrss would also count the pages of the forking pytest
    process (Linux carries it across exec), which failed this test on a machine where pytest had grown to 1.6 GB.
    """
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sweep.cli import main\n"
        f"sys.argv = ['sweep', 'train.device=cpu', 'mlflow.tracking_uri=sqlite:///{tmp_path}/m.db',"
        f" 'hydra.run.dir={tmp_path}/run']\n"
        "main()\n"
        "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))\n"  # KiB
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    peak_kib = int(result.stdout.strip().splitlines()[-1])
    assert peak_kib * 1024 < 1.5e9, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_train_eval_acc_is_the_final_model_evaluated_on_what_it_trained_on(tmp_path: Path) -> None:
    """``train_acc`` is a running mean taken through dropout while the weights moved; ``train_eval_acc`` is the
    saved final model's accuracy on its training subset, recomputed here from model.pt."""
    from sweep.data import load_dataset
    from sweep.models import build_model

    cfg, resolved = trial_config("model.dropout=0.5", "train.epochs=3", "data.train_subset=300", "train.device=cpu",
                                 "train.checkpoint=final", "deepfool.enabled=false", "mlflow.enabled=false")
    metrics = run_trial(TrialJob(cfg, resolved, tmp_path, "e"))
    data = load_dataset(cfg.data, torch.device("cpu"))
    stats = (data.mean, data.std) if cfg.data.preprocess == "standardize" else None
    model = build_model(cfg.model, data.input_shape, data.num_classes, stats)
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    model.eval()
    x, y = data.train.head(300).batch(slice(0, 300))
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert metrics["train_eval_acc"] == pytest.approx(accuracy)
    assert metrics["train_eval_acc"] != metrics["train_acc"]


def test_deepfool_on_train_measures_the_subset_the_model_trained_on(tmp_path: Path) -> None:
    """A model that fits its 64 training images misclassifies none of them: DeepFool's "train" samples are those 64,
    not 1,000 drawn from the whole training split."""
    cfg, resolved = trial_config("data.train_subset=64", "train.epochs=80", "train.batch_size=16",
                                 "optimizer.lr=0.1", "deepfool.samples=1000", "deepfool.split=train",
                                 "train.device=cpu", "mlflow.enabled=false")
    metrics = run_trial(TrialJob(cfg, resolved, tmp_path, "subset"))
    assert metrics["train_eval_acc"] == 1.0
    assert metrics["deepfool_misclassified"] == 0
    assert metrics["deepfool_counted"] <= 64
