"""The training loop: minibatch SGD over tensors that already sit on the device.

Speed comes from what it does not do: no DataLoader (a batch is one index into a device tensor), no host sync
per step (losses and correct counts accumulate on the device and are read once per epoch), and evaluation in
large batches under ``torch.inference_mode``. A divergence check reads one number every ``_CHECK_EVERY`` steps.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sweep.config import TrainConfig
from sweep.data import Dataset, Split
from sweep.errors import ConfigError, TrialDiverged

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


@dataclass
class FitResult:
    history: list[dict[str, float]]  # one dict of metrics per epoch run
    best_state: dict[str, torch.Tensor] | None  # weights at the lowest validation loss (checkpoint=best)
    stopped: str  # "epochs" | "early_stopping" | "time_budget"


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


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    train_split: Split,
    cfg: TrainConfig,
    on_epoch: list[EpochCallback],
) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs, calling each of ``on_epoch`` with that epoch's metrics.

    Raises :class:`TrialDiverged` as soon as the training loss is NaN or infinite; a callback may raise to stop
    training (the sweeper's pruning does).
    """
    device = train_split.y.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    n = len(train_split)
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    best_loss, best_state, stale, stopped = math.inf, None, 0, "epochs"
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        totals = torch.zeros(2, device=device)  # summed loss, correct count
        order = torch.randperm(n, generator=generator, device=device)
        for step, start in enumerate(range(0, n, cfg.batch_size), 1):
            x, y = train_split.batch(order[start : start + cfg.batch_size])
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                totals[0] += loss.detach() * y.shape[0]
                totals[1] += (logits.argmax(1) == y).sum()
            if step % _CHECK_EVERY == 0:
                _check_finite(totals[0].item(), epoch)
                if cfg.time_budget_s and time.perf_counter() - started > cfg.time_budget_s:
                    stopped = "time_budget"
                    break
        model.eval()
        evals = [evaluate(model, split, cfg.eval_batch_size) for split in (data.val, data.test)]
        sums = torch.cat([totals, *evals])
        seen = min(n, step * cfg.batch_size)
        t_loss, t_acc, v_loss, v_acc, s_loss, s_acc = sums.tolist()  # the one host sync of the epoch
        _check_finite(t_loss, epoch)
        metrics = {
            "epoch": epoch,
            "train_loss": t_loss / seen,
            "train_acc": t_acc / seen,
            "val_loss": v_loss / len(data.val),
            "val_acc": v_acc / len(data.val),
            "test_loss": s_loss / len(data.test),
            "test_acc": s_acc / len(data.test),
            "epoch_seconds": time.perf_counter() - epoch_start,
        }
        history.append(metrics)
        for callback in on_epoch:
            callback(metrics)
        if metrics["val_loss"] < best_loss:
            best_loss, stale = metrics["val_loss"], 0
            if cfg.checkpoint == "best":
                best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if stopped == "time_budget" or (cfg.time_budget_s and time.perf_counter() - started > cfg.time_budget_s):
            stopped = "time_budget"
            break
        if cfg.early_stopping and stale >= cfg.early_stopping:
            stopped = "early_stopping"
            break
    return FitResult(history, best_state, stopped)


def _check_finite(loss_sum: float, epoch: int) -> None:
    if not math.isfinite(loss_sum):
        raise TrialDiverged(f"training loss became {loss_sum} in epoch {epoch}; the trial diverged")
