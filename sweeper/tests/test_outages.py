"""Outages, kills and a full disk cost no finished trial: each test injects its fault for real, into a real sweep
of a foreign app (a real PostgreSQL stopped and resumed, a SQLite file another process holds locked, a joblib
worker killed with SIGKILL, SIGTERM to the sweep, a tmpfs filled up)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.tests.helpers import APPS, fresh_storage, wait_until
from sweeper.tests.servers import PG_PASSWORD, Postgres

pytestmark = pytest.mark.slow
SLEEPY = str(APPS / "sleepy" / "sleepy.py")


def _start(cwd: Path, *overrides: str, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, SLEEPY, "-m", f"hydra.sweep.dir={cwd}/sweep", *overrides], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=new_session)


def _trials(storage: str, name: str = "sleepy") -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=fresh_storage(storage)).trials
    except KeyError:  # not created yet
        return []


def _said(err: str) -> list[str]:
    """What a failed sweep of a foreign app printed, less the hint Hydra adds under any error it reports."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("Set the environment variable")]


def _states(storage: str, name: str = "sleepy") -> list[TrialState]:
    return [t.state for t in _trials(storage, name)]


def test_a_database_away_for_20_s_mid_sweep_is_waited_out(tmp_path: Path) -> None:
    pg = Postgres()
    try:
        sweep = _start(tmp_path, f"hydra.sweeper.storage={pg.url}", "point=range(0,6)", "seconds=1.0")
        wait_until(lambda: _states(pg.url).count(TrialState.COMPLETE) >= 2)
        pg.stop()
        time.sleep(20)
        pg.resume()
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, out + err
        trials = _trials(pg.url)
        assert sorted(t.params["point"] for t in trials) == list(range(6))
        assert {t.state for t in trials} == {TrialState.COMPLETE}  # nothing lost, nothing run twice
        assert "does not answer" in out + err and "answers again" in out + err
        assert "Traceback" not in out + err and PG_PASSWORD not in out + err
    finally:
        pg.close()


def _completed_read_only(db: Path) -> int:
    """Complete trials in a SQLite study, read without writing (Optuna's reader would stamp its schema version
    into a file the sweep may be creating at that very moment); 0 while it is not there yet."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_sqlite_storage_locked_by_another_process_is_waited_out(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    storage = f"sqlite:///{db}"
    sweep = _start(tmp_path, f"hydra.sweeper.storage={storage}", "point=range(0,5)", "seconds=1.0")
    wait_until(lambda: _completed_read_only(db) > 0)
    code = textwrap.dedent(f"""
        import sqlite3, time
        connection = sqlite3.connect({str(db)!r}, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep(15)
        connection.execute("COMMIT")
    """)
    locker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    locker.wait(timeout=60)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out + err
    trials = _trials(storage)
    assert sorted(t.params["point"] for t in trials) == list(range(5))
    assert {t.state for t in trials} == {TrialState.COMPLETE} and "Traceback" not in out + err


def test_a_result_the_storage_cannot_take_is_kept_and_recorded_by_the_next_run(tmp_path: Path) -> None:
    pg = Postgres()
    args = [f"hydra.sweeper.storage={pg.url}", "hydra.sweeper.study_name=kept", "point=range(0,2)", "seconds=4.0"]
    try:
        sweep = _start(tmp_path, *args, "hydra.sweeper.storage_patience=3")
        wait_until(lambda: TrialState.RUNNING in _states(pg.url, "kept"))
        pg.stop()  # while trial 0 sleeps: its result has nowhere to go
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode != 0
        last = _said(err)[-1]
        assert "did not answer for 3 s" in last and "trial 0's result is kept in" in last, err
        assert (tmp_path / "sweep" / "pending" / "0.json").is_file()
        assert PG_PASSWORD not in out + err
        pg.resume()
        again = _start(tmp_path, *args)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, out + err
        assert "its result, kept in" in out + err and "is recorded now" in out + err
        trials = _trials(pg.url, "kept")
        assert [(t.number, t.state, t.params.get("point")) for t in trials] == [
            (0, TrialState.COMPLETE, 0), (1, TrialState.COMPLETE, 1)]  # trial 0 was told, not run again
        assert trials[0].value == 4.0
    finally:
        pg.close()


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((int(stat.parent.name), (stat.parent / "cmdline").read_text().replace("\0", " ")))
        except (OSError, IndexError):
            continue
    return found


def _loky_workers(pid: int) -> list[int]:
    return [child for child, command in _children(pid) if "loky" in command and "tracker" not in command]


@pytest.mark.parametrize("launcher", [["hydra/launcher=pool"], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["pool", "joblib"])
def test_a_job_process_killed_fails_its_trial_with_the_reason_and_the_sweep_goes_on(tmp_path: Path,
                                                                                    launcher: list[str]) -> None:
    """What the OOM killer does to a job's process (loky's, under either launcher): its trial (and the one loky takes
    down with it) fail saying so, their params run again, and every point of the grid ends COMPLETE."""
    journal = str(tmp_path / "sweep" / "optuna.journal")
    sweep = _start(tmp_path, *launcher, "hydra.sweeper.n_jobs=2", "point=range(0,4)", "seconds=3.0")
    wait_until(lambda: Path(journal).exists() and _states(journal).count(TrialState.RUNNING) == 2)
    wait_until(lambda: _loky_workers(sweep.pid))  # trials are claimed before loky has spawned its processes
    os.kill(_loky_workers(sweep.pid)[0], signal.SIGKILL)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out + err
    trials = _trials(journal)
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert lost and all("its job's process died" in t.user_attrs["fail_reason"] for t in lost)
    assert all(any(r.user_attrs.get("retry_of") == t.number for r in trials) for t in lost)
    assert sorted(t.params["point"] for t in trials if t.state == TrialState.COMPLETE) == list(range(4))
    assert "TerminatedWorkerError" not in err.replace("LostJob: its job's process died (TerminatedWorkerError", "")


def _session(sid: int) -> list[int]:
    """The processes of session ``sid`` still alive (zombies are dead)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                           "hydra.sweeper.n_jobs=2"],
                                      ["hydra/launcher=pool", "hydra.sweeper.n_jobs=2"]],
                         ids=["basic", "joblib", "pool"])
def test_sigterm_fails_the_trials_in_flight_says_so_in_one_line_and_leaves_no_process(tmp_path: Path,
                                                                                      launcher: list[str]) -> None:
    """What `docker stop` and `scancel` send."""
    journal = str(tmp_path / "sweep" / "optuna.journal")
    sweep = _start(tmp_path, *launcher, "point=range(0,4)", "seconds=20.0", new_session=True)
    wait_until(lambda: Path(journal).exists() and TrialState.RUNNING in _states(journal))
    time.sleep(1.0)  # the job is under way
    os.kill(sweep.pid, signal.SIGTERM)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode != 0
    assert _said(err)[-1].startswith("terminated (SIGTERM): the trials in flight were recorded FAIL"), err
    assert "Traceback" not in err
    stopped = [t for t in _trials(journal) if t.state == TrialState.FAIL]
    assert stopped and {t.user_attrs["fail_reason"] for t in stopped} == {"terminated"}
    assert TrialState.RUNNING not in _states(journal)
    wait_until(lambda: _session(sweep.pid) == [], seconds=30)  # no worker process left behind


@pytest.mark.skipif(subprocess.run(["unshare", "--mount", "true"]).returncode != 0,
                    reason="needs permission to mount a tmpfs in a mount namespace")
def test_a_full_disk_mid_sweep_is_one_line_and_a_rerun_after_freeing_space_finishes_it(tmp_path: Path) -> None:
    """The sweep folder (journal, job folders, report) on a 16 MB tmpfs that a file fills mid-sweep (the report alone,
    with plotly inline for offline viewing, takes about 5 MB)."""
    script = tmp_path / "full.sh"
    script.write_text(textwrap.dedent(f"""\
        set -u
        disk={tmp_path}/disk; mkdir -p $disk; mount -t tmpfs -o size=16m tmpfs $disk
        run() {{ {sys.executable} {SLEEPY} -m hydra.sweep.dir=$disk/sweep 'point=range(0,30)' seconds=0.2; }}
        run > {tmp_path}/first.out 2> {tmp_path}/first.err &
        sweep=$!
        until grep -q '"state":1' $disk/sweep/optuna.journal 2>/dev/null; do sleep 0.1; done
        head -c 20M /dev/zero > $disk/filler 2>/dev/null
        wait $sweep; echo $? > {tmp_path}/first.code
        rm $disk/filler
        run > {tmp_path}/second.out 2> {tmp_path}/second.err; echo $? > {tmp_path}/second.code
        cp $disk/sweep/optuna.journal {tmp_path}/optuna.journal
    """))
    subprocess.run(["unshare", "--mount", "bash", str(script)], check=True, timeout=600)
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.code").read_text().strip() != "0"
    assert _said(first_err)[-1].startswith("no space left on the device"), first_err
    assert "Traceback" not in first_err
    assert (tmp_path / "second.code").read_text().strip() == "0", (tmp_path / "second.err").read_text()
    trials = _trials(str(tmp_path / "optuna.journal"))
    assert sorted(t.params["point"] for t in trials if t.state == TrialState.COMPLETE) == list(range(30))
