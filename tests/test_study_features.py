"""The config keys the motivating studies need (../shared/studies.md): each builds or does what it says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra_optuna_studies.errors import ConfigError
from torch import nn

from sweep.config import DataConfig, MLPConfig, SGDConfig, TrainConfig
from sweep.data import load_dataset
from sweep.measures.deepfool import DeepFoolConfig, margins
from sweep.models import Normalize, build_model
from sweep.optimizers import build_optimizer
from sweep.train import fit
from sweep.trial import TrialJob, run_trial
from tests.conftest import run_cli, trial_config

CPU = torch.device("cpu")
SHAPE = (1, 8, 8)


def _fit(train: TrainConfig, data_cfg: DataConfig | None = None, lr: float = 0.05, on_eval: list | None = None):
    data = load_dataset(data_cfg or DataConfig(), CPU)
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden_dims=[32]), data.input_shape, data.num_classes, (data.mean, data.std))
    optimizer = build_optimizer(SGDConfig(lr=lr), model.parameters())
    return fit(model, optimizer, data, data.train, train, [], on_eval or []), data


def test_per_layer_activations_and_keep_probabilities_build_the_layers_asked_for() -> None:
    cfg = MLPConfig(hidden_dims=[16, 32, 8], activation=["relu", "celu", "swish"], keep_prob=[1.0, 0.8, 0.8, 0.9])
    model = build_model(cfg, SHAPE, 10, None)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.CELU, nn.Dropout,
                     nn.Linear, nn.SiLU, nn.Dropout, nn.Linear]
    assert [round(m.p, 6) for m in model if isinstance(m, nn.Dropout)] == [0.2, 0.2, 0.1]  # keep 1.0: no input layer


def test_input_dropout_and_per_layer_drop_probabilities() -> None:
    model = build_model(MLPConfig(hidden_dims=[16, 8], dropout=[0.0, 0.5], input_dropout=0.25), SHAPE, 10, None)
    drops = [(i, m.p) for i, m in enumerate(model) if isinstance(m, nn.Dropout)]
    assert drops == [(0, 0.25), (6, 0.5)]  # before Flatten, and after the second hidden layer only


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"hidden_dims": [8, 8], "activation": ["relu"]}, "model.activation"),
    ({"hidden_dims": [8], "activation": ["gelu"]}, "model.activation"),
    ({"hidden_dims": [8, 8], "dropout": [0.1, 1.0]}, "model.dropout"),
    ({"hidden_dims": [8], "keep_prob": [1.0]}, "model.keep_prob"),
    ({"hidden_dims": [8], "keep_prob": [1.0, 0.0]}, "model.keep_prob"),
    ({"hidden_dims": [8], "keep_prob": [1.0, 0.5], "dropout": 0.1}, "model.keep_prob"),
])
def test_bad_per_layer_settings_name_their_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key}: "):
        MLPConfig(**kwargs)


def test_a_cnn_takes_one_activation_for_all_layers() -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as refused:  # lists are for an MLP's hidden layers
        trial_config("model=cnn", "model.activation=[relu]")
    assert refused.value.__cause__.full_key == "model.activation"  # type: ignore[union-attr]
    assert "Cannot convert 'list' to string" in str(refused.value.__cause__)


def test_val_fraction_zero_trains_on_every_example_and_has_no_val_metrics() -> None:
    result, data = _fit(TrainConfig(epochs=1, batch_size=64), DataConfig(val_fraction=0.0))
    full = load_dataset(DataConfig(val_fraction=0.1), CPU)
    assert len(data.val) == 0 and len(data.train) == len(full.train) + len(full.val)
    assert set(result.history[0]) >= {"train_acc", "test_acc"} and "val_acc" not in result.history[0]


def test_val_fraction_zero_refuses_what_would_read_a_validation_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^objective: val_acc needs a validation split"):
        trial_config("data.val_fraction=0")
    with pytest.raises(ConfigError, match="^deepfool.split: the val split is empty"):
        cfg, resolved = trial_config("data.val_fraction=0", "objective=[test_acc]", "deepfool.split=val",
                                     "mlflow.enabled=false", "train.epochs=1")
        run_trial(TrialJob(cfg, resolved, tmp_path, "v"))


def test_pixels_preprocessing_feeds_the_network_pixels_over_the_scale(tmp_path: Path) -> None:
    """A linear model's saved weights reproduce its test accuracy on x / 16 (digits' scale) and hold no
    normalisation; standardised, the same model carries the training statistics as its first layer."""
    common = ("model.hidden_dims=[]", "train.epochs=3", "objective=[test_acc]", "deepfool.enabled=false",
              "mlflow.enabled=false", "train.checkpoint=final", "train.device=cpu")
    cfg, resolved = trial_config("data.preprocess=pixels", *common)
    metrics = run_trial(TrialJob(cfg, resolved, tmp_path / "p", "p"))
    state = torch.load(tmp_path / "p" / "model.pt")
    assert sorted(state) == ["1.bias", "1.weight"]  # Flatten, Linear: nothing between the pixels and the weights
    test = load_dataset(cfg.data, CPU).test
    logits = test.x.flatten(1).float() / 16 @ state["1.weight"].T + state["1.bias"]
    assert (logits.argmax(1) == test.y).float().mean().item() == pytest.approx(metrics["test_acc"])
    cfg, resolved = trial_config(*common)
    run_trial(TrialJob(cfg, resolved, tmp_path / "s", "s"))
    assert {"0.mean", "0.std"} <= set(torch.load(tmp_path / "s" / "model.pt"))
    model = build_model(cfg.model, SHAPE, 10, (torch.ones(1), torch.ones(1)))
    assert isinstance(model[0], Normalize)


def test_evaluation_every_n_steps_logs_at_those_steps(tmp_path: Path, tracking_uri: str) -> None:
    from mlflow import MlflowClient

    cfg, resolved = trial_config(f"mlflow.tracking_uri={tracking_uri}", "train.eval_every=7", "train.epochs=2",
                                 "train.batch_size=64", "deepfool.enabled=false", "name=steps",
                                 "train.device=cpu")
    metrics = run_trial(TrialJob(cfg, resolved, tmp_path, "steps"))
    steps_per_epoch = math.ceil(len(load_dataset(cfg.data, CPU).train) / 64)
    assert metrics["steps"] == 2 * steps_per_epoch
    expected = list(range(7, metrics["steps"] + 1, 7))
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["step"] for row in history["evaluations"]] == expected
    assert all(0 <= row["val_acc"] <= 1 and row["seconds"] > 0 for row in history["evaluations"])
    client = MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("steps").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "step/val_acc")] == expected


def test_training_stops_at_the_training_accuracy_target() -> None:
    result, _ = _fit(TrainConfig(epochs=100, batch_size=64, target_train_acc=0.9))
    accuracies = [m["train_acc"] for m in result.history]
    assert result.stopped == "target_train_acc" and 1 < len(accuracies) < 100
    assert accuracies[-1] >= 0.9 > max(accuracies[:-1])


def test_early_stopping_watches_the_metric_it_is_given() -> None:
    result, _ = _fit(TrainConfig(epochs=200, batch_size=64, early_stopping=2, early_stopping_metric="test_acc"),
                     lr=0.5)
    accuracies = [m["test_acc"] for m in result.history]
    assert result.stopped == "early_stopping"
    best = accuracies.index(max(accuracies))
    assert len(accuracies) == best + 3 and max(accuracies[best + 1:]) <= accuracies[best]


def test_time_budget_counts_training_not_evaluation() -> None:
    """Evaluating after every step costs more than the training itself; the budget still buys the same training."""
    plain, _ = _fit(TrainConfig(epochs=10_000, batch_size=64, time_budget_s=0.5))
    busy, _ = _fit(TrainConfig(epochs=10_000, batch_size=64, time_budget_s=0.5, eval_every=1))
    assert busy.stopped == plain.stopped == "time_budget"
    assert busy.history[-1]["step"] > 0.3 * plain.history[-1]["step"]
    # The budget is checked every 25 steps and at each epoch's end, on training seconds (the evaluations' clock):
    # it stopped at the first check past 0.5 s, however loaded the machine and however long the evaluations took.
    ends = [0, *(row["step"] for row in busy.history)]  # each epoch's last step; the checks count steps per epoch
    checks = set(ends[1:]) | {step for before, end in zip(ends, ends[1:], strict=False)
                              for step in range(before + 25, end, 25)}
    at_checks = [r["seconds"] for r in busy.evaluations if r["step"] in checks]
    assert at_checks[-1] > 0.5 and all(seconds <= 0.5 for seconds in at_checks[:-1])


def test_run_names_come_from_the_template(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    result = run_cli("model=cnn", "model.layers_per_block=1", "model.channels=[4,8]", "train.epochs=1",
                     "mlflow.run_name='L{model.layers_per_block}_K{model.channels}'", "data.train_subset=32",
                     "deepfool.enabled=false", "name=named", f"mlflow.tracking_uri={store}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("named").experiment_id])
    assert run.info.run_name == "L1_K4-8"
    bad = run_cli("mlflow.run_name='L{model.depth}'", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: mlflow.run_name: {model.depth} names no config key; use dotted keys such as {model.hidden_dims}"]


def test_deepfool_first_examples_count_all_and_iteration_cap() -> None:
    data = load_dataset(DataConfig(), CPU)
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden_dims=[16]), data.input_shape, data.num_classes, (data.mean, data.std))
    model.eval()
    first = data.train.first_in_file(50)
    assert data.train.rows[first].tolist() == sorted(data.train.rows.tolist())[:50]
    correct = margins(model, data, DeepFoolConfig(samples=50, pick="first", min_share=0.0))
    every = margins(model, data, DeepFoolConfig(samples=50, pick="first", count="all", min_share=0.0))
    capped = margins(model, data, DeepFoolConfig(samples=50, pick="first", max_iter=1, min_share=0.0))
    assert every["deepfool_counted"] == 50 * every["deepfool_success_rate"]  # untrained: all fooled, most wrong
    assert correct["deepfool_counted"] == 50 - correct["deepfool_misclassified"]
    assert capped["deepfool_iterations"] <= 1 <= correct["deepfool_iterations"]


def test_a_margin_over_too_few_samples_is_not_a_number(tmp_path: Path) -> None:
    """A collapsed model (every weight zero, one class for every input) is fooled nowhere: its margin is NaN with
    the count beside it, and metrics.json stays strict JSON (null)."""
    data = load_dataset(DataConfig(), CPU)
    model = build_model(MLPConfig(hidden_dims=[8]), data.input_shape, data.num_classes, None)
    for p in model.parameters():
        nn.init.zeros_(p)
    stats = margins(model.eval(), data, DeepFoolConfig(samples=40))
    assert math.isnan(stats["deepfool_margin"]) and stats["deepfool_counted"] < 20
    cfg, resolved = trial_config("optimizer.lr=1e-9", "train.epochs=1", "init=normal", "init.std=1e-6",
                                 "deepfool.samples=40", "deepfool.min_share=1.0", "mlflow.enabled=false",
                                 "train.device=cpu")
    metrics = run_trial(TrialJob(cfg, resolved, tmp_path, "collapsed"))
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and json.loads(text)["deepfool_margin"] is None
    assert math.isnan(metrics["deepfool_margin"]) and json.loads(text)["deepfool_counted"] < 40
