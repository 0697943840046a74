"""The written contract between the study side (the Optuna sweeper and its tools) and the trial side (any Hydra task).

The sweeper never writes into the app's config. For each job it sets these environment variables through Hydra's
per-job ``hydra.job.env_set``, which every launcher applies around the task (in-process, joblib, submitit):

=============================  ================================================================================
``SWEEP_STUDY_STORAGE``        the Optuna storage holding the study (a DB URL or a ``*.journal`` path)
``SWEEP_STUDY_NAME``           the study's name in that storage
``SWEEP_TRIAL_NUMBER``         this job's trial number in the study
``SWEEP_MLFLOW_PARENT_RUN``    the sweep's MLflow run id, when the app asked for tracking (see :class:`StudySpec`)
``SWEEP_MLFLOW_EXPERIMENT``    the MLflow experiment of that run
=============================  ================================================================================

**Secrets.** No password leaves the process that was given it: everything the sweeper prints, logs, stores or
writes (the study, ``multirun.yaml``, every job's config and ``.hydra/`` files, reports, MLflow) holds URLs with the
password masked (:func:`masked`: ``postgresql://user:***@host/db``), in every form a driver accepts (userinfo,
``?password=``, ``password=`` keywords). The real values travel only in the environment the sweeper's jobs inherit
(``SWEEP_SECRETS``, never saved): a job that needs one, say a tracking URI from its config, calls
:func:`reveal` on the masked value it was given.

What each side writes, and the other reads:

- the task returns a float, or a sequence of floats for several objectives (Hydra's ``JobReturn``);
- the task may report intermediate values and final metrics through :mod:`hydra_optuna_studies.reporting`
  (``report``, ``record``), which reach the trial in the shared storage: intermediate values (for pruning) and the
  user attributes ``metrics`` and (optionally) ``history``, the learning curves;
- the sweeper records the job's composed config as the user attribute ``config`` (the app's keys, and Hydra's
  ``hydra.run`` so that an exported config reruns in the app's own run folder), a failure's reason as
  ``fail_reason``, the worker that ran the trial as ``worker``, a ``heartbeat`` it refreshes while the trial runs (a
  RUNNING trial whose heartbeat stopped is taken for orphaned, on any host), ``retry_of`` on a trial that redoes an
  orphan's params; the study holds the pruner as the study user attribute ``pruner``, what the app told the sweeper
  about its study (:class:`StudySpec`) as ``app``, and the sweep's MLflow run as ``mlflow_run``;
- a task that tracks its trial in MLflow nests the run under ``SWEEP_MLFLOW_PARENT_RUN``, tags it ``STUDY_TAG``
  with the study's name (the sweep's MLflow view shows the runs so tagged) and ``optuna.trial_number``, and logs its
  config as the ``config.yaml`` artifact (``sweep-export --mlflow`` reads it); the sweeper tags the run with the
  trial's final state (``optuna.state``) once it has told the study, and closes it FAILED or KILLED when the study
  says the trial did not complete.

An app may opt into more by tagging its task function with :func:`describes_study`: the sweeper then calls that
function once with the composed config (without ``hydra``) before any study is opened, and uses the
:class:`StudySpec` it returns. An app that does not opt in is swept as any Hydra app is.

This module imports nothing heavy: both sides and every tool load it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

ENV_STORAGE = "SWEEP_STUDY_STORAGE"
ENV_STUDY = "SWEEP_STUDY_NAME"
ENV_TRIAL = "SWEEP_TRIAL_NUMBER"
ENV_PARENT_RUN = "SWEEP_MLFLOW_PARENT_RUN"
ENV_EXPERIMENT = "SWEEP_MLFLOW_EXPERIMENT"
ENV_SECRETS = "SWEEP_SECRETS"  # JSON list of the real values behind masked ones: inherited, never saved

CONFIG_ATTR = "config"  # trial user attribute: the job's composed config (sweeper)
METRICS_ATTR = "metrics"  # trial user attribute: final metrics (task, through reporting.record)
HISTORY_ATTR = "history"  # trial user attribute: {curve name: [{x and metric: value}, ...]} (task, through record)
FAIL_REASON_ATTR = "fail_reason"  # trial user attribute: why it failed (sweeper)
WORKER_ATTR = "worker"  # trial user attribute: the sweep process that ran it, "host:pid" (sweeper)
HEARTBEAT_ATTR = "heartbeat"  # trial user attribute: {"at": unix time, "every": seconds}, refreshed while it runs
RETRY_OF_ATTR = "retry_of"  # trial user attribute: the number of the orphaned trial whose params it redoes
PRUNER_ATTR = "pruner"  # study user attribute: the pruner, as a {_target_: ..., option: value} node
APP_ATTR = "app"  # study user attribute: what the app told about its study (StudySpec.shown_to_tools)
MLFLOW_RUN_ATTR = "mlflow_run"  # study user attribute: {"run_id", "experiment"} of the sweep's MLflow run

STATE_TAG = "optuna.state"  # MLflow tag of a trial's run: COMPLETE, PRUNED or FAIL, as the study has it
TRIAL_TAG = "optuna.trial_number"  # MLflow tag of a trial's run: its trial number
STUDY_TAG = "sweep.study"  # MLflow tag of the sweep's run and its trials' runs: the study's name
CONFIG_ARTIFACT = "config.yaml"  # MLflow artifact of a trial's run: its config, as the app reads it
FINAL_PREFIX = "final_"  # MLflow metrics of a trial's run: final_<metric>, the values it recorded
STUDY_HOOK = "__sweep_study__"  # attribute of a task function: its describe(config) -> StudySpec
LAUNCHER_BATCHES = "SWEEP_BATCHES"  # attribute of a launcher: True when it gains from many jobs at once (stacking)
LAUNCHER_BATCH = "batch"  # attribute of such a launcher: how many jobs it takes at once where n_jobs is 1


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
    return TrialLink(
        storage=reveal(environ[ENV_STORAGE], environ),
        study_name=environ[ENV_STUDY],
        trial_number=int(environ[ENV_TRIAL]),
        parent_run_id=environ.get(ENV_PARENT_RUN) or None,
        experiment=environ.get(ENV_EXPERIMENT) or None,
    )


# A password in a URL's userinfo (scheme://user:PASSWORD@host; SQLAlchemy takes '/' in it), as a query parameter
# (?password=..., libpq and SQLAlchemy), or as a libpq keyword (password=... in a DSN). Values end at whitespace or
# quotes, so a password can be found inside any text: a log line, an error message, a YAML file.
_SECRETS = (
    re.compile(r"(?P<keep>\b[A-Za-z][\w+.-]*://[^:/@\s'\"]*:)(?P<secret>[^@\s'\"]+)(?=@)"),
    re.compile(r"(?P<keep>[?&;](?:password|passwd|pwd)=)(?P<secret>[^&\s'\"#]+)", re.IGNORECASE),
    re.compile(r"(?P<keep>(?<![?&;\w])password\s*=\s*)(?P<secret>'[^']*'|[^\s'\"]+)", re.IGNORECASE),
)
MASK = "***"


def masked(text: str) -> str:
    """``text`` with every password it holds replaced by ``***``: what may be printed, logged or stored."""
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: m.group("keep") + MASK, text)
    return text


def reveal(value: str, environ: Mapping[str, str] = os.environ) -> str:
    """The real value behind ``value`` if it is a masked secret the sweeper handed this job, else ``value``."""
    if MASK not in value:
        return value
    for secret in json.loads(environ.get(ENV_SECRETS) or "[]"):
        if masked(secret) == value:
            return secret
    return value


def with_secrets(environ: Mapping[str, str], secrets: list[str]) -> str:
    """The ``SWEEP_SECRETS`` value holding ``secrets`` besides those already in ``environ``."""
    known = json.loads(environ.get(ENV_SECRETS) or "[]")
    return json.dumps(list(dict.fromkeys([*known, *secrets])))


@dataclass(frozen=True)
class StudySpec:
    """What an app that opts in tells the sweeper about its trials (every field optional).

    The first group steers the sweep; the second tells the study tools (tables, report, MLflow view) what to show,
    and is kept with the study (``app`` attribute), so ``sweep-report`` shows the same long after the sweep.
    """

    name: str | None = None  # the study name unless hydra.sweeper.study_name is set
    metrics: list[str] | None = None  # objective names, in the order the task returns them
    directions: list[str] | None = None  # one per metric, used unless hydra.sweeper.direction is set
    reported: tuple[str, ...] | None = None  # metrics the task reports every step (pruning needs the objective here)
    tracking_uri: str | None = None  # open an MLflow parent run for the sweep in this store ...
    experiment: str | None = None  # ... and experiment

    shown: tuple[str, ...] = ()  # recorded metrics the tables show beside the objectives (test_acc, a margin, ...)
    beside: dict[str, str] = field(default_factory=dict)  # metric -> what it rests on (margin -> success rate)
    curves: tuple[str, ...] = ()  # metrics of the recorded "epochs" history drawn as learning curves, in preference
    report: dict[str, Any] | None = None  # a preset's answer: hydra_optuna_studies.panels.ReportSpec's fields

    def shown_to_tools(self) -> dict[str, Any]:
        """The second group as plain data, for the study's ``app`` attribute."""
        keep = ("shown", "beside", "curves", "report")
        return {k: v for k, v in asdict(self).items() if k in keep and v}


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
