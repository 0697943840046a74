"""Optuna storages by one string, their one-line errors, damaged journals, and the claims lock."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.errors import SweepError
from hydra_optuna_studies.patience import PatientStorage
from hydra_optuna_studies.storage import StudyLock, damaged_lines, load_study, open_storage

from sweeper.tests.helpers import fresh_storage


def test_journal_paths_and_database_urls_open_and_are_shared_in_a_process(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "s.journal")
    journal = open_storage(path)
    assert isinstance(journal, optuna.storages.JournalStorage) and journal is open_storage(path)
    database = open_storage(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(database, PatientStorage) and database is open_storage(f"sqlite:///{tmp_path}/s.db")
    assert isinstance(database.inner._backend, optuna.storages.RDBStorage)  # Optuna's cache over its RDB storage


def test_a_journal_deleted_and_written_anew_is_a_new_storage(tmp_path: Path) -> None:
    """Two sweeps in one process (Hydra's test suites run so): the second must not see the first one's journal."""
    path = tmp_path / "s.journal"
    optuna.create_study(study_name="s", storage=open_storage(str(path))).ask()
    path.unlink()
    assert open_storage(str(path), fresh=True).get_all_studies() == []


def _journal_with_trials(path: Path, n: int) -> None:
    study = optuna.create_study(study_name="s", storage=fresh_storage(str(path)))
    for i in range(n):
        study.tell(study.ask(), float(i))


@pytest.mark.parametrize("damage", ["garbage last line", "cut last record", "garbage middle line"])
def test_a_damaged_journal_keeps_every_readable_record_and_the_original(tmp_path: Path, damage: str,
                                                                        caplog) -> None:
    path = tmp_path / "d.journal"
    _journal_with_trials(path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    if damage == "garbage last line":
        lines.append(b"{this is not json}\n")
    elif damage == "cut last record":
        lines.append(lines[-1][:20])
    else:
        lines.insert(len(lines) - 1, b"garbage\n")
    path.write_bytes(b"".join(lines))
    original = path.read_bytes()
    assert damaged_lines(path) is not None

    report = load_study(str(path), "s")  # the read tools read it as it is, from a repaired copy
    assert path.read_bytes() == original
    assert sum(t.state.name == "COMPLETE" for t in report.trials) >= 2

    study = optuna.load_study(study_name="s", storage=open_storage(str(path)))  # a sweep repairs it first
    study.tell(study.ask(), 9.0)
    (backup,) = tmp_path.glob("d.journal.damaged-*")
    assert backup.read_bytes() == original
    assert damaged_lines(path) is None
    values = [t.value for t in fresh_study(path).trials if t.state.name == "COMPLETE"]
    assert values[-1] == 9.0 and len(values) >= 3
    bad = [i + 1 for i, line in enumerate(original.splitlines(keepends=True))
           if not line.endswith(b"\n") or not line.strip().startswith(b"{") or line.startswith(b"{this")]
    assert f"line {bad[0]}" in caplog.text and "the original as d.journal.damaged-" in caplog.text


def fresh_study(path: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=fresh_storage(str(path)))


def test_the_claims_lock_excludes_other_processes(tmp_path: Path) -> None:
    """A second process waits for the lock this one holds (the file lock beside a journal)."""
    import subprocess
    import sys
    import time

    spec = str(tmp_path / "l.journal")
    code = (f"import time; from hydra_optuna_studies.storage import StudyLock\n"
            f"with StudyLock({spec!r}, 's').held(): print(time.time(), flush=True)")
    with StudyLock(spec, "s").held():
        other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        released = time.time()
    acquired = float(other.communicate(timeout=60)[0])
    assert acquired >= released


def test_a_worker_killed_while_it_writes_the_journal_stalls_no_other(tmp_path: Path) -> None:
    """A process killed holding the journal's write lock (a heartbeat mid-append, say): the next writer goes on at
    once. Optuna's default lock, a symlink, stays behind, and every other worker waited out its 30-s grace period."""
    import fcntl
    import signal
    import subprocess
    import sys
    import time

    spec = str(tmp_path / "w.journal")
    optuna.create_study(study_name="s", storage=open_storage(spec))
    code = (f"from hydra_optuna_studies.storage import open_storage\n"
            f"open_storage({spec!r})._backend._lock.acquire()\n"  # the very lock the storage takes to append
            "print('held', flush=True)\n"
            "import time; time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with open(spec + ".writes") as lock, pytest.raises(BlockingIOError):  # held, by the kernel's flock ...
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.send_signal(signal.SIGKILL)  # ... which frees it with its holder
    holder.wait(timeout=60)
    started = time.monotonic()
    study = optuna.load_study(study_name="s", storage=open_storage(spec, fresh=True))
    study.tell(study.ask(), 1.0)
    assert time.monotonic() - started < 15  # Optuna's own lock: 30 s and more
    assert [t.value for t in fresh_storage(spec).get_all_trials(study._study_id)] == [1.0]


def test_a_journal_storage_pickles_and_still_writes(tmp_path: Path) -> None:
    """Optuna's journal storage pickles (a study handed to another process); ours, with its lock, too."""
    import pickle

    spec = str(tmp_path / "p.journal")
    optuna.create_study(study_name="s", storage=open_storage(spec))
    study = pickle.loads(pickle.dumps(optuna.load_study(study_name="s", storage=open_storage(spec))))
    study.tell(study.ask(), 2.0)
    assert [t.value for t in optuna.load_study(study_name="s", storage=fresh_storage(spec)).trials] == [2.0]


@pytest.mark.parametrize(("spec", "message"), [
    ("study.db", "expected a database URL"),
    ("postgresql://nobody@127.0.0.1:9/none", "cannot open Optuna storage"),
])
def test_a_bad_storage_is_one_line_naming_the_key(spec: str, message: str) -> None:
    with pytest.raises(SweepError, match=f"^hydra.sweeper.storage: .*{message}") as raised:
        open_storage(spec, "hydra.sweeper.storage")
    assert "\n" not in str(raised.value)


def test_the_read_tools_never_create_a_study_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="--storage: no journal file"):
        load_study(str(tmp_path / "none.journal"), "s")
    assert not (tmp_path / "none.journal").exists()
    optuna.create_study(study_name="s", storage=open_storage(str(tmp_path / "x.journal")))
    with pytest.raises(SweepError, match="--study: no study 'other'"):
        load_study(str(tmp_path / "x.journal"), "other")
