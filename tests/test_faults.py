"""Faults a sweep must survive without losing a finished trial: each test injects one for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.tests.helpers import wait_until
from tests.conftest import fresh_storage

pytestmark = pytest.mark.slow
APPS = Path(__file__).resolve().parents[1] / "sweeper" / "tests" / "apps"
SPHERE = APPS / "sphere" / "sphere.py"


def _grid(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SPHERE), "--config-name=grid", "-m", f"hydra.sweep.dir={cwd}/sweep", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def _complete(journal: Path) -> dict[int, tuple]:
    study = optuna.load_study(study_name="sphere", storage=fresh_storage(str(journal)))
    return {t.number: (t.params, t.value) for t in study.trials if t.state == TrialState.COMPLETE}


@pytest.mark.parametrize("cut", [1, 5, 60])
def test_a_journal_cut_mid_record_is_repaired_before_a_resume_appends(tmp_path: Path, cut: int) -> None:
    """What a crash mid-write or a full disk leaves: the last record cut short. Optuna still reads the rest, but
    appending to it would glue the next record on and make everything after unreadable."""
    assert _grid(tmp_path, "hydra.sweeper.n_trials=5").returncode == 0
    journal = tmp_path / "sweep" / "optuna.journal"
    original = journal.read_bytes()
    journal.write_bytes(original[:-cut])
    readable = _complete(journal)  # what the damaged file still holds
    assert len(readable) >= 4

    resumed = _grid(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "unreadable record(s)" in resumed.stderr + resumed.stdout
    (backup,) = journal.parent.glob("optuna.journal.damaged-*")
    assert backup.read_bytes() == original[:-cut]
    after = _complete(journal)
    assert all(after[number] == kept for number, kept in readable.items())  # no finished trial lost
    assert sorted((p["x"], p["y"], p["z"]) for p, _ in after.values()) == sorted(
        (x, y, z) for x in (-1, 1) for y in (-1.0, 0.0) for z in ("foo", "bar"))  # and the grid is whole
    report = subprocess.run([str(Path(sys.executable).parent / "sweep-report"), "--storage", str(journal),
                             "--study", "sphere", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr


def test_the_read_only_tools_leave_a_damaged_journal_as_it_is(tmp_path: Path) -> None:
    assert _grid(tmp_path, "hydra.sweeper.n_trials=3").returncode == 0
    journal = tmp_path / "sweep" / "optuna.journal"
    journal.write_bytes(journal.read_bytes()[:-5])
    damaged = journal.read_bytes()
    report = subprocess.run([str(Path(sys.executable).parent / "sweep-report"), "--storage", str(journal),
                             "--study", "sphere", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert journal.read_bytes() == damaged and not list(journal.parent.glob("*.damaged-*"))


def _trials(cwd: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="sphere", storage=fresh_storage(str(cwd / "sweep" / "optuna.journal"))).trials


def test_a_resume_with_a_changed_choice_is_refused_before_any_trial_unless_asked_to_keep_the_space(
    tmp_path: Path,
) -> None:
    first = _grid(tmp_path, "x=choice(-1,1)", "hydra.sweeper.n_trials=4")
    assert first.returncode == 0, first.stderr
    changed = _grid(tmp_path, "x=choice(-1,2)")
    assert changed.returncode != 0
    assert changed.stderr.splitlines()[0] == (
        "x: study 'sphere' sampled it from choice(-1, 1), this command from choice(-1, 2); name a new "
        "hydra.sweeper.study_name, or set hydra.sweeper.keep_study_space=true to go on with the study's")
    trials = _trials(tmp_path)
    assert len(trials) == 4 and {t.state for t in trials} == {TrialState.COMPLETE}  # nothing asked, nothing RUNNING
    again = _grid(tmp_path, "x=choice(-1,1)")  # the original command still resumes
    assert again.returncode == 0, again.stderr
    assert len(_trials(tmp_path)) == 8
    kept = _grid(tmp_path, "x=choice(-1,2)", "hydra.sweeper.keep_study_space=true")
    assert kept.returncode == 0, kept.stderr
    assert {t.params["x"] for t in _trials(tmp_path)} == {-1, 1} and len(_trials(tmp_path)) == 8


@pytest.mark.parametrize(
    ("swept", "message"),
    [
        ("model=choice(mlp,transformer)", "error: model: no option 'transformer'; allowed: cnn, mlp, resnet"),
        ("train.foo=choice(1,2)", "error: train.foo: Key 'foo' not in 'TrainConfig'"),
        ("train.batch_size=choice(16,abc)", "error: train.batch_size: Value 'abc' of type 'str' could not be"),
        ("optimizer.lr=choice(0.1,-1)", "error: optimizer.lr: the swept value -1 is refused: optimizer.lr: must be"),
        ("optimizer.lr=choice(0.1,nan)", "error: optimizer.lr: the swept value nan is refused: optimizer.lr: must be"),
        ("train.epochs=choice(0,1)", "error: train.epochs: the swept value 0 is refused: train.epochs: must be >= 1"),
        ("train.epochs=choice(0,-1)", "error: train.epochs: the swept value 0 is refused: train.epochs: must be >= 1"),
        ("model.dropout=interval(0.9,1.5)", "error: model.dropout: the swept value 1.5 is refused: model.dropout: got "
                                            "1.5, allowed: drop probabilities in [0, 1)"),
        ("model.activation=choice(relu,'ré lu')", "error: model.activation: the swept value 'ré lu' is refused"),
    ],
)
def test_a_swept_value_no_config_can_take_stops_the_sweep_before_anything_exists(
    tmp_path: Path, swept: str, message: str
) -> None:
    from tests.conftest import run_cli

    result = run_cli("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "name=bad", swept, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_storage_password_is_never_printed_logged_or_stored(tmp_path: Path, postgres: str) -> None:
    """Against a real PostgreSQL that needs the password: the sweep works, and the password is nowhere but in
    memory: not on the terminal, in any file under the sweep folder or the MLflow store, nor in the study."""
    import json

    from tests.conftest import PG_PASSWORD, run_cli

    result = run_cli("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", f"hydra.sweeper.storage={postgres}",
                     "name=pg", "optimizer.lr=choice(0.01,0.1)", "train.epochs=2", "deepfool.samples=50",
                     "data.train_subset=300", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert PG_PASSWORD not in result.stdout + result.stderr
    assert _files_holding(tmp_path, PG_PASSWORD) == []  # multirun/ (job configs, results, report), mlflow.db
    study = optuna.load_study(study_name="pg", storage=postgres)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    kept = json.dumps([study.user_attrs, *[(t.user_attrs, t.system_attrs) for t in study.trials]])
    assert PG_PASSWORD not in kept and "metrics" in study.trials[0].user_attrs  # the job reached the study
    results = (tmp_path / "multirun" / "pg" / "optimization_results.yaml").read_text()
    assert "postgresql://sweepuser:***@127.0.0.1" in results


def test_jobs_in_other_processes_reach_a_password_protected_storage(tmp_path: Path, postgres: str) -> None:
    """joblib's workers get the masked URL through env_set and the real one by inheritance: they report for
    pruning and record metrics in the study, and leave the password nowhere."""
    from tests.conftest import PG_PASSWORD

    app = APPS / "pruned" / "pruned.py"
    command = [sys.executable, str(app), "-m", f"hydra.sweep.dir={tmp_path}/sweep", "hydra/sweeper=optuna",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
               "hydra/sweeper/sampler=grid", f"hydra.sweeper.storage={postgres}", "hydra.sweeper.study_name=pg-joblib",
               "hydra.sweeper.pruner=median", "+hydra.sweeper.pruner_options.n_startup_trials=2",
               "lr=choice(0.3,0.31,5.0,6.0)"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    trials = optuna.load_study(study_name="pg-joblib", storage=postgres).trials
    assert {t.state for t in trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert all("metrics" in t.user_attrs for t in trials if t.state == TrialState.COMPLETE)
    assert PG_PASSWORD not in result.stdout + result.stderr and _files_holding(tmp_path, PG_PASSWORD) == []


def test_an_unreachable_storage_is_named_without_its_password(tmp_path: Path) -> None:
    from tests.conftest import PG_PASSWORD, run_cli

    url = f"postgresql://sweepuser:{PG_PASSWORD}@127.0.0.1:9/optuna_db"
    result = run_cli("-m", "hydra/sweeper=optuna", f"hydra.sweeper.storage={url}", "optimizer.lr=choice(0.1,0.2)",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "postgresql://sweepuser:***@127.0.0.1:9/optuna_db" in result.stderr
    assert PG_PASSWORD not in result.stdout + result.stderr and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer=adam", "optimizer.eps=-1"], "error: optimizer.eps: must be > 0 and finite, got -1.0"),
        (["optimizer.lr=inf"], "error: optimizer.lr: must be > 0 and finite, got inf"),
        (["deepfool.candidates=11"], "error: deepfool.candidates: must be in [2, 10] or null for 10 classes, got 11"),
    ],
)
def test_bad_input_found_only_with_the_data_is_one_line_before_training(
    tmp_path: Path, args: list[str], message: str
) -> None:
    from tests.conftest import run_cli

    result = run_cli(*args, "train.epochs=500", cwd=tmp_path, timeout=60)  # 500 epochs would take a minute
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [message]
    assert not (tmp_path / "outputs").exists()  # and the run's folder is taken back


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=choice(0.01,0.01)"], "error: optimizer.lr: choice(...) lists 0.01 twice; each value once"),
        (["optimizer.lr=choice(0.01,0.1)", "train.device=cuda"],
         "error: train.device: got 'cuda' but CUDA is not available here"),
        (["optimizer.lr=choice(0.01,0.1)", "data=mnist", "data.root=nowhere"], "error: data.root: mnist not found at"),
    ],
)
def test_settings_that_would_fail_every_trial_stop_the_sweep_first(
    tmp_path: Path, args: list[str], message: str
) -> None:
    import torch

    from tests.conftest import run_cli

    if "train.device=cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = run_cli("-m", "hydra/sweeper=optuna", "name=up", *args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "mlflow.db").exists()


def test_ctrl_c_of_a_single_run_is_one_line(tmp_path: Path) -> None:
    import os
    import signal
    import time

    from tests.conftest import SWEEP

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}

    def as_from_a_terminal() -> None:
        """SIGINT delivered and handled as in a terminal, whatever the test runner inherited: a runner in the
        background of a shell has it ignored, and a library may have left it blocked."""
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    process = subprocess.Popen([SWEEP, "train.epochs=100000", "deepfool.enabled=false"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_from_a_terminal)
    try:
        deadline = time.time() + 120  # until the job's log shows training (imports and the store take seconds)
        while time.time() < deadline and not any("epoch 2/100000" in log.read_text()
                                                 for log in tmp_path.glob("outputs/*/*/*.log")):
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{process.pid}/status").read_text()
            masks = [line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
            pytest.fail(f"SIGINT did not stop the run; its signal masks: {masks}")
    finally:
        process.kill()  # never leave a 100,000-epoch run behind, whatever happened above
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in stderr


def test_sweep_export_neither_creates_a_store_nor_fails_with_a_traceback(tmp_path: Path) -> None:
    export = str(Path(sys.executable).parent / "sweep-export")
    missing = subprocess.run([export, "--mlflow", f"sqlite:///{tmp_path}/none.db", "--experiment", "e", "--out",
                              str(tmp_path / "x")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: --mlflow: no MLflow store at")
    assert not (tmp_path / "none.db").exists()
    assert _grid(tmp_path, "hydra.sweeper.n_trials=1").returncode == 0
    (tmp_path / "a_file").write_text("")
    unwritable = subprocess.run([export, "--storage", str(tmp_path / "sweep" / "optuna.journal"), "--study", "sphere",
                                 "--out", str(tmp_path / "a_file" / "out")], capture_output=True, text=True)
    assert unwritable.returncode == 2 and "Traceback" not in unwritable.stderr
    assert unwritable.stderr.startswith(f"error: --out: cannot write to {tmp_path}/a_file/out")


def _namespaced(cwd: Path, hostname: str | None, *args: str) -> subprocess.Popen:
    """``sweep -m ...`` as PID 1 of a new PID namespace (as a container's ENTRYPOINT), under ``hostname`` if given
    (each ``docker run --rm`` gets a new one); killing the returned process kills the whole namespace."""
    import os
    import shlex

    from tests.conftest import SWEEP

    sweep = shlex.join([SWEEP, "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "name=ns",
                        "deepfool.enabled=false", *args])
    inner = f"hostname {shlex.quote(hostname)} && exec {sweep}" if hostname else f"exec {sweep}"
    namespaces = ["--pid", "--mount-proc"] + (["--uts"] if hostname else [])
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"}
    return subprocess.Popen(["unshare", *namespaces, "--fork", "--kill-child", "sh", "-c", inner], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ns_trials(cwd: Path) -> list:
    journal = cwd / "multirun" / "ns" / "optuna.journal"
    return optuna.load_study(study_name="ns", storage=fresh_storage(str(journal))).trials if journal.exists() else []


def _kill_mid_trial(process: subprocess.Popen, cwd: Path) -> None:
    import signal

    wait_until(lambda: {TrialState.COMPLETE, TrialState.RUNNING} <= {t.state for t in _ns_trials(cwd)})
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


GRID = ["optimizer.lr=choice(0.01,0.02,0.05)", "train.epochs=60", "data.train_subset=null"]


@pytest.mark.skipif(subprocess.run(["unshare", "--pid", "--fork", "true"]).returncode != 0,
                    reason="needs permission to create namespaces")
def test_a_container_sweep_killed_as_pid_1_is_recovered_when_it_comes_back_as_pid_1(tmp_path: Path) -> None:
    _kill_mid_trial(_namespaced(tmp_path, None, *GRID), tmp_path)
    orphan = next(t.number for t in _ns_trials(tmp_path) if t.state == TrialState.RUNNING)
    resumed = _namespaced(tmp_path, None, *GRID)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    trials = _ns_trials(tmp_path)
    assert "ended while it ran" in trials[orphan].user_attrs["fail_reason"] and trials[orphan].state == TrialState.FAIL
    assert sorted(t.params["optimizer.lr"] for t in trials if t.state == TrialState.COMPLETE) == [0.01, 0.02, 0.05]


@pytest.mark.skipif(subprocess.run(["unshare", "--uts", "--pid", "--fork", "true"]).returncode != 0,
                    reason="needs permission to create namespaces")
def test_a_sweep_lost_with_its_hostname_is_recovered_by_its_silent_heartbeat(tmp_path: Path) -> None:
    import time

    beat = "hydra.sweeper.heartbeat_interval=1"
    _kill_mid_trial(_namespaced(tmp_path, "box-a", *GRID, beat), tmp_path)
    orphan = next(t.number for t in _ns_trials(tmp_path) if t.state == TrialState.RUNNING)
    assert _ns_trials(tmp_path)[orphan].user_attrs["worker"].startswith("box-a:")
    time.sleep(4)  # three intervals without a beat
    resumed = _namespaced(tmp_path, "box-b", *GRID, beat)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    trials = _ns_trials(tmp_path)
    assert "no heartbeat from its worker (box-a:1)" in trials[orphan].user_attrs["fail_reason"]
    assert sorted(t.params["optimizer.lr"] for t in trials if t.state == TrialState.COMPLETE) == [0.01, 0.02, 0.05]


@pytest.mark.skipif(subprocess.run(["unshare", "--uts", "--pid", "--fork", "true"]).returncode != 0,
                    reason="needs permission to create namespaces")
def test_a_live_sweep_on_another_host_keeps_its_running_trial(tmp_path: Path) -> None:
    """box-b joins while box-a's only trial runs: it waits (the trial may yet turn out orphaned), sees it beat, leaves
    it alone, and ends when box-a's trial does."""
    import time

    one = ["optimizer.lr=choice(0.01)", "train.epochs=40", "data.train_subset=null",
           "hydra.sweeper.heartbeat_interval=1"]
    live = _namespaced(tmp_path, "box-a", *one)
    try:
        wait_until(lambda: [t.state for t in _ns_trials(tmp_path)] == [TrialState.RUNNING])
        time.sleep(4)  # longer than three intervals: only the live beat keeps the trial
        other = _namespaced(tmp_path, "box-b", *one)
        output, _ = other.communicate(timeout=300)
        assert other.returncode == 0, output
        (trial,) = _ns_trials(tmp_path)  # box-b claimed nothing and failed nothing
        assert trial.state == TrialState.COMPLETE and trial.user_attrs["worker"].startswith("box-a:")
    finally:
        live.kill()
        live.wait(timeout=60)


def test_a_tracking_store_that_cannot_work_stops_a_sweep_at_once(tmp_path: Path) -> None:
    import socket
    import threading
    import time

    from tests.conftest import run_cli

    args = ("-m", "hydra/sweeper=optuna", "optimizer.lr=choice(0.05,0.1)", "train.epochs=2")
    missing = run_cli(*args, f"mlflow.tracking_uri=sqlite:///{tmp_path}/nowhere/m.db", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"error: mlflow.tracking_uri: no folder {tmp_path}/nowhere for the SQLite store "
                                      f"sqlite:///{tmp_path}/nowhere/m.db")
    with socket.socket() as server:  # a server that accepts connections and never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        held: list[socket.socket] = []
        threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
        started = time.time()
        hanging = run_cli(*args, env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server.getsockname()[1]}"},
                          cwd=tmp_path)
    assert hanging.returncode == 2 and "does not answer" in hanging.stderr.strip().splitlines()[-1]
    assert time.time() - started < 30 and not (tmp_path / "multirun").exists()


@pytest.mark.skipif(subprocess.run(["unshare", "--mount", "true"]).returncode != 0,
                    reason="needs permission to create a mount namespace")
def test_a_read_only_tracking_folder_stops_a_sweep_at_once(tmp_path: Path) -> None:
    """The folder is a read-only bind mount in a mount namespace of the sweep's own (root ignores permissions)."""
    import shlex
    import time

    from tests.conftest import SWEEP

    folder = tmp_path / "ro"
    folder.mkdir()
    sweep = shlex.join([SWEEP, "-m", "hydra/sweeper=optuna", "optimizer.lr=choice(0.05,0.1)", "train.epochs=2",
                        f"mlflow.tracking_uri=sqlite:///{folder}/m.db"])
    inner = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && exec {sweep}"
    started = time.time()
    result = subprocess.run(["unshare", "--mount", "sh", "-c", inner], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and time.time() - started < 60
    assert result.stderr.strip() == (f"error: mlflow.tracking_uri: the folder {folder} of the SQLite store "
                                     f"sqlite:///{folder}/m.db is not writable")
    assert not (tmp_path / "multirun").exists()


def test_a_new_study_in_a_reused_folder_never_reads_a_stale_metrics_file(tmp_path: Path) -> None:
    """Trial 1 of the new study diverges in a job folder whose metrics.json an earlier study left behind: what the
    study keeps for it comes from the trial itself (nothing), not from the file."""
    import json

    from tests.conftest import run_cli

    stale = tmp_path / "multirun" / "s" / "1"
    stale.mkdir(parents=True)
    (stale / "metrics.json").write_text(json.dumps({"val_acc": 0.99, "test_acc": 0.99}))
    result = run_cli("-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "name=s", "mlflow.enabled=false",
                     "optimizer.lr=choice(0.05,1e12)", "train.epochs=3", "deepfool.samples=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    journal = str(tmp_path / "multirun" / "s" / "optuna.journal")
    first, diverged = optuna.load_study(study_name="s", storage=fresh_storage(journal)).trials
    assert diverged.state == TrialState.FAIL and "metrics" not in diverged.user_attrs
    assert first.state == TrialState.COMPLETE and first.user_attrs["metrics"]["epochs"] == 3  # its own, recorded


def test_bad_input_in_a_folder_the_user_had_takes_back_only_what_hydra_wrote(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.log").write_text("mine")
    result = run_cli("optimizer.lr=-1", f"hydra.run.dir={mine}", cwd=tmp_path)
    assert result.returncode == 2
    assert sorted(p.name for p in mine.iterdir()) == ["notes.log"]  # .hydra/ and cli.log gone, the user's file kept


@pytest.mark.skipif(subprocess.run(["unshare", "--mount", "true"]).returncode != 0,
                    reason="needs permission to mount a tmpfs in a mount namespace")
def test_an_mlflow_store_on_a_full_disk_is_one_warning_and_the_sweep_finishes(tmp_path: Path) -> None:
    """The MLflow SQLite store on a 16 MB tmpfs that a file fills mid-sweep: every trial still completes in the
    study, the loss of tracking is said once, in one line, without MLflow's SQL."""
    import textwrap

    from tests.conftest import SWEEP

    script = tmp_path / "full.sh"
    script.write_text(textwrap.dedent(f"""\
        set -u
        disk={tmp_path}/disk; mkdir -p $disk; mount -t tmpfs -o size=16m tmpfs $disk
        export MLFLOW_TRACKING_URI=sqlite:///$disk/mlflow.db
        cd {tmp_path}
        {SWEEP} -m hydra/sweeper=optuna hydra.sweeper.sampler=grid name=full \\
            'optimizer.lr=choice(0.01,0.02,0.05,0.1)' train.epochs=8 deepfool.samples=20 > out.txt 2>&1 &
        sweep=$!
        until grep -q '"state":1' multirun/full/optuna.journal 2>/dev/null; do sleep 0.1; done
        head -c 40M /dev/zero > $disk/filler 2>/dev/null
        wait $sweep; echo $? > code.txt
    """))
    subprocess.run(["unshare", "--mount", "bash", str(script)], check=True, timeout=600)
    output = (tmp_path / "out.txt").read_text()
    assert (tmp_path / "code.txt").read_text().strip() == "0", output
    states = [t.state for t in optuna.load_study(study_name="full", storage=fresh_storage(
        str(tmp_path / "multirun" / "full" / "optuna.journal"))).trials]
    assert states == [TrialState.COMPLETE] * 4
    warned = [line for line in output.splitlines() if "MLflow logging to " in line]
    assert len(warned) == 1, output
    assert "[SQL:" not in output and "Traceback" not in output
