"""Optuna storages named by one string: an RDB URL or a journal file path.

Shared by the sweeper, the trials that report to it for pruning, and ``sweep-export`` / ``sweep-report``, so
every tool accepts the same spelling: ``sqlite:///study.db``, ``postgresql://user@host/db``, or a path ending
in ``.journal`` (Optuna's journal file: fast, and safe for several processes on one machine).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna import Study
    from optuna.storages import BaseStorage

from sweep.contract import masked
from sweep.errors import SweepError

log = logging.getLogger(__name__)


def is_journal(spec: str) -> bool:
    return spec.endswith(".journal") and "://" not in spec


def open_storage(spec: str, key: str = "storage", *, writable: bool = True) -> BaseStorage:
    """The Optuna storage for ``spec``, opened once per process; a bad spec is a one-line SweepError.

    ``writable=False`` (the tools that only read a study) leaves a journal file exactly as it is.
    """
    try:
        return _open(spec, writable)
    except Exception as error:  # noqa: BLE001 - any failure to open is the same to the user
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(masked(f"{key}: cannot open Optuna storage {spec!r}: {message}")) from None


@functools.cache
def _open(spec: str, writable: bool) -> BaseStorage:
    import optuna

    if is_journal(spec):
        from optuna.storages.journal import JournalFileBackend

        path = Path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        if writable and path.is_file():
            _cut_partial_record(path)
        return optuna.storages.JournalStorage(JournalFileBackend(spec))
    if "://" not in spec:
        raise ValueError("expected a database URL (sqlite:///..., postgresql://...) or a *.journal file path")
    return optuna.storages.RDBStorage(spec, skip_compatibility_check=False)


def _cut_partial_record(path: Path) -> None:
    """Cut a journal whose last record is partial (a crash mid-write, a full disk) back to its last complete record,
    keeping the original beside it, before anything appends to it.

    Optuna's reader skips such a line, but its writer appends right after it: the next record would be glued on,
    and every record after that unreadable. The journal's own lock is held meanwhile, so a record another process is
    writing at this moment is never taken for a partial one.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        with path.open("rb") as f:  # the last byte tells; a long journal is read whole only when it is damaged
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        backup = path.with_name(f"{path.name}.partial-{time.strftime('%Y%m%d-%H%M%S')}")
        backup.write_bytes(data)
        with path.open("r+b") as f:
            f.truncate(keep)
        log.warning("%s ended in a partial record (%d bytes, from a crash or a full disk): cut back to its last "
                    "complete record; the original is kept as %s", path, len(data) - keep, backup.name)
    finally:
        lock.release()


def load_study(spec: str, study_name: str | None) -> Study:
    """An existing study, for the tools that read one (sweep-export, sweep-report); never creates anything.

    ``study_name`` None picks the storage's only study (as ``multirun/<name>/optuna.journal`` holds), and names the
    studies to choose from when there are several.
    """
    import optuna

    from sweep.contract import masked

    if is_journal(spec) and not Path(spec).is_file():
        raise SweepError(f"--storage: no journal file {spec}")
    storage = open_storage(spec, "--storage", writable=False)
    if study_name is None:
        names = sorted(s.study_name for s in storage.get_all_studies())
        if len(names) != 1:
            found = f"holds {', '.join(names)}" if names else "holds no study"
            raise SweepError(f"--study: {masked(spec)} {found}; name one with --study")
        study_name = names[0]
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise SweepError(f"--study: no study {study_name!r} in {masked(spec)}") from None
