"""``sweep.train.fit`` for a stack: one pass per step trains every trial, and each trial's numbers are its own run's.

Each trial keeps what makes its run its own: its data order (a generator seeded with its ``train.seed`` draws one
``randperm`` per epoch, as ``fit`` draws it), its dropout masks (:mod:`sweep.stacked.dropout`), its loss (the mean
over its own batch), its metrics, its divergence check, its stopping rules and its callbacks. A trial leaves the
stack when its loss is no longer finite (its outcome is the ``TrialDiverged`` that ``fit`` raises, with the same
message), when one of its callbacks raises (that exception is its outcome: ``optuna.TrialPruned`` when pruned) and
when it stops early; the others go on unchanged, since no operation of a stack mixes trials.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sweep.config import TrainConfig, TrialConfig
from sweep.data import Dataset, Split
from sweep.errors import TrialDiverged
from sweep.init import init_weights
from sweep.models import build_model
from sweep.stacked.dropout import trial_stream
from sweep.stacked.key import stack_key
from sweep.stacked.model import StackedModel
from sweep.stacked.optim import StackedOptimizer, build_optimizer
from sweep.train import _CHECK_EVERY, EVAL_SPLITS, EpochCallback, FitResult, _check_finite, _Monitor


@dataclass
class Trained:
    """A trial that trained to its end: what ``fit`` returns for it, and its final model unstacked."""

    result: FitResult
    model: nn.Module


Outcome = Trained | Exception  # Trained, or the exception that ended the trial (TrialDiverged, TrialPruned, ...)


def build_stack(cfgs: Sequence[TrialConfig], data: Dataset) -> StackedModel:
    """Each trial's model built and initialised exactly as ``sweep.trial.run_trial`` builds it (seed, build_model,
    init_weights), then stacked on the data's device; each trial's dropout stream continues from its own init."""
    device = data.train.y.device
    stats = (data.mean, data.std) if cfgs[0].data.preprocess == "standardize" else None
    models, streams = [], []
    for cfg in cfgs:
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data.input_shape, data.num_classes, stats)
        init_weights(model, cfg.init)
        models.append(model)
        streams.append(trial_stream(device))
    return StackedModel(models, streams, device)


def fit_stacked(
    cfgs: Sequence[TrialConfig],
    data: Dataset,
    on_epoch: Sequence[EpochCallback | None] | None = None,
    on_eval: Sequence[EpochCallback | None] | None = None,
) -> list[Outcome]:
    """Train the trials of ``cfgs`` as one stack on ``data`` (on its device), calling ``on_epoch[i]`` with trial i's
    metrics after each of its epochs and ``on_eval[i]`` with those of each evaluation between epochs, as ``fit``
    calls its callbacks; return one outcome per trial, in order.

    The trials must share one :func:`~sweep.stacked.key.stack_key`; raises ValueError with its reason otherwise.
    """
    keys = {stack_key(cfg) for cfg in cfgs}
    refusal = next((k for k in keys if isinstance(k, str)), None)
    if refusal or len(keys) != 1:
        raise ValueError(refusal or "these trials cannot share a stack: their stack keys differ")
    stack = build_stack(cfgs, data)
    optimizer = build_optimizer([cfg.optimizer for cfg in cfgs], stack.device)
    trials = [
        _Trial(i, cfg.train, torch.Generator(stack.device).manual_seed(cfg.train.seed),
               on_epoch[i] if on_epoch else None, on_eval[i] if on_eval else None,
               _Monitor(cfg.train.early_stopping_metric))
        for i, cfg in enumerate(cfgs)
    ]
    return _Run(stack, optimizer, data, data.train.head(cfgs[0].data.train_subset), trials).run()


@dataclass
class _Trial:
    """One trial's own state in a stack: what ``fit`` keeps in its locals."""

    index: int  # position in the caller's list
    cfg: TrainConfig
    order: torch.Generator  # draws its data order
    on_epoch: EpochCallback | None
    on_eval: EpochCallback | None
    monitor: _Monitor
    history: list[dict[str, float]] = field(default_factory=list)
    evaluations: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, Tensor] | None = None


class _Run:
    """The stack's training run; rows of every per-trial tensor follow ``trials``, which shrinks as trials leave."""

    def __init__(self, stack: StackedModel, optimizer: StackedOptimizer, data: Dataset, split: Split,
                 trials: list[_Trial]) -> None:
        self.stack, self.optimizer, self.data, self.split, self.trials = stack, optimizer, data, split, trials
        self.cfg = trials[0].cfg  # what the stack key makes common: epochs, batch sizes, eval_every
        self.device = split.y.device
        self.outcomes: dict[int, Outcome] = {}
        self.steps, self.eval_seconds, self.started = 0, 0.0, time.perf_counter()
        self.totals = self.last_totals = self.order = torch.empty(0)
        self.last_seen = 0

    def run(self) -> list[Outcome]:
        for epoch in range(1, self.cfg.epochs + 1):
            if not self.trials:
                break
            self.epoch(epoch)
        self.leave({row: self.trained(row, "epochs") for row in range(len(self.trials))})
        return [self.outcomes[i] for i in sorted(self.outcomes)]

    def epoch(self, epoch: int) -> None:
        """One epoch of ``fit``'s loop for every trial still in the stack."""
        epoch_start = time.perf_counter()
        n, batch_size = len(self.split), self.cfg.batch_size
        self.stack.train()
        self.totals = torch.zeros(len(self.trials), 2, device=self.device)  # summed loss, correct count per trial
        self.last_totals, self.last_seen = torch.zeros_like(self.totals), 0
        self.order = torch.stack([torch.randperm(n, generator=t.order, device=self.device) for t in self.trials])
        for step, start in enumerate(range(0, n, batch_size), 1):
            if not self.trials:
                return
            self.train_step(self.order[:, start : start + batch_size])
            if self.cfg.eval_every and self.steps % self.cfg.eval_every == 0:
                self.evaluate_window(epoch, min(n, step * batch_size))
            if step % _CHECK_EVERY == 0:
                self.leave({row: error for row, total in enumerate(self.totals[:, 0].tolist())
                            if (error := _diverged(total, epoch))})
        if not self.trials:
            return
        eval_start = time.perf_counter()
        rows = self.metrics(self.totals, min(n, step * batch_size))
        self.eval_seconds += time.perf_counter() - eval_start
        self.leave({row: outcome for row, metrics in enumerate(rows)
                    if (outcome := self.end_epoch(row, {"epoch": epoch, "step": self.steps, **metrics}, epoch_start))})

    def train_step(self, index: Tensor) -> None:
        x, y = self.split.batch(index)  # (T, B, C, H, W), (T, B): each trial's own batch
        logits = self.stack(x)
        losses, values = _loss(logits, y)
        grads = torch.autograd.grad(losses.sum(), self.stack.params)
        self.optimizer.step(self.stack.params, grads)
        self.steps += 1
        with torch.no_grad():
            self.totals[:, 0] += values * y.shape[1]
            self.totals[:, 1] += (logits.argmax(2) == y).sum(1)

    def evaluate_window(self, epoch: int, seen: int) -> None:
        """``fit``'s evaluation every ``train.eval_every`` steps: train metrics over the steps since the last one."""
        eval_start = time.perf_counter()
        seconds = eval_start - self.started - self.eval_seconds  # training seconds: this evaluation's not counted
        windows = self.metrics(self.totals - self.last_totals, seen - self.last_seen)
        leaving: dict[int, Outcome] = {}
        for row, (trial, window) in enumerate(zip(self.trials, windows, strict=True)):
            if diverged := _diverged(window["train_loss"], epoch):
                leaving[row] = diverged
                continue
            trial.evaluations.append({"step": self.steps, "epoch": epoch - 1 + seen / len(self.split),
                                      "seconds": seconds, **window})
        self.last_totals, self.last_seen = self.totals.clone(), seen
        self.eval_seconds += time.perf_counter() - eval_start
        for row, trial in enumerate(self.trials):
            if row not in leaving and (error := _called(trial.on_eval, trial.evaluations[-1])):
                leaving[row] = error
        self.leave(leaving)

    def end_epoch(self, row: int, metrics: dict[str, float], epoch_start: float) -> Outcome | None:
        """What ``fit`` does with an epoch's metrics, for the trial at ``row``; its outcome if it leaves now."""
        trial = self.trials[row]
        if diverged := _diverged(metrics["train_loss"], int(metrics["epoch"])):
            return diverged
        metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        trial.history.append(metrics)
        if error := _called(trial.on_epoch, metrics):
            return error
        if trial.monitor.improved(metrics) and trial.cfg.checkpoint == "best":
            trial.best_state = self.stack.unstack(row).state_dict()
        if trial.cfg.target_train_acc is not None and metrics["train_acc"] >= trial.cfg.target_train_acc:
            return self.trained(row, "target_train_acc")
        if trial.cfg.early_stopping and trial.monitor.stale >= trial.cfg.early_stopping:
            return self.trained(row, "early_stopping")
        return None

    def trained(self, row: int, stopped: str) -> Trained:
        trial = self.trials[row]
        result = FitResult(trial.history, trial.evaluations, trial.best_state, stopped)
        return Trained(result, self.stack.unstack(row))

    def leave(self, leaving: dict[int, Outcome]) -> None:
        """The trials at these rows leave the stack with their outcomes; the others' rows close up."""
        if not leaving:
            return
        for row, outcome in leaving.items():
            self.outcomes[self.trials[row].index] = outcome
        rows = [row for row in range(len(self.trials)) if row not in leaving]
        self.trials = [self.trials[row] for row in rows]
        if rows:
            self.stack.keep(rows)
            self.optimizer.keep(rows)
        self.totals, self.last_totals, self.order = self.totals[rows], self.last_totals[rows], self.order[rows]

    def metrics(self, train_sums: Tensor, seen: int) -> list[dict[str, float]]:
        """``fit``'s ``_metrics`` per trial: mean training loss and accuracy over the ``seen`` examples summed in
        ``train_sums`` (one row per trial), and each evaluation split's, read from the device in one sync."""
        splits = [name for name in EVAL_SPLITS if len(self.data.split(name))]
        self.stack.eval()
        sums = torch.cat([train_sums, *(self.evaluate(self.data.split(name)) for name in splits)], dim=1).tolist()
        self.stack.train()
        rows = []
        for row in sums:
            metrics = {"train_loss": row[0] / seen, "train_acc": row[1] / seen}
            for i, name in enumerate(splits, 1):
                metrics[f"{name}_loss"] = row[2 * i] / len(self.data.split(name))
                metrics[f"{name}_acc"] = row[2 * i + 1] / len(self.data.split(name))
            rows.append(metrics)
        return rows

    def evaluate(self, split: Split) -> Tensor:
        """``sweep.train.evaluate`` per trial: summed loss and correct count over ``split``, one row per trial."""
        trials = len(self.trials)
        totals = torch.zeros(trials, 2, device=self.device)
        with torch.inference_mode():
            for start in range(0, len(split), self.cfg.eval_batch_size):
                x, y = split.batch(slice(start, start + self.cfg.eval_batch_size))
                logits = self.stack(x.expand(trials, *x.shape).contiguous())
                for row in range(trials):  # the sum as cross_entropy's own kernel orders it: bitwise the same
                    totals[row, 0] += F.cross_entropy(logits[row], y, reduction="sum")
                totals[:, 1] += (logits.argmax(2) == y).sum(1)
        return totals


def _loss(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Each trial's ``F.cross_entropy`` (the mean over its batch) as a (T,) tensor to differentiate, and its value as
    ``cross_entropy`` itself computes it: on the CPU ``nll_loss`` sums a batch in its own cascaded order, which a
    mean over the stacked tensor does not reproduce (1e-7 apart), so the values come from one ``nll_loss`` per trial.
    On CUDA, whose reductions agree with neither bitwise, the mean serves without T more kernel launches."""
    t, b, k = logits.shape
    log_p = F.log_softmax(logits, dim=2)
    losses = F.nll_loss(log_p.reshape(t * b, k), y.reshape(t * b), reduction="none").view(t, b).mean(1)
    if logits.device.type != "cpu":
        return losses, losses.detach()
    with torch.no_grad():
        values = torch.stack([F.nll_loss(trial, target) for trial, target in zip(log_p, y, strict=True)])
    return losses, values


def _diverged(loss: float, epoch: int) -> TrialDiverged | None:
    """``fit``'s divergence check: the error it raises for a loss that is not finite, or None."""
    try:
        _check_finite(loss, epoch)
    except TrialDiverged as error:
        return error
    return None


def _called(callback: EpochCallback | None, metrics: dict[str, float]) -> Exception | None:
    """Call a trial's callback; the exception it raised, which ends that trial alone, or None."""
    try:
        if callback is not None:
            callback(metrics)
    except Exception as error:  # noqa: BLE001 - whatever a callback raises ends its trial, as it ends fit()
        return error
    return None
