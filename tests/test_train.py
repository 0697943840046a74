"""The training loop on its own: learning, stopping rules, divergence, devices."""

from __future__ import annotations

import pytest
import torch
from hydra_optuna_studies.errors import ConfigError

from sweep.data import DataConfig, load_dataset
from sweep.errors import TrialDiverged
from sweep.models import MLPConfig, build_model
from sweep.optimizers import SGDConfig, build_optimizer
from sweep.train import TrainConfig, fit, resolve_device

CPU = torch.device("cpu")


def _fit(cfg: TrainConfig, lr: float = 0.05):
    data = load_dataset(DataConfig(name="digits"), CPU)
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden_dims=[32]), data.input_shape, data.num_classes, (data.mean, data.std))
    epochs: list[int] = []
    result = fit(model, build_optimizer(SGDConfig(lr=lr), model.parameters()), data, data.train, cfg,
                 [lambda m: epochs.append(int(m["epoch"]))])
    return result, epochs


def test_fit_learns_and_reports_every_epoch() -> None:
    result, epochs = _fit(TrainConfig(epochs=5, batch_size=64))
    assert epochs == [1, 2, 3, 4, 5] and result.stopped == "epochs"
    assert result.history[-1]["val_acc"] > 0.85 > result.history[0]["train_acc"] - 0.5


def test_early_stopping_and_budget_stop_before_the_last_epoch() -> None:
    early, _ = _fit(TrainConfig(epochs=300, batch_size=64, early_stopping=1), lr=0.5)
    assert early.stopped == "early_stopping" and len(early.history) < 300
    budget, _ = _fit(TrainConfig(epochs=10_000, batch_size=64, time_budget_s=0.3))
    assert budget.stopped == "time_budget" and len(budget.history) < 10_000


def test_a_diverging_loss_stops_training_at_once() -> None:
    with pytest.raises(TrialDiverged, match="training loss became (nan|inf) in epoch 1"):
        _fit(TrainConfig(epochs=5, batch_size=16), lr=1e12)


def test_best_checkpoint_keeps_the_weights_of_the_lowest_validation_loss() -> None:
    result, _ = _fit(TrainConfig(epochs=4, batch_size=64, checkpoint="best"))
    assert result.best_state is not None and any(k.endswith("weight") for k in result.best_state)


@pytest.mark.parametrize(("spec", "message"), [("tpu", "allowed: auto, cpu, cuda, cuda:N"),
                                               ("cuda:x", "train.device")])
def test_unknown_devices_are_refused(spec: str, message: str) -> None:
    if torch.cuda.is_available() and spec.startswith("cuda"):
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match=message):
        resolve_device(spec)
    assert resolve_device("cpu") == CPU
