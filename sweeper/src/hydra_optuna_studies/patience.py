"""Waiting out a database that is away for a while: a restart, a failover, a SQLite file another process holds
locked. Every call of the sweeper and of its jobs to an RDB storage is retried for up to the sweep's patience
(``hydra.sweeper.storage_patience``, 120 s by default; jobs learn it through ``SWEEP_STORAGE_PATIENCE``), said once
on the log when the database goes away and once when it is back. Past that, :class:`StorageUnavailable`: the
sweeper then keeps what it could not store (``_sweeper.keep_pending``) and stops in one line.

This module imports Optuna (its storage base class); the light ``storage`` module imports it only to open an RDB.
"""

from __future__ import annotations

import abc
import logging
import os
import time
from typing import Any

from optuna.storages import BaseStorage

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.errors import SweepError

log = logging.getLogger(__name__)
DEFAULT_PATIENCE_S = 120.0
ENV_PATIENCE = "SWEEP_STORAGE_PATIENCE"  # the sweep's patience, for the jobs that report to its storage


def patience_s() -> float:
    return float(os.environ.get(ENV_PATIENCE) or DEFAULT_PATIENCE_S)


class StorageUnavailable(SweepError):
    """The database did not answer for the whole patience: the sweep gives up (what it could not store, it keeps)."""


_OUTAGE_SIGNS = ("could not connect", "connection refused", "server closed the connection", "database is locked",
                 "terminating connection", "connection timed out", "the database system is", "no route to host",
                 "connection is closed", "connection already closed", "ssl connection has been closed")


def transient(error: BaseException) -> bool:
    """Whether ``error`` says the database is away for now (rather than that the call was wrong)."""
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OperationalError | InterfaceError | DisconnectionError):
            return True
        if any(sign in str(seen).lower() for sign in _OUTAGE_SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def patiently(call: Any, what: str, patience: float | None = None) -> Any:
    """``call()``, retried while the database is away, for up to ``patience`` seconds (default: the sweep's);
    said once per outage on the log, and again when it is back."""
    deadline = time.monotonic() + (patience_s() if patience is None else patience)
    delay, warned = 0.5, False
    while True:
        try:
            result = call()
        except Exception as error:
            if not transient(error):
                raise
            if time.monotonic() >= deadline:
                waited = patience_s() if patience is None else patience
                raise StorageUnavailable(masked(f"{what} did not answer for {waited:.0f} s: "
                                                f"{str(error).splitlines()[0]}")) from None
            if not warned:
                log.warning("%s does not answer (%s); waiting up to %.0f s for it", masked(what),
                            masked(str(error).splitlines()[0]), deadline - time.monotonic())
                warned = True
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 5.0)
            continue
        if warned:
            log.warning("%s answers again", masked(what))
        return result


def _patient(name: str) -> Any:
    def method(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return patiently(lambda: getattr(self.inner, name)(*args, **kwargs), self.what)

    method.__name__ = name
    return method


class PatientStorage(BaseStorage):
    """An RDB storage whose every call waits out a short outage (see :func:`patiently`) instead of failing the
    sweep and losing the trial that had just finished."""

    def __init__(self, inner: BaseStorage, key: str, spec: str) -> None:
        self.inner, self.what = inner, f"{key} {spec}"


for _name in [n for n in dir(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))]:
    setattr(PatientStorage, _name, _patient(_name))
abc.update_abstractmethods(PatientStorage)  # type: ignore[type-abstract]  # its methods are made above
