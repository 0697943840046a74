"""Optuna storages named by one string: an RDB URL or a journal file path.

Shared by the sweeper, the trials that report to it for pruning, and ``sweep-export`` / ``sweep-report``, so
every tool accepts the same spelling: ``sqlite:///study.db``, ``postgresql://user@host/db``, or a path ending
in ``.journal`` (Optuna's journal file: fast, and safe for several processes on one machine).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna import Study
    from optuna.storages import BaseStorage

from sweep.errors import SweepError


def is_journal(spec: str) -> bool:
    return spec.endswith(".journal") and "://" not in spec


@functools.cache
def open_storage(spec: str, key: str = "storage") -> BaseStorage:
    """The Optuna storage for ``spec``, opened once per process; a bad spec is a one-line SweepError."""
    import optuna

    try:
        if is_journal(spec):
            Path(spec).parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalFileBackend

            backend = JournalFileBackend(spec)
            return optuna.storages.JournalStorage(backend)
        if "://" not in spec:
            raise ValueError("expected a database URL (sqlite:///..., postgresql://...) or a *.journal file path")
        return optuna.storages.RDBStorage(spec, skip_compatibility_check=False)
    except Exception as error:  # noqa: BLE001 - any failure to open is the same to the user
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(f"{key}: cannot open Optuna storage {spec!r}: {message}") from None


def load_study(spec: str, study_name: str) -> Study:
    """An existing study, for the tools that read one (sweep-export, sweep-report); never creates anything."""
    import optuna

    if is_journal(spec) and not Path(spec).is_file():
        raise SweepError(f"--storage: no journal file {spec}")
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(spec, "--storage"))
    except KeyError:
        raise SweepError(f"--study: no study {study_name!r} in {spec}") from None
