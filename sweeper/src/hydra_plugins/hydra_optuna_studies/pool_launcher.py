"""``hydra/launcher=pool``: jobs in a pool of worker processes that keep the sweep's Hydra context between jobs.

Hydra's joblib launcher sends every job its whole context (the config loader, the master config, every Hydra
singleton) and sets it up again in the worker: Hydra rescans its plugins and copies its singletons for each job,
about 0.1 s on a 2-core CPU. Against trials of a fraction of a second, under the sweeper's slots (each launching
one job at a time), that round trip is most of what keeps a slot idle. This launcher runs its jobs on the same
engine (joblib's reusable loky pool, shared with Hydra's joblib launcher) but pickles the context once per sweep: a
worker process sets it up for the first job of a sweep it sees and reuses it for the next ones, as Hydra's basic
launcher reuses its one process. With the context comes the sweep's environment (what a process started now would
inherit: one kept from an earlier sweep has that sweep's); the CPU threads are split between the processes when
they start, as joblib splits them. What a job does to its process (a module's globals, a singleton it changes) is
there for the next job of that process, as with joblib's reused processes.

Each job still goes through Hydra's ``run_job``: its own folder, ``.hydra/`` files, logging and callbacks.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from joblib.executor import get_memmapping_executor
from omegaconf import DictConfig, open_dict

from hydra_optuna_studies.errors import SweepError

from ._workers import thread_share

# In a worker process: the sweep whose context is set up here, by its key (only the latest sweep's is kept).
_CONTEXT: dict[str, tuple[HydraContext, DictConfig, TaskFunction]] = {}
Context = tuple[str, dict[str, str], bytes]  # a sweep's key, environment and pickled Hydra context


class PoolLauncher(Launcher):
    def __init__(self, n_jobs: int) -> None:
        self.n_jobs = n_jobs
        self._lock = threading.Lock()
        self._context: Context | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        if self.n_jobs < 1:  # here, not in __init__: Hydra's instantiate would wrap the one line in three
            raise SweepError(f"hydra.launcher.n_jobs: the pool's worker processes, 1 or more (got {self.n_jobs})")
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config
        self._threads = thread_share(self.n_jobs)  # each process's share, set when it starts (and in its context)
        self._context = None

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs, up to ``n_jobs`` at once; return what each returned, in order. The sweeper's slots call
        this from several threads at once, one job each."""
        context = self._sweep_context()
        executor = get_memmapping_executor(self.n_jobs, env=self._threads)  # joblib's, reused
        futures = [executor.submit(_execute_job, context, initial_job_idx + i, list(overrides))
                   for i, overrides in enumerate(job_overrides)]
        return [future.result() for future in futures]

    def _sweep_context(self) -> Context:
        """This sweep's context, made at its first launch (the sweeper has set everything up by then): a key, the
        environment, and Hydra's context, the master config, the task and Hydra's singletons, pickled once
        (cloudpickle: a task defined in ``__main__`` goes by value)."""
        with self._lock:
            if self._context is None:
                setup_globals()
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
                state = (self.hydra_context, self.config, self.task_function, Singleton.get_state())
                environ = {**os.environ, **self._threads}
                self._context = (uuid.uuid4().hex, environ, cloudpickle.dumps(state))
            return self._context


def _execute_job(context: Context, idx: int, overrides: list[str]) -> JobReturn:
    """In a worker process: set the sweep's context up if this process has not yet, then run one job."""
    key, environ, pickled = context
    if key not in _CONTEXT:
        for name in set(os.environ) - set(environ):  # an earlier sweep's (its secrets among them)
            del os.environ[name]
        os.environ.update(environ)  # before unpickling the task, which imports the app
        hydra_context, config, task_function, singletons = cloudpickle.loads(pickled)
        setup_globals()
        Singleton.set_state(singletons)
        _CONTEXT.clear()
        _CONTEXT[key] = (hydra_context, config, task_function)
    hydra_context, config, task_function = _CONTEXT[key]
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    return run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
