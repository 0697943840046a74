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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from hydra_optuna_studies import reporting
from hydra_optuna_studies.contract import CONFIG_ARTIFACT, STUDY_TAG, TRIAL_TAG, TrialLink, masked

from sweep.config import TrialConfig
from sweep.data import load_dataset
from sweep.errors import TrialDiverged
from sweep.init import init_weights
from sweep.measures import MEASURES
from sweep.models import build_model
from sweep.objectives import EPOCH_METRICS
from sweep.optimizers import build_optimizer
from sweep.plots import learning_curves
from sweep.tracking import TrialRun, flatten, git_commit, tracking_uri
from sweep.train import EpochCallback, fit, resolve_device

log = logging.getLogger(__name__)


def run_trial(
    cfg: TrialConfig, resolved: dict[str, Any], output_dir: Path, run_name: str, link: TrialLink | None = None,
    hydra_run: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train and measure the model of ``cfg``; return its final metrics, also written to ``metrics.json``.

    ``resolved`` is the plain config as composed (logged as params and, with ``hydra_run``, the run folder a rerun
    writes to, as ``config.yaml``; every password masked). ``link`` is the sweep's trial this run is (None for a
    single run): its MLflow run nests under the sweep's, it reports its objective every epoch for pruning and records
    its final metrics with the trial (:mod:`hydra_optuna_studies.reporting`).
    Raises :class:`TrialDiverged` when the loss blows up and ``optuna.TrialPruned`` when the sweep prunes it;
    the MLflow run is closed FAILED or KILLED with the reason either way.
    """
    device = resolve_device(cfg.train.device)
    data = load_dataset(cfg.data, device)
    train_split = data.train.head(cfg.data.train_subset)
    for measure in MEASURES.values():  # what a measure cannot do with these data fails now, not after training
        if measure.check and cfg.measures[measure.name].enabled:
            measure.check(cfg.measures[measure.name], data)

    torch.manual_seed(cfg.train.seed)
    stats = (data.mean, data.std) if cfg.data.preprocess == "standardize" else None
    model = build_model(cfg.model, data.input_shape, data.num_classes, stats)
    init_weights(model, cfg.init)
    model.to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())

    experiment = (link and link.experiment) or cfg.mlflow.experiment or cfg.name
    run = TrialRun(cfg.mlflow.enabled, tracking_uri(cfg.mlflow.tracking_uri), experiment)
    params = flatten({k: v for k, v in resolved.items() if k != "report"})  # the report's layout is no setting
    params = {k: masked(v) if isinstance(v, str) else v for k, v in params.items()}
    run.start(run_name, params, _tags(cfg, device, link), link.parent_run_id if link else None)
    rerun = {**resolved, "hydra": {"run": hydra_run}} if hydra_run else resolved
    run.log_text(masked(_yaml(rerun)), CONFIG_ARTIFACT)
    callbacks: list[EpochCallback] = [lambda m: run.log_epoch(_epoch_metrics(m), int(m["epoch"]))]
    on_eval: list[EpochCallback] = [lambda m: run.log_epoch(_step_metrics(m), int(m["step"]))]
    if link is not None and cfg.objective[0] in EPOCH_METRICS:
        callbacks.append(lambda m: reporting.report(m[cfg.objective[0]], step=int(m["epoch"])))
    started = time.perf_counter()
    try:
        with _progress(cfg.train.epochs, run_name, quiet=link is not None) as show:
            result = fit(model, optimizer, data, train_split, cfg.train, [*callbacks, show], on_eval)
        metrics = {k: v for k, v in result.history[-1].items() if k != "epoch_seconds"}
        metrics["epochs"] = metrics.pop("epoch")
        metrics["steps"] = metrics.pop("step")
        metrics["train_seconds"] = time.perf_counter() - started
        for measure in MEASURES.values():
            if cfg.measures[measure.name].enabled:
                metrics.update(measure(model, data, cfg.measures[measure.name]))
    except BaseException as error:
        _close_failed(run, error)
        raise
    finally:
        del optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()

    history = {"epochs": result.history, "evaluations": result.evaluations}
    reporting.record(metrics, history)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_json(output_dir / "metrics.json", metrics)
    _write_json(output_dir / "history.json", history)
    curves = learning_curves(result.history, output_dir / "learning_curves.png", title=run_name)
    if cfg.train.checkpoint != "none":
        torch.save(result.best_state or model.state_dict(), output_dir / "model.pt")
    final = {f"final_{k}": v for k, v in metrics.items()}
    run.log(final, tags={"sweep.stopped": result.stopped})
    run.log_file(output_dir / "metrics.json")
    run.log_file(output_dir / "history.json")
    run.log_file(curves)
    run.end("FINISHED")
    return metrics


def _write_json(path: Path, data: Any) -> None:
    """Strict JSON (a metric that could not be measured is null, never a bare NaN), written whole or not at all."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(reporting.strict(data), indent=2, allow_nan=False))
    partial.replace(path)


def _close_failed(run: TrialRun, error: BaseException) -> None:
    """Close the run as the study will see the trial: KILLED when pruned or interrupted, else FAILED (a sweeper
    tags the state it gives the trial)."""
    pruned = type(error).__name__ == "TrialPruned"
    interrupted = isinstance(error, KeyboardInterrupt)
    run.log(tags={"sweep.diverged": isinstance(error, TrialDiverged)})
    run.end("KILLED" if pruned or interrupted else "FAILED", reason=str(error) or type(error).__name__)


def _epoch_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k not in ("epoch", "step")}


def _step_metrics(row: dict[str, float]) -> dict[str, float]:
    """An evaluation between epochs, logged against the optimizer step under ``step/`` (MLflow charts the group)."""
    return {f"step/{k}": v for k, v in row.items() if k != "step"}


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


@contextlib.contextmanager
def _progress(epochs: int, label: str, quiet: bool) -> Iterator[EpochCallback]:
    """An epoch bar with live loss and accuracy on a terminal; one log line per epoch otherwise. In a sweep
    (``quiet``) the sweep reports progress, and the epoch lines are debug output (``hydra.verbose=sweep.trial``)."""
    if quiet or not sys.stderr.isatty():
        def line(m: dict[str, float]) -> None:
            shown = " ".join(f"{k} {m[k]:.4f}" for k in ("train_loss", "train_acc", "val_acc", "test_acc") if k in m)
            log.log(logging.DEBUG if quiet else logging.INFO, "epoch %d/%d %s", m["epoch"], epochs, shown)

        yield line
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
