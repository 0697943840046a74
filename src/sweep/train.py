"""The training loop: minibatch SGD over tensors that already sit on the device.

Speed comes from what it does not do: no DataLoader (a batch is one index into a device tensor), no host sync
per step (losses and correct counts accumulate on the device and are read once per epoch), and evaluation in
large batches under ``torch.inference_mode``. A divergence check reads one number every ``_CHECK_EVERY`` steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from hydra_optuna_studies.errors import ConfigError
from torch import nn

from sweep.config import TrainConfig
from sweep.data import Dataset, Split
from sweep.errors import TrialDiverged
from sweep.objectives import default_direction

_CHECK_EVERY = 25  # steps between divergence / time-budget checks (each costs one host sync on CUDA)


def resolve_device(spec: str) -> torch.device:
    """The torch device for ``train.device``, refusing CUDA where there is none."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(spec[5:]) if spec[5:].isdigit() else (0 if spec == "cuda" else -1)
        if count == 0:
            raise ConfigError("train.device", f"got {spec!r} but CUDA is not available here; allowed: auto, cpu")
        if not 0 <= index < count:
            raise ConfigError("train.device", f"got {spec!r}; allowed: auto, cpu, cuda, cuda:0..cuda:{count - 1}")
        return torch.device(spec)
    raise ConfigError("train.device", f"got {spec!r}; allowed: auto, cpu, cuda, cuda:N")


EpochCallback = Callable[[dict[str, float]], None]
EVAL_SPLITS = ("val", "test")  # evaluated after every epoch (and every train.eval_every steps) when not empty


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one dict of metrics per epoch run
    evaluations: list[dict[str, float]]  # one per train.eval_every steps: step, epoch, seconds and the metrics
    best_state: dict[str, torch.Tensor] | None  # weights at the best early_stopping_metric (checkpoint=best)
    stopped: str  # "epochs" | "early_stopping" | "time_budget" | "target_train_acc"


def evaluate(model: nn.Module, split: Split, batch_size: int) -> torch.Tensor:
    """Summed loss and correct count over ``split`` as a 2-vector on the device (no host sync)."""
    totals = torch.zeros(2, device=split.y.device)
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            x, y = split.batch(slice(start, start + batch_size))
            logits = model(x)
            totals[0] += F.cross_entropy(logits, y, reduction="sum")
            totals[1] += (logits.argmax(1) == y).sum()
    return totals


def evaluate_train(model: nn.Module, split: Split, batch_size: int) -> dict[str, float]:
    """The final model's loss and accuracy on the examples it trained on. ``train_acc`` is the running mean over the
    last epoch, taken while the weights were still changing (and through dropout): a different number, up to a few
    points apart, and not the one a generalisation gap should use."""
    was_training = model.training
    model.eval()
    loss, correct = evaluate(model, split, batch_size).tolist()
    model.train(was_training)
    return {"train_eval_loss": loss / len(split), "train_eval_acc": correct / len(split)}


def _metrics(model: nn.Module, data: Dataset, train_sums: torch.Tensor, seen: int, batch_size: int) -> dict[str, float]:
    """Mean training loss and accuracy over the ``seen`` examples summed in ``train_sums``, and the loss and accuracy
    of each evaluation split that has examples, read from the device in one sync."""
    splits = [name for name in EVAL_SPLITS if len(data.split(name))]
    was_training = model.training
    model.eval()
    sums = torch.cat([train_sums, *(evaluate(model, data.split(name), batch_size) for name in splits)]).tolist()
    model.train(was_training)
    metrics = {"train_loss": sums[0] / seen, "train_acc": sums[1] / seen}
    for i, name in enumerate(splits, 1):
        metrics[f"{name}_loss"] = sums[2 * i] / len(data.split(name))
        metrics[f"{name}_acc"] = sums[2 * i + 1] / len(data.split(name))
    return metrics


class _Monitor:
    """Tracks ``train.early_stopping_metric``: whether an epoch improved it, and how many epochs in a row did not."""

    def __init__(self, metric: str) -> None:
        self.metric, self.sign = metric, 1.0 if default_direction(metric) == "minimize" else -1.0
        self.best, self.stale = math.inf, 0

    def improved(self, metrics: dict[str, float]) -> bool:
        if self.metric not in metrics:  # no validation split and nothing asked for it (checked in the config)
            return False
        value = self.sign * metrics[self.metric]
        if value < self.best:
            self.best, self.stale = value, 0
            return True
        self.stale += 1
        return False


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    train_split: Split,
    cfg: TrainConfig,
    on_epoch: list[EpochCallback],
    on_eval: Sequence[EpochCallback] = (),
) -> FitResult:
    """Train ``model`` for up to ``cfg.epochs`` epochs, calling each of ``on_epoch`` with that epoch's metrics and
    each of ``on_eval`` with those of every evaluation between epochs (``cfg.eval_every``).

    Training stops early at the time budget (training seconds: evaluations are not counted), at the training
    accuracy target, or when ``cfg.early_stopping`` epochs in a row did not improve the early-stopping metric.
    Raises :class:`TrialDiverged` as soon as the training loss is NaN or infinite; a callback may raise to stop
    training (the sweeper's pruning does).
    """
    device = train_split.y.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    n = len(train_split)
    started, eval_seconds, steps = time.perf_counter(), 0.0, 0

    def train_seconds() -> float:
        return time.perf_counter() - started - eval_seconds

    history: list[dict[str, float]] = []
    evaluations: list[dict[str, float]] = []
    monitor, best_state, stopped = _Monitor(cfg.early_stopping_metric), None, "epochs"
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        totals = torch.zeros(2, device=device)  # summed loss, correct count: this epoch
        last_totals, last_seen = torch.zeros(2, device=device), 0  # totals and examples at the last evaluation
        order = torch.randperm(n, generator=generator, device=device)
        for step, start in enumerate(range(0, n, cfg.batch_size), 1):
            x, y = train_split.batch(order[start : start + cfg.batch_size])
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            with torch.no_grad():
                totals[0] += loss.detach() * y.shape[0]
                totals[1] += (logits.argmax(1) == y).sum()
            if cfg.eval_every and steps % cfg.eval_every == 0:  # train metrics over the steps since the last one
                eval_start, trained = time.perf_counter(), train_seconds()  # this evaluation's time not counted
                seen = min(n, step * cfg.batch_size)
                window = _metrics(model, data, totals - last_totals, seen - last_seen, cfg.eval_batch_size)
                _check_finite(window["train_loss"], epoch)
                row = {"step": steps, "epoch": epoch - 1 + seen / n, "seconds": trained, **window}
                evaluations.append(row)
                last_totals, last_seen = totals.clone(), seen
                eval_seconds += time.perf_counter() - eval_start
                for callback in on_eval:
                    callback(row)
            if step % _CHECK_EVERY == 0:
                _check_finite(totals[0].item(), epoch)
                if cfg.time_budget_s and train_seconds() > cfg.time_budget_s:
                    stopped = "time_budget"
                    break
        seen = min(n, step * cfg.batch_size)
        eval_start = time.perf_counter()
        metrics = {"epoch": epoch, "step": steps, **_metrics(model, data, totals, seen, cfg.eval_batch_size)}
        eval_seconds += time.perf_counter() - eval_start
        _check_finite(metrics["train_loss"], epoch)
        metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        history.append(metrics)
        for callback in on_epoch:
            callback(metrics)
        if monitor.improved(metrics) and cfg.checkpoint == "best":
            best_state = copy.deepcopy(model.state_dict())
        if stopped == "time_budget" or (cfg.time_budget_s and train_seconds() > cfg.time_budget_s):
            stopped = "time_budget"
            break
        if cfg.target_train_acc is not None and metrics["train_acc"] >= cfg.target_train_acc:
            stopped = "target_train_acc"
            break
        if cfg.early_stopping and monitor.stale >= cfg.early_stopping:
            stopped = "early_stopping"
            break
    return FitResult(history, evaluations, best_state, stopped)


def _check_finite(loss_sum: float, epoch: int) -> None:
    if not math.isfinite(loss_sum):
        raise TrialDiverged(f"training loss became {loss_sum} in epoch {epoch}; the trial diverged")
