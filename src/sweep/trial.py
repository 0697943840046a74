"""One trial, start to end: config -> data -> model -> train -> measure -> track.

This is the whole pipeline a newcomer needs to read; each step lives in the module named for it. A sweeper
calls it through the Hydra task in ``sweep.cli`` and never reaches inside.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from hydra_optuna_studies import reporting
from hydra_optuna_studies.contract import CONFIG_ARTIFACT, STUDY_TAG, TRIAL_TAG, TrialLink, masked
from torch import nn

from sweep.config import TrialConfig
from sweep.data import Dataset, Split, load_dataset
from sweep.errors import TrialDiverged
from sweep.init import init_weights
from sweep.measures import MEASURES
from sweep.models import build_model
from sweep.objectives import EPOCH_METRICS
from sweep.optimizers import build_optimizer
from sweep.plots import learning_curves
from sweep.tracking import TrialRun, flatten, git_commit, tracking_uri
from sweep.train import EpochCallback, FitResult, evaluate_train, fit, resolve_device

log = logging.getLogger(__name__)
stacked_trial: ContextVar[TrialJob | None] = ContextVar("stacked_trial", default=None)
"""The trial of a stack whose own work runs now (its run's start, its epoch callbacks, its measures), else None
(the stack's shared work): the stacked launcher writes a log line to that trial's log file, or to every trial's."""


@dataclass(frozen=True)
class TrialJob:
    """What a trial needs from the Hydra job that composed it, captured while that job's context holds: a stacked
    launcher prepares every job of its batch first, then trains them together outside any one job's context.

    ``resolved`` is the plain config as composed (logged as params and, with ``hydra_run``, the run folder a rerun
    writes to, as ``config.yaml``; every password masked). ``link`` is the sweep's trial this run is (None for a
    single run): its MLflow run nests under the sweep's, it reports its objective every epoch for pruning and records
    its final metrics with the trial (:mod:`hydra_optuna_studies.reporting`).
    """

    cfg: TrialConfig
    resolved: dict[str, Any]
    output_dir: Path
    run_name: str
    link: TrialLink | None = None
    hydra_run: dict[str, Any] | None = None


def run_trial(job: TrialJob) -> dict[str, float]:
    """Train and measure the model of ``job``; return its final metrics, also written to ``metrics.json``.

    Raises :class:`TrialDiverged` when the loss blows up and ``optuna.TrialPruned`` when the sweep prunes it;
    the MLflow run is closed FAILED or KILLED with the reason either way.
    """
    cfg = job.cfg
    device = resolve_device(cfg.train.device)
    data = checked_data(cfg, device)
    torch.manual_seed(cfg.train.seed)
    stats = (data.mean, data.std) if cfg.data.preprocess == "standardize" else None
    model = build_model(cfg.model, data.input_shape, data.num_classes, stats)
    init_weights(model, cfg.init)
    model.to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    trial = Tracked(job, device)
    try:
        with _progress(cfg.train.epochs, job.run_name, quiet=job.link is not None) as show:
            result = fit(model, optimizer, data, train_split(cfg, data), cfg.train, [trial.on_epoch, show],
                         [trial.on_eval])
        del optimizer
        return trial.finish(result, model, data, time.perf_counter() - trial.started)
    except BaseException as error:
        trial.fail(error)
        raise
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def run_stack(jobs: Sequence[TrialJob]) -> list[dict[str, float] | Exception]:
    """The trials of ``jobs`` (one :func:`~sweep.stacked.key.stack_key`) trained as one stacked model
    (:mod:`sweep.stacked`), each keeping what :func:`run_trial` gives a trial: its MLflow run, its reports to the
    study, its measures on its own final model, its files. Returns each trial's metrics, or the exception that ended
    it (it diverged, was pruned, or its objective could not be measured), in order; the others are not affected.
    """
    from sweep.stacked.loop import fit_stacked

    cfg = jobs[0].cfg
    device = resolve_device(cfg.train.device)
    data = checked_data(cfg, device)
    trials = []
    for job in jobs:
        with own_work(job):
            trials.append(Tracked(job, device, stack=len(jobs)))
    on_epoch = [_owned(t.job, t.on_epoch, _epoch_line(t.job.cfg.train.epochs, logging.DEBUG)) for t in trials]
    try:
        outcomes = fit_stacked([job.cfg for job in jobs], data, on_epoch, [_owned(t.job, t.on_eval) for t in trials])
    except BaseException as error:  # the whole stack stopped (interrupted, out of memory): every trial with it
        for trial in trials:
            with own_work(trial.job):
                trial.fail(error)
        raise
    seconds = time.perf_counter() - trials[0].started  # the stack's: its trials trained together
    results: list[dict[str, float] | Exception] = []
    for trial, outcome in zip(trials, outcomes, strict=True):
        with own_work(trial.job):
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                results.append(trial.finish(outcome.result, outcome.model, data, seconds))
            except Exception as error:  # noqa: BLE001 - one trial's end is its own
                trial.fail(error)
                results.append(error)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


@contextlib.contextmanager
def own_work(job: TrialJob) -> Iterator[None]:
    """What runs inside is ``job``'s own work (:data:`stacked_trial`)."""
    token = stacked_trial.set(job)
    try:
        yield
    finally:
        stacked_trial.reset(token)


def _owned(job: TrialJob, *callbacks: EpochCallback) -> EpochCallback:
    """``callbacks`` called in turn, as ``job``'s own work."""
    def call(metrics: dict[str, float]) -> None:
        with own_work(job):
            for callback in callbacks:
                callback(metrics)

    return call


def checked_data(cfg: TrialConfig, device: torch.device) -> Dataset:
    """The trial's data set, with what a measure cannot do with it refused now rather than after training."""
    data = load_dataset(cfg.data, device)
    for measure in MEASURES.values():
        if measure.check and cfg.measures[measure.name].enabled:
            measure.check(cfg.measures[measure.name], data)
    return data


def train_split(cfg: TrialConfig, data: Dataset) -> Split:
    """The training examples the trial trains on (``data.train_subset``: the first N of the pre-shuffled split)."""
    return data.train.head(cfg.data.train_subset)


class Tracked:
    """One trial's record keeping around its training: its MLflow run (started here), its per-epoch logging and
    reports to the sweep's study, and, once trained, its measures, metrics and files (:meth:`finish`) or its
    failure (:meth:`fail`). Training itself, alone or in a stack, happens between."""

    def __init__(self, job: TrialJob, device: torch.device, stack: int = 1) -> None:
        cfg = job.cfg
        self.job = job
        self.reporter = reporting.Reporter(job.link) if job.link is not None else None
        experiment = (job.link and job.link.experiment) or cfg.mlflow.experiment or cfg.name
        self.run = TrialRun(cfg.mlflow.enabled, tracking_uri(cfg.mlflow.tracking_uri), experiment)
        params = flatten({k: v for k, v in job.resolved.items() if k != "report"})  # the report's layout: no setting
        params = {k: masked(v) if isinstance(v, str) else v for k, v in params.items()}
        tags = _tags(cfg, device, job.link)
        if stack > 1:
            tags["sweep.stack"] = str(stack)  # trained in a stack of this many trials (hydra/launcher=stacked)
        self.run.start(job.run_name, params, tags, job.link.parent_run_id if job.link else None)
        rerun = {**job.resolved, "hydra": {"run": job.hydra_run}} if job.hydra_run else job.resolved
        self.run.log_text(masked(_yaml(rerun)), CONFIG_ARTIFACT)
        self.started = time.perf_counter()

    def on_epoch(self, metrics: dict[str, float]) -> None:
        """Log an epoch's metrics; report the objective to the study (which may prune: ``optuna.TrialPruned``)."""
        self.run.log_epoch({k: v for k, v in metrics.items() if k not in ("epoch", "step")}, int(metrics["epoch"]))
        objective = self.job.cfg.objective[0]
        if self.reporter is not None and objective in EPOCH_METRICS:
            self.reporter.report(metrics[objective], step=int(metrics["epoch"]))

    def on_eval(self, row: dict[str, float]) -> None:
        """An evaluation between epochs, logged against the optimizer step under ``step/`` (MLflow charts the
        group)."""
        self.run.log_epoch({f"step/{k}": v for k, v in row.items() if k != "step"}, int(row["step"]))

    def finish(self, result: FitResult, model: nn.Module, data: Dataset, train_seconds: float) -> dict[str, float]:
        """Measure the trained ``model``, record and write its metrics and history, close the run FINISHED."""
        cfg = self.job.cfg
        metrics = {k: v for k, v in result.history[-1].items() if k != "epoch_seconds"}
        metrics["epochs"] = metrics.pop("epoch")
        metrics["steps"] = metrics.pop("step")
        metrics["train_seconds"] = train_seconds
        trained_on = replace(data, train=train_split(cfg, data))  # measures on "train" see what it trained on
        metrics.update(evaluate_train(model, trained_on.train, cfg.train.eval_batch_size))
        for measure in MEASURES.values():
            if cfg.measures[measure.name].enabled:
                metrics.update(measure(model, trained_on, cfg.measures[measure.name]))
        history = {"epochs": result.history, "evaluations": result.evaluations}
        if self.reporter is not None:
            self.reporter.record(metrics, history)
        output_dir = self.job.output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        _write_json(output_dir / "metrics.json", metrics)
        _write_json(output_dir / "history.json", history)
        curves = learning_curves(result.history, output_dir / "learning_curves.png", title=self.job.run_name)
        if cfg.train.checkpoint != "none":
            torch.save(result.best_state or model.state_dict(), output_dir / "model.pt")
        self.run.log({f"final_{k}": v for k, v in metrics.items()}, tags={"sweep.stopped": result.stopped})
        for path in (output_dir / "metrics.json", output_dir / "history.json", curves):
            self.run.log_file(path)
        self.run.end("FINISHED")
        return metrics

    def fail(self, error: BaseException) -> None:
        """Close the run as the study will see the trial: KILLED when pruned or interrupted, else FAILED (the
        sweeper tags the state it gives the trial)."""
        pruned = type(error).__name__ == "TrialPruned"
        interrupted = isinstance(error, KeyboardInterrupt)
        self.run.log(tags={"sweep.diverged": isinstance(error, TrialDiverged)})
        self.run.end("KILLED" if pruned or interrupted else "FAILED", reason=str(error) or type(error).__name__)


def _write_json(path: Path, data: Any) -> None:
    """Strict JSON (a metric that could not be measured is null, never a bare NaN), written whole or not at all."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(reporting.strict(data), indent=2, allow_nan=False))
    partial.replace(path)


def _tags(cfg: TrialConfig, device: torch.device, link: TrialLink | None) -> dict[str, str]:
    tags = {
        "device": str(device),
        "seed": str(cfg.train.seed),
        "data": cfg.data.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "init": cfg.init.name,
    }
    if link is not None:
        tags[TRIAL_TAG] = str(link.trial_number)
        tags[STUDY_TAG] = link.study_name
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _yaml(tree: dict[str, Any]) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(tree))


def _epoch_line(epochs: int, level: int) -> EpochCallback:
    """An epoch's line on the log, at ``level``."""
    def line(m: dict[str, float]) -> None:
        shown = " ".join(f"{k} {m[k]:.4f}" for k in ("train_loss", "train_acc", "val_acc", "test_acc") if k in m)
        log.log(level, "epoch %d/%d %s", m["epoch"], epochs, shown)

    return line


@contextlib.contextmanager
def _progress(epochs: int, label: str, quiet: bool) -> Iterator[EpochCallback]:
    """An epoch bar with live loss and accuracy on a terminal; one log line per epoch otherwise. In a sweep
    (``quiet``) the sweep reports progress, and the epoch lines are debug output (``hydra.verbose=sweep.trial``)."""
    if quiet or not sys.stderr.isatty():
        yield _epoch_line(epochs, logging.DEBUG if quiet else logging.INFO)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[stats]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=epochs, stats="")

        def show(m: dict[str, float]) -> None:
            stats = f"loss {m['train_loss']:.4f} acc {m['train_acc']:.3f} test {m['test_acc']:.3f}"
            bar.update(task, completed=int(m["epoch"]), stats=stats)

        yield show
