"""``hydra/launcher=stacked``: the jobs of a batch that can share a model are trained as one stacked model.

    sweep -m +experiment=quick/lr_bs_grid hydra/launcher=stacked

The Optuna sweeper (``hydra/sweeper=optuna``) hands this launcher ``hydra.launcher.batch`` trials at once (or
``hydra.sweeper.n_jobs`` where that is set above 1). Each job is first composed and set up as Hydra's basic launcher
does it (its folder, ``.hydra/``, its environment, its link to the study, its log file, Hydra's ``on_job_start``
callbacks), then the jobs are grouped by
:func:`sweep.stacked.key.stack_key` (data, architecture, batch size, epochs, device, optimizer family, measures),
each group is cut into stacks the device holds (:func:`sweep.stacked.memory.stack_cap`), and each stack trains as
one model (:func:`sweep.trial.run_stack`). A job that fits no group, or a stack of one, runs as an ordinary trial.
Every job gets its own result back, in order: its objective value(s), or the error that ended it alone. While a
stack trains, each trial's log file gets the lines of its own work and those of the stack's; a job's
``on_job_end`` callbacks run once it has trained, with what it returns.

This launcher runs sweep's own trials only (it trains them itself, in this process); another Hydra app is refused
in one line.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.callbacks import Callbacks
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra_optuna_studies.contract import ENV_TRIAL, STUDY_HOOK
from hydra_optuna_studies.errors import ConfigError, check
from omegaconf import DictConfig, open_dict

from .config import StackedLauncherConf

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
        from sweep.trial import own_work

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        ends = _EndsWhenTrained(self.hydra_context.callbacks)
        jobs = [self._prepare(overrides, initial_job_idx + i, ends) for i, overrides in enumerate(job_overrides)]
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        ready = [i for i, job in enumerate(jobs) if job.ret.status == JobStatus.COMPLETED]
        for stack in _stacks([jobs[i].ret.return_value for i in ready], ready):
            with _trial_logs([jobs[i] for i in stack]):
                for i, result in zip(stack, _train([jobs[i].ret.return_value for i in stack]), strict=True):
                    trial, ret = jobs[i].ret.return_value, jobs[i].ret
                    ret.return_value = result
                    ret.status = JobStatus.FAILED if isinstance(result, BaseException) else JobStatus.COMPLETED
                    with own_work(trial):
                        ends.end(jobs[i].config, ret)
        return [job.ret for job in jobs]

    def _prepare(self, overrides: Sequence[str], idx: int, ends: _EndsWhenTrained) -> _Prepared:
        """Compose and set up one job as Hydra's basic launcher does (folder, ``.hydra/``, environment, logging,
        ``on_job_start``), numbered by its trial (a batch's trials need not be consecutive when several workers share
        the study); what it returns is its :class:`sweep.trial.TrialJob`, or the error that refused its config."""
        from sweep.cli import prepare

        assert self.config is not None and self.hydra_context is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        number = sweep_config.hydra.job.env_set.get(ENV_TRIAL)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = int(number) if number is not None else idx
        context = HydraContext(config_loader=self.hydra_context.config_loader, callbacks=ends)
        ret = run_job(hydra_context=context, task_function=prepare, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]  # the job's, still
        return _Prepared(ret, sweep_config, files)


class _Prepared:
    """A job set up for training: what ``run_job`` returned (its TrialJob), its config, its log files' handlers."""

    def __init__(self, ret: JobReturn, config: DictConfig, files: list[logging.FileHandler]) -> None:
        self.ret, self.config, self.files = ret, config, files


class _EndsWhenTrained(Callbacks):
    """The sweep's Hydra callbacks, but ``on_job_end`` of a job set up for training waits for :meth:`end` (Hydra's
    ``run_job`` calls it as soon as the job's set-up returns); a job refused at set-up ends there."""

    def __init__(self, callbacks: Callbacks) -> None:
        super().__init__()
        self.callbacks = callbacks.callbacks

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status != JobStatus.COMPLETED:
            super().on_job_end(config, job_return, **kwargs)

    def end(self, config: DictConfig, ret: JobReturn) -> None:
        """The job's ``on_job_end`` as ``run_job`` calls it: its config current, in its working folder."""
        previous, cwd = HydraConfig.instance().cfg, os.getcwd()
        HydraConfig.instance().set_config(config)
        os.chdir(ret.working_dir or cwd)
        try:
            super().on_job_end(config, ret)
        finally:
            HydraConfig.instance().cfg = previous
            os.chdir(cwd)


class _TrialLogs(logging.Handler):
    """While a stack trains: a line about one trial's own work (:data:`sweep.trial.stacked_trial`) goes to that
    trial's log file, a line of the stack's to every trial's, each written as the job's own handler writes it."""

    def __init__(self, jobs: list[_Prepared]) -> None:
        super().__init__()
        self._files = {job.ret.return_value.output_dir: [_reopened(h) for h in job.files] for job in jobs}

    def emit(self, record: logging.LogRecord) -> None:
        from sweep.trial import stacked_trial

        trial = stacked_trial.get()
        files = self._files.get(trial.output_dir) if trial is not None else None
        for handler in files if files is not None else itertools.chain(*self._files.values()):
            if record.levelno >= handler.level:
                handler.handle(record)

    def close(self) -> None:
        for handler in itertools.chain(*self._files.values()):
            handler.close()
        super().close()


def _reopened(handler: logging.FileHandler) -> logging.FileHandler:
    """A job's file handler again, appending (Hydra closes the job's handlers when it sets up the next job)."""
    again = logging.FileHandler(handler.baseFilename, mode="a", encoding=handler.encoding, delay=True)
    again.setLevel(handler.level)
    again.setFormatter(handler.formatter)
    for kept in handler.filters:
        again.addFilter(kept)
    return again


@contextlib.contextmanager
def _trial_logs(jobs: list[_Prepared]) -> Iterator[None]:
    """The stack's trials' log files take the lines logged meanwhile (:class:`_TrialLogs`)."""
    handler = _TrialLogs(jobs)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()



def _stacks(jobs: list[Any], indices: list[int]) -> list[list[int]]:
    """The indices of ``jobs`` cut into stacks: grouped by stack key, each group cut to what its device holds; a job
    that cannot stack is a stack of its own."""
    from sweep.stacked.key import stack_key
    from sweep.stacked.memory import split, stack_cap
    from sweep.train import resolve_device
    from sweep.trial import checked_data

    groups: dict[Any, list[int]] = defaultdict(list)
    for i, job in zip(indices, jobs, strict=True):
        key = stack_key(job.cfg)
        if isinstance(key, str):
            log.info("Trial %s runs alone: %s", _number(job), key)
        groups[key if not isinstance(key, str) else ("alone", i)].append(i)
    by_index = dict(zip(indices, jobs, strict=True))
    stacks: list[list[int]] = []
    for group in groups.values():
        cfg = by_index[group[0]].cfg
        cap = 1 if len(group) == 1 else stack_cap(cfg, checked_data(cfg, resolve_device(cfg.train.device)))
        stacks += split(group, cap)
    return stacks


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
