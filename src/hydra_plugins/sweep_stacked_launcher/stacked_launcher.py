"""``hydra/launcher=stacked``: the jobs of a batch that can share a model are trained as one stacked model.

    sweep -m +experiment=quick/lr_bs_grid hydra/launcher=stacked

The Optuna sweeper (``hydra/sweeper=optuna``) hands this launcher ``hydra.launcher.batch`` trials at once (or
``hydra.sweeper.n_jobs`` where that is set above 1). Each job is first composed and set up as Hydra's basic launcher
does it (its folder, ``.hydra/``, its environment, its link to the study, its log file, Hydra's ``on_job_start``
callbacks), then the jobs are grouped by
:func:`sweep.stacked.key.stack_key` (data, architecture, batch size, epochs, device, optimizer family, measures),
each group is cut into stacks the device holds (:func:`sweep.stacked.memory.stack_cap`), and each stack trains as
one model (:func:`sweep.trial.run_stack`). A job that fits no group, or a stack of one, runs as an ordinary trial.
Every job gets its own result back, in order: its objective value(s), or the error that ended it alone. Its log
file and its ``on_job_end`` callbacks follow it through its training (:mod:`.jobs`).

This launcher runs sweep's own trials only (it trains them itself, in this process); another Hydra app is refused
in one line.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_optuna_studies.contract import ENV_TRIAL, STUDY_HOOK
from hydra_optuna_studies.errors import ConfigError, check
from omegaconf import DictConfig, open_dict

from .config import StackedLauncherConf
from .jobs import EndsWhenTrained, PreparedJob, trial_logs

log = logging.getLogger(__name__)


class StackedLauncher(Launcher):
    SWEEP_BATCHES = True  # the Optuna sweeper hands it many trials at once (hydra_optuna_studies' loop)

    def __init__(self, batch: int = StackedLauncherConf.batch) -> None:
        check(isinstance(batch, int) and batch >= 1, "hydra.launcher.batch", f"must be an integer >= 1, got {batch!r}")
        self.batch = batch
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from sweep.cli import describe_study

        if getattr(task_function, STUDY_HOOK, None) is not describe_study:
            name = getattr(task_function, "__module__", "?") + "." + getattr(task_function, "__name__", "?")
            raise ConfigError("hydra/launcher", f"stacked trains sweep's own trials, not {name}'s; use "
                                                "hydra/launcher=basic or joblib for this app")
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        callbacks = EndsWhenTrained(self.hydra_context.callbacks)
        context = HydraContext(config_loader=self.hydra_context.config_loader, callbacks=callbacks)
        jobs: list[PreparedJob] = []
        try:
            for i, overrides in enumerate(job_overrides):
                jobs.append(self._prepare(context, overrides, initial_job_idx + i))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            for group in _groups([job for job in jobs if job.waiting]):
                _train_group(group)
        except Exception as error:  # a job's config could not be composed, say: the jobs set up end with the batch
            for job in jobs:
                if job.waiting:
                    job.end(error)
            raise
        return [job.ret for job in jobs]

    def _prepare(self, context: HydraContext, overrides: Sequence[str], idx: int) -> PreparedJob:
        """Compose and set up one job as Hydra's basic launcher does (folder, ``.hydra/``, environment, logging,
        ``on_job_start``), numbered by its trial (a batch's trials need not be consecutive when several workers share
        the study), with a task that returns its :class:`sweep.trial.TrialJob` (or the error that refused its
        config)."""
        from sweep.cli import prepare

        assert self.config is not None
        sweep_config = context.config_loader.load_sweep_config(self.config, list(overrides))
        number = sweep_config.hydra.job.env_set.get(ENV_TRIAL)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = int(number) if number is not None else idx
        ret = run_job(hydra_context=context, task_function=prepare, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        assert isinstance(context.callbacks, EndsWhenTrained)
        return PreparedJob(ret, sweep_config, context.callbacks)


def _groups(jobs: list[PreparedJob]) -> list[list[PreparedJob]]:
    """``jobs`` grouped by stack key, in order; a job that cannot stack is a group of its own, and says why."""
    from sweep.stacked.key import stack_key

    groups: dict[Any, list[PreparedJob]] = defaultdict(list)
    for job in jobs:
        key = stack_key(job.trial.cfg)
        if isinstance(key, str):
            log.info("Trial %s runs alone: %s", _number(job.trial), key)
            key = ("alone", id(job))
        groups[key].append(job)
    return list(groups.values())


def _train_group(group: list[PreparedJob]) -> None:
    """Cut one group into the stacks its device holds, train each and end its jobs. A group whose data cannot be
    had fails its own jobs, not the batch's other groups."""
    from sweep.stacked.memory import split, stack_cap
    from sweep.train import resolve_device
    from sweep.trial import checked_data

    cfg = group[0].trial.cfg
    try:
        cap = 1 if len(group) == 1 else stack_cap(cfg, checked_data(cfg, resolve_device(cfg.train.device)))
    except Exception as error:  # noqa: BLE001 - its trials fail with the reason; the sweep goes on
        for job in group:
            job.end(error)
        return
    for stack in split(group, cap):
        with trial_logs(stack):
            for job, result in zip(stack, _train([job.trial for job in stack]), strict=True):
                job.end(result)


def _train(jobs: list[Any]) -> list[Any]:
    """Train one stack (or one ordinary trial); each job's objective value(s), or the exception that ended it."""
    from hydra_optuna_studies.tracking import quiet_tracking

    from sweep.cli import sweep_result
    from sweep.trial import run_stack, run_trial

    with quiet_tracking():
        if len(jobs) > 1:
            log.info("Trials %s train as one stack", ", ".join(_number(job) for job in jobs))
        try:
            outcomes: list[Any] = [run_trial(jobs[0])] if len(jobs) == 1 else run_stack(jobs)
        except Exception as error:  # noqa: BLE001 - the trial, or the whole stack (out of memory, say), failed
            outcomes = [error] * len(jobs)
    results = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        try:
            results.append(outcome if isinstance(outcome, Exception) else sweep_result(job, outcome))
        except Exception as error:  # noqa: BLE001 - an objective that could not be measured fails its trial
            results.append(error)
    return results


def _number(job: Any) -> str:
    return str(job.link.trial_number) if job.link is not None else job.run_name
