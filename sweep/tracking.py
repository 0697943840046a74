"""MLflow tracking that can never take a trial down.

A :class:`Run` wraps one MLflow run through ``MlflowClient`` (no global "active run", so many trials in one
process never tangle). Every call is guarded: the first failure (a tracking server gone mid-sweep, a locked
SQLite file) is warned about once, the run is given up, and training goes on; the Optuna result never depends
on MLflow. Epoch metrics are queued and sent at most once a second; final metrics and tags go in one request.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# The MLflow 3 UI opens experiments of this kind on the training-runs table, not the GenAI overview.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir
    experiment: str | None = None  # null: the trial's ``name``
    parent_run_id: str | None = None  # set by the sweeper: this trial's run nests under the sweep's run


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
def _client(uri: str):
    # A tracking server that is down should cost a trial seconds, not MLflow's default minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def experiment_id_of(client, name: str) -> str:
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


VIEW_KEY = "sweep"  # the MLflow UI's shared-view key under which a sweep's runs table is saved


def save_runs_view(client, experiment: str, params: list[str], metrics: list[str]) -> str:
    """Save a runs-table view showing ``params`` and ``metrics`` as columns; return its URL path.

    The view keeps MLflow's default order (newest first), the one in which the UI nests each sweep's trial runs
    under its parent run; sorting by a metric would flatten the tree.

    Uses the UI's own "share view" mechanism (an experiment tag read through ``?viewStateShareKey=``), and
    asks for the model-training layout rather than the GenAI overview MLflow 3 opens by default.
    """
    import json

    experiment_id = experiment_id_of(client, experiment)
    columns = [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in metrics]
    view = {"selectedColumns": columns, "searchFilter": "", "lifecycleFilter": "Active"}
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(view))
    return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"


def ui_url(uri: str, path: str) -> str:
    """Where to open ``path`` in a browser: on the tracking server itself, or on ``make ui`` for a local store."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/{path}"


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


EPOCH_FLUSH_S = 1.0  # epoch metrics reach MLflow at most this late


class Run:
    """One MLflow run, created on :meth:`start` and closed with a status on :meth:`end`."""

    def __init__(self, cfg: MlflowConfig, experiment: str) -> None:
        self.enabled = cfg.enabled
        self.uri = tracking_uri(cfg.tracking_uri)
        self.experiment = cfg.experiment or experiment
        self.parent_run_id = cfg.parent_run_id
        self.run_id: str | None = None
        self._epochs: list[tuple[Mapping[str, float], int, int]] = []  # (metrics, step, ms): not yet sent
        self._sent_at = time.monotonic()

    def _guard(self, action: Callable[[], Any]) -> Any:
        """Run one MLflow call; on failure warn once and stop logging for this run."""
        if not self.enabled:
            return None
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - tracking must never fail the trial
            log.warning("MLflow logging failed (%s: %s); this run stops logging, the trial goes on",
                        type(error).__name__, error)
            self.enabled = False
            return None

    def start(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        def create() -> str:
            from mlflow.entities import Param

            client = _client(self.uri)
            all_tags = {**tags, "mlflow.runName": name}
            if self.parent_run_id:
                all_tags["mlflow.parentRunId"] = self.parent_run_id
            run = client.create_run(experiment_id_of(client, self.experiment), tags=all_tags, run_name=name)
            items = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
                client.log_batch(run.info.run_id, params=items[i : i + 100], synchronous=True)
            return run.info.run_id

        self.run_id = self._guard(create)
        self.enabled = self.enabled and self.run_id is not None

    def reopen(self, tags: Mapping[str, str]) -> bool:
        """Continue the newest run of this experiment carrying all of ``tags`` (a resumed sweep)."""

        def find() -> str | None:
            client = _client(self.uri)
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                return None
            query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
            runs = client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"],
                                      max_results=1)
            if not runs:
                return None
            client.update_run(runs[0].info.run_id, status="RUNNING")
            return runs[0].info.run_id

        self.run_id = self._guard(find)
        return self.run_id is not None

    def log(self, metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None,
            step: int | None = None) -> None:
        """Metrics (at ``step``) and tags in one request: each request is a database transaction or an HTTP call."""

        def send() -> None:
            from mlflow.entities import Metric, RunTag

            now = int(time.time() * 1000)
            _client(self.uri).log_batch(
                self.run_id,
                metrics=[Metric(k, float(v), now, step or 0) for k, v in (metrics or {}).items()],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
            )

        self._guard(send)

    def log_text(self, text: str, path: str) -> None:
        self._guard(lambda: _client(self.uri).log_text(self.run_id, text, path))

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self._guard(lambda: _client(self.uri).log_artifact(self.run_id, str(path), folder))

    def save_view(self, params: list[str], metrics: list[str]) -> str | None:
        """Save the sweep's runs-table view (see :func:`save_runs_view`); return its browser URL."""
        path = self._guard(lambda: save_runs_view(_client(self.uri), self.experiment, params, metrics))
        return ui_url(self.uri, path) if path else None

    def end_child(self, trial_number: int, status: str, reason: str) -> None:
        """Close the still-open run of this sweep's trial ``trial_number`` (its process died before it could)."""

        def close() -> None:
            from mlflow.entities import RunTag

            client = _client(self.uri)
            query = (f"tags.`mlflow.parentRunId` = '{self.run_id}' and tags.`optuna.trial_number` = '{trial_number}'"
                     " and attributes.status = 'RUNNING'")
            tags = [RunTag("sweep.failure", reason), RunTag("optuna.state", "FAIL")]
            for child in client.search_runs([client.get_run(self.run_id).info.experiment_id], query):
                client.log_batch(child.info.run_id, tags=tags)
                client.set_terminated(child.info.run_id, status=status)

        self._guard(close)

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        """Queue one epoch's metrics, sent together at most every ``EPOCH_FLUSH_S`` seconds and by :meth:`end`.

        A request per epoch costs 5 ms on a SQLite store and more on a server: 1.2 s a trial at 230 short epochs.
        """
        self._epochs.append((metrics, step, int(time.time() * 1000)))
        if time.monotonic() - self._sent_at >= EPOCH_FLUSH_S:
            self._send_epochs()

    def _send_epochs(self) -> None:
        def send() -> None:
            from mlflow.entities import Metric

            batch = [Metric(k, float(v), ms, step) for metrics, step, ms in self._epochs for k, v in metrics.items()]
            for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per request
                _client(self.uri).log_batch(self.run_id, metrics=batch[i : i + 1000])

        if self._epochs:
            self._guard(send)
        self._epochs, self._sent_at = [], time.monotonic()

    def end(self, status: str, reason: str | None = None) -> None:
        """Close the run as FINISHED, FAILED or KILLED, with ``reason`` as a tag when it did not finish."""
        self._send_epochs()
        if reason:
            self.log(tags={"sweep.failure": reason[:5000]})
        self._guard(lambda: _client(self.uri).set_terminated(self.run_id, status=status))
