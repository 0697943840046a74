"""A trial's MLflow run: its settings (the ``mlflow`` config section) and its run, which never takes it down.

:class:`TrialRun` builds on the sweeper library's guarded :class:`~hydra_optuna_studies.tracking.Run` (the first
failure is warned about once and tracking stops; training goes on). It queues epoch metrics and sends them at most
once a second; final metrics and tags go in one request.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_optuna_studies.contract import reveal
from hydra_optuna_studies.tracking import Run, shown

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


@dataclass
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str | None = None  # null: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working dir
    experiment: str | None = None  # null: the trial's ``name``; in a sweep, the sweep's experiment
    # The run's name, from config values: "L{model.layers_per_block}_K{model.channels}" -> L4_K64-128 (lists joined
    # by "-"). null: trial_<number> in a sweep, the output folder's name in a single run.
    run_name: str | None = None


def tracking_uri(configured: str | None) -> str:
    """The store a run logs to: the config's (its password, if the sweeper masked it, revealed), else the
    environment's, else ``mlflow.db`` in the working folder."""
    return reveal(configured) if configured else os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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
