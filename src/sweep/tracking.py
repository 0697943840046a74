"""MLflow tracking that can never take a trial down.

A :class:`Run` wraps one MLflow run through ``MlflowClient`` (no global "active run", so many trials in one
process never tangle). Every call is guarded: the first failure (a tracking server gone mid-sweep, a locked
SQLite file) is warned about once, the run is given up, and training goes on; the Optuna result never depends
on MLflow. A trial's :class:`TrialRun` queues epoch metrics and sends them at most once a second; final metrics
and tags go in one request. The sweep's own run (``sweep.study.sweep_run``) builds on the same :class:`Run`.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

from sweep.errors import SweepError

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# The MLflow 3 UI opens experiments of this kind on the training-runs table, not the GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir
    experiment: str | None = None  # null: the trial's ``name``; in a sweep, the sweep's experiment
    # The run's name, from config values: "L{model.layers_per_block}_K{model.channels}" -> L4_K64-128 (lists joined
    # by "-"). null: trial_<number> in a sweep, the output folder's name in a single run.
    run_name: str | None = None


def shown(value: float) -> float:
    """``value`` to 6 significant digits, as it is sent to MLflow, whose columns print numbers as stored (an accuracy
    of 141/144 is 0.979167, not 0.9791666666666666). Nothing measurable is lost: float32 training resolves no more,
    and an accuracy k/n keeps its k for any n under a million. ``metrics.json`` and the study keep exact values."""
    return float(f"{float(value):.6g}")


def tracking_uri(configured: str | None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@functools.cache
def git_commit() -> str | None:
    """The commit of the code that ran, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.cache
def _client(uri: str) -> MlflowClient:
    # A tracking server that is down should cost a trial seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." is no news to the user
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.DEBUG:  # hydra.verbose=mlflow keeps them
            logger.setLevel(logging.WARNING)

    return MlflowClient(tracking_uri=uri)


def experiment_id_of(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (opening on the runs table) if it does not exist."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, tags=EXPERIMENT_KIND)
    except Exception:  # another worker created it between our two calls
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: config keys as MLflow param names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


_FAILED: set[str] = set()  # stores that failed in this process: later runs skip them instead of retrying each time


def check_store(uri: str) -> None:
    """Fail in one line, at once and without creating anything, for a store no run could use: a SQLite file whose
    folder does not exist or cannot be written, a server that does not answer its health check within 5 s. (Each
    MLflow call would otherwise retry with backoff, up to minutes per trial.)"""
    from urllib.error import URLError
    from urllib.request import urlopen

    from sweep.contract import masked

    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise SweepError(f"mlflow.tracking_uri: no folder {folder} for the SQLite store {uri}")
        if not os.access(folder, os.W_OK):  # SQLite writes its journal beside the database
            raise SweepError(f"mlflow.tracking_uri: the folder {folder} of the SQLite store {uri} is not "
                             "writable")
    elif uri.startswith(("http://", "https://")):
        try:
            urlopen(f"{uri.rstrip('/')}/health", timeout=5).close()
        except (URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SweepError(f"mlflow.tracking_uri: the MLflow server {masked(uri)} does not answer ({reason}); "
                             "start it, or set mlflow.enabled=false") from None


class Run:
    """One MLflow run, created on :meth:`start` (or found again, by the sweep) and closed on :meth:`end`."""

    def __init__(self, enabled: bool, uri: str, experiment: str) -> None:
        if enabled and uri in _FAILED:
            log.warning("MLflow store %s failed earlier in this process; this run is not tracked", uri)
        self.enabled = enabled and uri not in _FAILED
        self.uri = uri
        self.experiment = experiment
        self.run_id: str | None = None

    @property
    def client(self) -> MlflowClient:
        return _client(self.uri)

    @property
    def id(self) -> str:
        """The run's id; only asked for inside :meth:`guard`, which runs nothing before the run exists."""
        assert self.run_id is not None
        return self.run_id

    def guard(self, action: Callable[[], Any]) -> Any:
        """Run one MLflow call; on failure warn once and stop logging for this run.

        Deprecation warnings raised inside MLflow (its SQLAlchemy models, for one) concern MLflow's code, not the
        user's: they are ignored here, so that ``python -W error`` does not turn them into lost tracking.
        """
        if not self.enabled:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return action()
        except Exception as error:  # noqa: BLE001 - tracking must never fail the trial
            log.warning("MLflow logging failed (%s: %s); this run stops logging, the trial goes on",
                        type(error).__name__, error)
            self.enabled = False
            _FAILED.add(self.uri)
            return None

    def start(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str],
              parent_run_id: str | None = None) -> None:
        """Create the run (nested under ``parent_run_id`` if given) with its params and tags."""

        def create() -> str:
            from mlflow.entities import Param

            all_tags = {**tags, "mlflow.runName": name}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(experiment_id_of(self.client, self.experiment), tags=all_tags, run_name=name)
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run.info.run_id, params=items[i : i + 100], synchronous=True)
            return run.info.run_id

        self.run_id = self.guard(create)
        self.enabled = self.enabled and self.run_id is not None

    def log(self, metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None,
            step: int | None = None) -> None:
        """Metrics (at ``step``) and tags in one request: each request is a database transaction or an HTTP call."""

        def send() -> None:
            from mlflow.entities import Metric, RunTag

            now = int(time.time() * 1000)
            self.client.log_batch(
                self.id,
                metrics=[Metric(k, shown(v), now, step or 0) for k, v in (metrics or {}).items()],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
            )

        self.guard(send)

    def log_text(self, text: str, path: str) -> None:
        self.guard(lambda: self.client.log_text(self.id, text, path))

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self.guard(lambda: self.client.log_artifact(self.id, str(path), folder))

    def end(self, status: str, reason: str | None = None) -> None:
        """Close the run as FINISHED, FAILED or KILLED, with ``reason`` as a tag when it did not finish."""
        if reason:
            self.log(tags={"sweep.failure": reason[:5000]})
        self.guard(lambda: self.client.set_terminated(self.id, status=status))


EPOCH_FLUSH_S = 1.0  # epoch metrics reach MLflow at most this late


class TrialRun(Run):
    """A trial's run: epoch metrics are queued and sent together, at most every ``EPOCH_FLUSH_S`` and at the end.

    A request per epoch costs 5 ms on a SQLite store and more on a server: 1.2 s a trial at 230 short epochs.
    """

    def __init__(self, enabled: bool, uri: str, experiment: str) -> None:
        super().__init__(enabled, uri, experiment)
        self._epochs: list[tuple[Mapping[str, float], int, int]] = []  # (metrics, step, ms): not yet sent
        self._sent_at = time.monotonic()

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        self._epochs.append((metrics, step, int(time.time() * 1000)))
        if time.monotonic() - self._sent_at >= EPOCH_FLUSH_S:
            self._send_epochs()

    def _send_epochs(self) -> None:
        def send() -> None:
            from mlflow.entities import Metric

            batch = [Metric(k, shown(v), ms, step) for metrics, step, ms in self._epochs for k, v in metrics.items()]
            for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per request
                self.client.log_batch(self.id, metrics=batch[i : i + 1000])

        if self._epochs:
            self.guard(send)
        self._epochs, self._sent_at = [], time.monotonic()

    def end(self, status: str, reason: str | None = None) -> None:
        self._send_epochs()
        super().end(status, reason)
