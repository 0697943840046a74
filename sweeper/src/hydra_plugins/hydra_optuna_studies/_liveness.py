"""Liveness: the heartbeat of the trials this worker runs, and the failing of other workers' orphans.

A worker killed outright (``kill -9``, the OOM killer, a lost node or container) leaves its trial RUNNING. Every
worker refreshes a heartbeat on the trials it runs, from a thread, on every storage (Optuna's own heartbeats exist
for RDB storages only, and only under ``study.optimize``, which an ask/tell sweeper does not use). Before each claim
and while waiting for the last trials, every live worker fails the RUNNING trials whose heartbeat has been silent
for three intervals, on any host, and at once those whose process on this host is gone; the worker whose write wins
(the storage lets only one finish a trial) enqueues the trial's params again, once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from hydra_optuna_studies.contract import FAIL_REASON_ATTR, HEARTBEAT_ATTR, RETRY_OF_ATTR, WORKER_ATTR

log = logging.getLogger(__name__)
SILENT_BEATS = 3  # a trial silent for this many heartbeat intervals is taken for orphaned


def worker_name() -> str:
    """This worker as trials record it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """Refreshes the heartbeat of the trials this worker is running, every ``interval`` seconds, from a thread."""

    def __init__(self, storage: Any, study_id: int, interval: float) -> None:
        self._storage, self._study_id, self.interval = storage, study_id, interval
        self._trials: dict[int, int] = {}  # trial number -> trial id, of the trials in flight
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)
        self._thread.start()

    @property
    def running(self) -> set[int]:
        """The numbers of the trials this worker has in flight."""
        with self._lock:
            return set(self._trials)

    def watch(self, trial: Any) -> None:
        """Claim ``trial`` for this worker and beat for it from now on."""
        trial.set_user_attr(WORKER_ATTR, worker_name())
        with self._lock:
            self._trials[trial.number] = trial._trial_id
        self._beat_one(trial._trial_id)

    def forget(self, number: int) -> None:
        with self._lock:
            self._trials.pop(number, None)

    def _beat_one(self, trial_id: int) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        with contextlib.suppress(UpdateFinishedTrialError):  # told while we beat
            self._storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, {"at": time.time(), "every": self.interval})

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            with self._lock:
                ids = list(self._trials.values())
            for trial_id in ids:
                try:
                    self._beat_one(trial_id)
                except Exception as error:  # noqa: BLE001 - a storage hiccup must not end the sweep; the next beat retries
                    log.warning("Heartbeat not recorded (%s: %s)", type(error).__name__, error)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval + 5)


def fail_orphans(study: Any, storage: Any, study_id: int, mine: set[int],
                 on_failed: Callable[[int, str], None]) -> list[int]:
    """Fail the RUNNING trials no live worker runs (``mine``: this worker's own), retry each once; return them.

    ``on_failed(number, reason)`` runs for each trial this worker failed (to close its MLflow run)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    host, now, failed = socket.gethostname(), time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = orphaned(trial, host, now, mine)
        if reason is None:
            continue
        try:  # the storage API, as optuna.storages.fail_stale_trials uses it: only one worker's write wins
            storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # finished meanwhile, or failed by another worker first
        again = RETRY_OF_ATTR not in trial.user_attrs
        if again:
            params = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
            study.enqueue_trial(params, user_attrs={RETRY_OF_ATTR: trial.number})
        log.warning("Trial %d marked FAIL: %s; %s", trial.number, reason,
                    "its params are retried" if again else "it was a retry already: not retried again")
        on_failed(trial.number, reason)
        failed.append(trial.number)
    return failed


def orphaned(trial: Any, host: str, now: float, mine: set[int]) -> str | None:
    """Why ``trial`` (RUNNING) has no live worker behind it, or None while it has one."""
    owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    if owner == host and pid.isdigit():
        if int(pid) == os.getpid() and trial.number not in mine:  # this very pid again: a container's PID 1
            return f"its worker process {pid} on {host} ended while it ran"
        if int(pid) != os.getpid() and not _alive(int(pid)):
            return f"its worker process {pid} on {host} ended while it ran"
    beat = trial.user_attrs.get(HEARTBEAT_ATTR) or {}
    last = beat["at"] if beat.get("at") is not None else trial.datetime_start.timestamp()
    silent = now - last
    if silent > SILENT_BEATS * float(beat.get("every") or 30.0):
        return f"no heartbeat from its worker ({owner or 'unknown'}:{pid or '?'}) for {silent:.0f} s"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
