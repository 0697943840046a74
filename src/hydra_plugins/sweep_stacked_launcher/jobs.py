"""Hydra jobs set up now and ended later: the stacked launcher sets up every job of a batch (Hydra's ``run_job``
with a task that only prepares the trial), trains them together, and only then ends each one.

What a job gets from Hydra between the two is kept here: its ``on_job_end`` callbacks wait for its end
(:class:`EndsWhenTrained`), and its log file takes, while its stack trains, the lines of its own work and its
stack's (:func:`trial_logs`). Hydra's ``on_job_start`` runs as each job is set up, so a batch's starts all come before
its first end: a callback that keeps per-job state keys it by the job (``HydraConfig.get().job.num``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from hydra._internal.callbacks import Callbacks
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig


class EndsWhenTrained(Callbacks):
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


class PreparedJob:
    """A job ``run_job`` has set up, with ``callbacks`` as its Hydra callbacks: its return (the trial to train, or
    the error that refused its config), its config, and its log files' handlers, taken while they are its."""

    def __init__(self, ret: JobReturn, config: DictConfig, callbacks: EndsWhenTrained) -> None:
        self.ret, self.config, self._callbacks = ret, config, callbacks
        self.files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        self.waiting = ret.status == JobStatus.COMPLETED  # set up, to be trained and ended
        self.trial: Any = ret.return_value if self.waiting else None  # sweep.trial.TrialJob

    def end(self, result: Any) -> None:
        """End the job with ``result`` (its objective value(s), or the error that ended it): its return, and its
        ``on_job_end`` callbacks as its own work."""
        from sweep.trial import own_work

        self.ret.return_value = result
        self.ret.status = JobStatus.FAILED if isinstance(result, BaseException) else JobStatus.COMPLETED
        self.waiting = False
        with own_work(self.trial):
            self._callbacks.end(self.config, self.ret)


class _TrialLogs(logging.Handler):
    """While a stack trains: a line about one trial's own work (:data:`sweep.trial.stacked_trial`) goes to that
    trial's log files, a line of the stack's to every trial's; each file written once, as the job's own handler
    writes it, and none that a live handler of the launcher writes already."""

    def __init__(self, jobs: list[PreparedJob]) -> None:
        from sweep.trial import stacked_trial

        super().__init__()
        self._current = stacked_trial
        live = {h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)}
        self._handlers: dict[str, logging.FileHandler] = {}
        self._names: dict[Any, list[str]] = {}  # a trial's output folder -> its files
        for job in jobs:
            own = [h for h in job.files if h.baseFilename not in live]
            for handler in own:
                self._handlers.setdefault(handler.baseFilename, _reopened(handler))
            self._names[job.trial.output_dir] = list(dict.fromkeys(h.baseFilename for h in own))

    def emit(self, record: logging.LogRecord) -> None:
        trial = self._current.get()
        names = self._names.get(trial.output_dir) if trial is not None else None
        for name in names if names is not None else self._handlers:
            handler = self._handlers[name]
            if record.levelno >= handler.level:
                handler.handle(record)

    def close(self) -> None:
        for handler in self._handlers.values():
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
def trial_logs(jobs: list[PreparedJob]) -> Iterator[None]:
    """The log files of a stack's jobs take the lines logged meanwhile (:class:`_TrialLogs`)."""
    handler = _TrialLogs(jobs)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
