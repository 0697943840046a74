"""The written contract between the study side (the Optuna sweeper) and the trial side (any Hydra task).

The sweeper never writes into the app's config. For each job it sets these environment variables through Hydra's
per-job ``hydra.job.env_set``, which every launcher applies around the task (in-process, joblib, submitit):

=============================  ================================================================================
``SWEEP_STUDY_STORAGE``        the Optuna storage holding the study (a DB URL or a ``*.journal`` path)
``SWEEP_STUDY_NAME``           the study's name in that storage
``SWEEP_TRIAL_NUMBER``         this job's trial number in the study
``SWEEP_MLFLOW_PARENT_RUN``    the sweep's MLflow run id, when the app asked for tracking (see :class:`StudySpec`)
``SWEEP_MLFLOW_EXPERIMENT``    the MLflow experiment of that run
=============================  ================================================================================

A password in the storage URL never enters ``env_set`` (Hydra saves it into every job's ``.hydra/hydra.yaml``): the
job gets the URL with its password masked (``postgresql://user:***@host/db``) and the real one as
``SWEEP_STUDY_STORAGE_URL``, which the sweep's process sets in its own environment and every launcher's jobs
inherit (in-process, joblib's workers, SLURM's exported environment).

What each side writes, and the other reads:

- the task returns a float, or a sequence of floats for several objectives (Hydra's ``JobReturn``);
- the task may report intermediate values and final metrics through :mod:`sweep.reporting` (``report``,
  ``record``), which reach the trial in the shared storage: intermediate values (for pruning) and the user attributes
  ``metrics`` and (optionally) ``history``, the learning curves;
- the sweeper records the job's composed config as the user attribute ``config``, a failure's reason as
  ``fail_reason``, the worker that ran the trial as ``worker``, and a ``heartbeat`` it refreshes while the trial
  runs (a RUNNING trial whose heartbeat stopped is taken for orphaned, on any host); the study holds the pruner's
  settings as the study user attribute ``pruner``;
- a task that tracks its trial in MLflow nests the run under ``SWEEP_MLFLOW_PARENT_RUN`` and tags it ``STUDY_TAG``
  with the study's name, as the sweep's run is tagged (the sweep's MLflow view groups the runs by it).

An app may opt into more by tagging its task function with :func:`describes_study`: the sweeper then calls that
function once with the composed config (without ``hydra``) before any study is opened, and uses the
:class:`StudySpec` it returns (check the config, name the objectives and their directions, open an MLflow parent
run). An app that does not opt in is swept as any Hydra app is.

This module imports nothing heavy: both sides and every tool load it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

ENV_STORAGE = "SWEEP_STUDY_STORAGE"
ENV_STUDY = "SWEEP_STUDY_NAME"
ENV_TRIAL = "SWEEP_TRIAL_NUMBER"
ENV_PARENT_RUN = "SWEEP_MLFLOW_PARENT_RUN"
ENV_EXPERIMENT = "SWEEP_MLFLOW_EXPERIMENT"
ENV_STORAGE_URL = "SWEEP_STUDY_STORAGE_URL"  # the storage URL with its password: inherited, never saved

CONFIG_ATTR = "config"  # trial user attribute: the job's composed config (sweeper)
METRICS_ATTR = "metrics"  # trial user attribute: final metrics (task, through sweep.reporting.record)
HISTORY_ATTR = "history"  # trial user attribute: {curve name: [{x and metric: value}, ...]} (task, through record)
FAIL_REASON_ATTR = "fail_reason"  # trial user attribute: why it failed (sweeper)
WORKER_ATTR = "worker"  # trial user attribute: the sweep process that ran it, "host:pid" (sweeper)
HEARTBEAT_ATTR = "heartbeat"  # trial user attribute: {"at": unix time, "every": seconds}, refreshed while it runs
PRUNER_ATTR = "pruner"  # study user attribute: {"name": ..., "options": {...}} (sweeper)

STUDY_TAG = "sweep.study"  # MLflow tag of the sweep's run and its trials' runs: the study's name
STUDY_HOOK = "__sweep_study__"  # attribute of a task function: its describe(config) -> StudySpec


@dataclass(frozen=True)
class TrialLink:
    """Where the running job's trial lives; what the sweeper hands each job."""

    storage: str
    study_name: str
    trial_number: int
    parent_run_id: str | None = None
    experiment: str | None = None

    def env(self) -> dict[str, str]:
        """The job's environment variables (for ``hydra.job.env_set``): no password among them."""
        env = {ENV_STORAGE: masked(self.storage), ENV_STUDY: self.study_name, ENV_TRIAL: str(self.trial_number)}
        if self.parent_run_id:
            env[ENV_PARENT_RUN] = self.parent_run_id
        if self.experiment:
            env[ENV_EXPERIMENT] = self.experiment
        return env


def current_link(environ: Mapping[str, str] = os.environ) -> TrialLink | None:
    """The link of the trial this process runs, or None outside a sweep (a single run)."""
    if not all(environ.get(k) for k in (ENV_STORAGE, ENV_STUDY, ENV_TRIAL)):
        return None
    storage, secret = environ[ENV_STORAGE], environ.get(ENV_STORAGE_URL, "")
    return TrialLink(
        storage=secret if secret and masked(secret) == storage else storage,
        study_name=environ[ENV_STUDY],
        trial_number=int(environ[ENV_TRIAL]),
        parent_run_id=environ.get(ENV_PARENT_RUN) or None,
        experiment=environ.get(ENV_EXPERIMENT) or None,
    )


def masked(url: str) -> str:
    """``url`` with its password, if it has one, replaced by ``***``: what may be printed, logged or stored."""
    return re.sub(r"(://[^/:@]+:)[^/@]*@", r"\1***@", url)


@dataclass(frozen=True)
class StudySpec:
    """What an app that opts in tells the sweeper about its trials (every field optional)."""

    name: str | None = None  # the study name unless hydra.sweeper.study_name is set
    metrics: list[str] | None = None  # objective names, in the order the task returns them
    directions: list[str] | None = None  # one per metric, used unless hydra.sweeper.direction is set
    reported: tuple[str, ...] | None = None  # metrics the task reports every step (pruning needs the objective here)
    tracking_uri: str | None = None  # open an MLflow parent run for the sweep in this store ...
    experiment: str | None = None  # ... and experiment


F = TypeVar("F", bound=Callable[..., Any])


def describes_study(describe: Callable[[Any], StudySpec]) -> Callable[[F], F]:
    """Decorator for a Hydra task function: ``describe(config)`` tells the sweeper about the app's trials.

    Apply it below ``@hydra.main`` (Hydra hands the sweeper the undecorated function)::

        @hydra.main(config_path="conf", config_name="config", version_base="1.3")
        @describes_study(lambda cfg: StudySpec(metrics=list(cfg.objective)))
        def task(cfg): ...
    """

    def tag(task: F) -> F:
        setattr(task, STUDY_HOOK, describe)
        return task

    return tag
