"""Optuna storages named by one string (an RDB URL or a journal file path), and the lock that serialises claims.

Shared by the sweeper, the jobs that report to it, and ``sweep-export`` / ``sweep-report``, so every tool accepts the
same spelling: ``sqlite:///study.db``, ``postgresql://user@host/db``, or a path ending in ``.journal`` (Optuna's
journal file: fast, and safe for several processes on one machine).

Several workers may open one storage at the same instant: Optuna's first-time table creation then races (optuna
#1092, #3044, #4621) and is retried here. A database that stops answering for a while (a restart, a failover, a
SQLite file another process holds locked) is waited out: every call is retried for up to ``patience`` seconds
(:class:`PatientStorage`). A journal is checked record by record before a sweep appends to it: a damaged record (a
crash or a full disk mid-write, a stray edit) would otherwise make every later record unreadable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import random
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from optuna import Study
    from optuna.storages import BaseStorage
    from optuna.storages.journal._file import BaseJournalFileLock

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.errors import SweepError

log = logging.getLogger(__name__)


def is_journal(spec: str) -> bool:
    return spec.endswith(".journal") and "://" not in spec


def open_storage(spec: str, key: str = "storage", *, writable: bool = True, fresh: bool = False) -> BaseStorage:
    """The Optuna storage for ``spec``; a bad spec is a one-line SweepError.

    One storage object per database URL and per journal file in a process: the jobs an in-process launcher runs
    reach their trial through the sweeper's own object. A sweep starts with ``fresh=True``, a new object that replaces
    the process's (its journal may have been deleted and written anew since). ``writable=False`` (the tools that
    only read a study) leaves a journal exactly as it is, and reads a damaged one from a repaired copy.
    """
    try:
        if is_journal(spec):
            return _journal(Path(spec), writable, fresh)
        if "://" not in spec:
            raise ValueError("expected a database URL (sqlite:///..., postgresql://...) or a *.journal file path")
        from hydra_optuna_studies.patience import PatientStorage

        return _cached(("rdb", spec), lambda: PatientStorage(_rdb(spec), key, spec), fresh)  # type: ignore[abstract]
    except SweepError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to open is the same to the user
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(masked(f"{key}: cannot open Optuna storage {spec!r}: {message}")) from None


_OPEN: dict[tuple, Any] = {}
_OPEN_LOCK = threading.Lock()


def _cached(key: tuple, make: Any, fresh: bool) -> Any:
    with _OPEN_LOCK:
        if fresh or key not in _OPEN:
            _OPEN[key] = make()
        return _OPEN[key]


def _journal(path: Path, writable: bool, fresh: bool) -> BaseStorage:
    path = path.resolve()
    if writable:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        repair_journal(path)
    elif (damage := damaged_lines(path)) is not None:
        copy = _readable_copy(path, damage)
        log.warning("%s has %d unreadable record(s) (line %s): reading the study from the others", path,
                    len(damage), _lines(damage))
        return _journal_storage(copy)
    return _cached(("journal", str(path), writable), lambda: _journal_storage(path), fresh)


def _journal_storage(path: Path) -> BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path), cast("BaseJournalFileLock", JournalLock(path))))


class JournalLock:
    """The lock around each append to a journal (Optuna's ``BaseJournalFileLock``): an ``flock``, freed when its
    holder dies. Optuna's default lock, a symlink for file systems without locks, stays behind when a worker is
    killed as it writes (a heartbeat, say), and every other worker then stops for its 30-s grace period. One per
    storage, shared by its threads: each holds its own open file, so the lock keeps them apart too."""

    def __init__(self, journal: Path) -> None:
        self._path = journal.with_name(journal.name + ".writes")
        self._held = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        return {"_path": self._path}  # Optuna's journal storage pickles (to hand a study to another process)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path, self._held = state["_path"], threading.local()

    def acquire(self) -> bool:
        held = contextlib.ExitStack()
        held.enter_context(file_lock(self._path))
        self._held.stack = held
        return True

    def release(self) -> None:
        self._held.stack.close()


def damaged_lines(path: Path) -> list[int] | None:
    """The 1-based numbers of the journal's lines that are not a complete JSON record, or None when it has none.

    A last line without its newline is a record cut short (a crash or a full disk mid-write); a complete line that
    is not JSON is damage of another kind. Either makes Optuna's reader stop, or the next append unreadable."""
    if not path.is_file():
        return None
    bad = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                bad.append(number)
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(number)
                continue
            if not isinstance(record, dict) or "op_code" not in record:
                bad.append(number)
    return bad or None


def repair_journal(path: Path) -> None:
    """Keep only the readable records of a damaged journal, before anything appends to it: the original is kept
    beside it as ``<name>.damaged-<time>``, and the user is told which lines went and how many records stayed.

    The journal's own lock is held meanwhile, so a record another process is writing at this moment is never taken
    for a damaged one."""
    lock = JournalLock(path)
    lock.acquire()
    try:
        damage = damaged_lines(path)
        if damage is None:
            return
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        data = path.read_bytes()
        backup.write_bytes(data)
        kept = _readable(data, damage)
        partial = path.with_name(path.name + ".repairing")
        partial.write_bytes(b"".join(kept))
        partial.replace(path)
        log.warning("%s had %d unreadable record(s) (line %s: a crash, a full disk or an edit); kept the %d readable "
                    "one(s) and the original as %s", path, len(damage), _lines(damage), len(kept), backup.name)
    finally:
        lock.release()


def _readable(data: bytes, damage: list[int]) -> list[bytes]:
    bad = set(damage)
    return [line for number, line in enumerate(data.splitlines(keepends=True), 1) if number not in bad]


def _readable_copy(path: Path, damage: list[int]) -> Path:
    """The readable records of ``path`` in a private temporary file, for tools that must not change the original."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sweep-journal-"))
    copy = folder / path.name
    copy.write_bytes(b"".join(_readable(path.read_bytes(), damage)))
    return copy


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:5]))
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


_CREATION_RACES = ("already exists", "duplicate key", "duplicate column", "unique constraint failed",
                   "uniqueviolation", "database is locked", "expected to match one row")


def _rdb(url: str) -> BaseStorage:
    """An RDB storage (with Optuna's own cache of finished trials), creating Optuna's tables if needed. Workers
    started together race on that creation (one gets a unique-key violation, another a locked database); each
    retries until the winner's tables are there."""
    import optuna
    from optuna.storages._cached_storage import _CachedStorage  # what optuna.create_study wraps an RDB storage in
    from sqlalchemy.exc import SAWarning

    for attempt in range(8):
        try:
            with warnings.catch_warnings():  # alembic's "Unnamed CHECK constraint" notes on a fresh PostgreSQL
                warnings.simplefilter("ignore", SAWarning)
                return _CachedStorage(optuna.storages.RDBStorage(url, skip_compatibility_check=False))
        except Exception as error:
            text = str(error).lower()
            if attempt == 7 or not any(race in text for race in _CREATION_RACES):
                raise
            time.sleep(0.05 * 2**attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def load_study(spec: str, study_name: str | None) -> Study:
    """An existing study, for the tools that read one (sweep-export, sweep-report); never creates anything.

    ``study_name`` None picks the storage's only study (as ``multirun/<name>/optuna.journal`` holds), and names the
    studies to choose from when there are several.
    """
    import optuna

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


class StudyLock:
    """A lock every worker of a study takes around a claim (the next grid point, the trial count, the MLflow run),
    wherever the workers run: held by the storage's own server where there is one (PostgreSQL's advisory locks,
    MySQL's GET_LOCK), else an ``flock`` on a file beside the journal or SQLite file. Released when its holder
    dies, so a killed worker never blocks the others. Reentrant within a thread."""

    def __init__(self, spec: str, study_name: str) -> None:
        self._spec, self._name = spec, study_name
        self._threads = threading.RLock()
        self._engine: Any = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._threads:
            if (path := claims_path_of(self._spec)) is not None:
                with file_lock(path):
                    yield
            elif self._spec.startswith(("postgresql", "mysql")):
                with self._server_lock():
                    yield
            else:
                _warn_once(f"claims on {masked(self._spec).split(':')[0]} storages are not locked across processes; "
                           "several workers may claim the same trial")
                yield

    @contextlib.contextmanager
    def _server_lock(self) -> Iterator[None]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.pool import NullPool

        if self._engine is None:
            self._engine = create_engine(self._spec, poolclass=NullPool)
        key = int.from_bytes(hashlib.sha256(f"sweep:{self._name}".encode()).digest()[:8], "big", signed=True)
        postgres = self._spec.startswith("postgresql")
        take = "SELECT pg_advisory_lock(:key)" if postgres else "SELECT GET_LOCK(:name, 600)"
        drop = "SELECT pg_advisory_unlock(:key)" if postgres else "SELECT RELEASE_LOCK(:name)"
        arguments = {"key": key, "name": f"sweep:{self._name}"[:64]}
        from hydra_optuna_studies.patience import patiently

        with patiently(self._engine.connect, f"the lock of study {self._name!r} in {self._spec}") as connection:
            connection.execute(text(take), arguments)
            try:
                yield
            finally:
                try:
                    connection.execute(text(drop), arguments)
                except DBAPIError as error:
                    if not error.connection_invalidated:
                        raise  # a server that went away mid-claim ended the session, and its lock with it


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def claims_path_of(spec: str) -> Path | None:
    """The lock file beside a journal or SQLite file that its workers lock, else None (a database server)."""
    if is_journal(spec):
        file = Path(spec)
    elif spec.startswith("sqlite:///"):
        file = Path(spec.removeprefix("sqlite:///"))
    else:
        return None
    return file.resolve().with_name(file.name + ".claims")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing): across processes on one machine, freed when its
    holder dies."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

