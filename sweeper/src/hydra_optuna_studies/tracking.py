"""MLflow tracking that can never take a trial or a sweep down.

A :class:`Run` wraps one MLflow run through ``MlflowClient`` (no global "active run", so many runs in one process
never tangle). Every call is guarded: the first failure (a tracking server gone mid-sweep, a locked SQLite file) is
warned about once, the run is given up, and the work goes on; the Optuna results never depend on MLflow. The sweep's
run (:mod:`hydra_optuna_studies.sweep_run`) and an app's trial runs build on it. MLflow is imported only when a run
is made: apps that do not track never load it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.error import URLError
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import Request, urlopen

if TYPE_CHECKING:
    from mlflow import MlflowClient

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.errors import SweepError
from hydra_optuna_studies.storage import file_lock

log = logging.getLogger(__name__)

# The MLflow 3 UI opens experiments of this kind on the training-runs table, not the GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def shown(value: float) -> float:
    """``value`` to 6 significant digits, as it is sent to MLflow, whose columns print numbers as stored (an accuracy
    of 141/144 is 0.979167, not 0.9791666666666666). Nothing measurable is lost: float32 training resolves no more,
    and an accuracy k/n keeps its k for any n under a million. ``metrics.json`` and the study keep exact values."""
    return float(f"{float(value):.6g}")


@contextlib.contextmanager
def quiet_tracking() -> Iterator[None]:
    """MLflow's settings for the span of a sweep or a run, restored after: a tracking server that is down costs
    seconds, not MLflow's default minutes of retries, and its INFO lines ("Creating initial MLflow database
    tables...") stay out unless Hydra's verbose mode asked for them. MLflow's own "View run ... at: <url>" lines
    never print: the sweep names its runs itself, and MLflow's would show a password in the tracking URI."""
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    saved_env = {k: os.environ.get(k) for k in [*env, _NO_URL_PRINTS]}
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved_levels = [logger.level for logger in loggers]
    for key, value in env.items():
        os.environ.setdefault(key, value)
    os.environ[_NO_URL_PRINTS] = "true"
    _quiet_loggers()
    try:
        yield
    finally:
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        for logger, level in zip(loggers, saved_levels, strict=True):
            logger.setLevel(level)


# MLflow's SQL store logs each failed statement as ERROR, with its SQL and parameters: the sweep says the same in
# one line (Run.guard), once.
_SQL_DUMPS = "mlflow.store.db.utils"
_LOGGERS = ("mlflow", "alembic", _SQL_DUMPS)
_NO_URL_PRINTS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def _quiet_loggers() -> None:
    """MLflow's and alembic's INFO lines out, unless Hydra's verbose mode asked for them (``hydra.verbose=mlflow``).
    Again after MLflow's import, which sets its logger's level."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.DEBUG:
            logger.setLevel(logging.CRITICAL if name == _SQL_DUMPS else logging.WARNING)


_CLIENTS: dict[str, MlflowClient] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(uri: str) -> MlflowClient:
    """One client per store in a process. A new SQLite store is created under a lock on a file beside it: workers
    that open it at the same instant would otherwise race on its schema migrations (MLflow fails them with
    "duplicate column name" or "Online migration expected to match one row")."""
    with _CLIENTS_LOCK:
        if uri not in _CLIENTS:
            from mlflow import MlflowClient

            _quiet_loggers()
            if uri.startswith("sqlite:///"):
                lock = Path(uri.removeprefix("sqlite:///")).resolve()
                with file_lock(lock.with_name(lock.name + ".lock")):
                    _CLIENTS[uri] = MlflowClient(tracking_uri=uri)  # creates and migrates the schema, if it must
            else:
                _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
        return _CLIENTS[uri]


def experiment_id_of(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (opening on the runs table) if it does not exist."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifacts_beside(client.tracking_uri), tags=EXPERIMENT_KIND)
    except Exception:  # another worker created it between our two calls
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def artifacts_beside(uri: str) -> str | None:
    """Where a new experiment of a local SQLite store keeps its runs' artifacts: ``mlruns/`` beside the database,
    whichever folder the sweep runs from (MLflow's own default is ``./mlruns`` of the folder that first created the
    experiment). None for any other store: a server has its own artifact root."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve().parent / "mlruns").as_uri()


_FAILED: set[str] = set()  # stores that failed in this process: later runs skip them instead of retrying each time


def check_store(uri: str) -> None:
    """Fail in one line, at once and without creating anything, for a store no run could use: a SQLite file whose
    folder does not exist or cannot be written, a server that does not answer its health check within 5 s. (Each
    MLflow call would otherwise retry with backoff, up to minutes per trial.)"""
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise SweepError(f"mlflow.tracking_uri: no folder {folder} for the SQLite store {uri}")
        if not os.access(folder, os.W_OK):  # SQLite writes its journal beside the database
            raise SweepError(f"mlflow.tracking_uri: the folder {folder} of the SQLite store {uri} is not "
                             "writable")
    elif uri.startswith(("http://", "https://")):
        try:
            urlopen(_health_request(uri), timeout=5).close()
        except (URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise SweepError(f"mlflow.tracking_uri: the MLflow server {masked(uri)} does not answer ({reason}); "
                             "start it, or set mlflow.enabled=false") from None


def _health_request(uri: str) -> Request:
    """The server's health check, with the URL's user and password (if any) sent as MLflow's client sends them:
    basic authentication, not as part of the host name."""
    parts = urlsplit(uri)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    request = Request(urlunsplit(parts._replace(netloc=netloc)).rstrip("/") + "/health")
    user = unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = unquote(parts.password) if parts.password else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


class Run:
    """One MLflow run, created on :meth:`start` (or found again, by the sweep) and closed on :meth:`end`."""

    def __init__(self, enabled: bool, uri: str, experiment: str) -> None:
        if enabled and uri in _FAILED:  # said once, when it failed: every later run of the sweep would repeat it
            log.debug("MLflow store %s failed earlier in this process; this run is not tracked", masked(uri))
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
        if not self.enabled or self.uri in _FAILED:  # another run of this process (the sweep's, a thread's) failed
            self.enabled = False
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return action()
        except Exception as error:  # noqa: BLE001 - tracking must never fail the trial
            self.enabled = False
            with _CLIENTS_LOCK:
                first_to_fail = self.uri not in _FAILED
                _FAILED.add(self.uri)
            if first_to_fail:
                first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")  # no SQL dump
                log.warning("MLflow logging to %s failed (%s: %s); nothing more is logged there from this process, "
                            "the sweep goes on", masked(self.uri), type(error).__name__, masked(first[:300]))
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
