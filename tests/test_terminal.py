"""What a sweep and a single run print: one line per trial, no library chatter, an aligned table that names ties."""

from __future__ import annotations

import os
import pty
import re
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import SWEEP, fresh_storage, run_cli


def test_a_sweep_prints_one_line_per_trial_and_an_aligned_table(tmp_path: Path) -> None:
    result = run_cli("-m", "+experiment=quickstart", "train.epochs=2", "deepfool.samples=50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    trials = re.findall(r"\] Trial (\d+): optimizer\.lr=\S+ train\.batch_size=\d+$", output, re.MULTILINE)
    assert trials == [str(n) for n in range(9)]
    assert re.search(r"\] \[9/9\] best val_acc 0\.\d+ \(trial \d\), ETA 0:00:00$", output, re.MULTILINE)  # no TTY
    for chatter in ("env_set", "Launching", "Error executing job", "mlflow.store", "alembic", "[optuna]", "Warning",
                    "epoch 1/2"):
        assert chatter not in output, chatter
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 9 and len({len(line) for line in table}) == 1  # aligned
    assert "test_acc" in table[0] and "deepfool_margin" in table[0]
    assert sum(line.startswith("| * ") for line in table) == 1
    assert re.search(r"^Best: trial \d+ \(val_acc 0\.\d{4}; optimizer\.lr=", result.stdout, re.MULTILINE)
    assert re.search(r"^MLflow UI: \S+/mlflow ui --backend-store-uri sqlite:////\S+/mlflow\.db", result.stdout,
                     re.MULTILINE)
    journal = tmp_path / "multirun" / "quickstart" / "optuna.journal"
    assert re.search(rf"^Optuna dashboard: \S+ {re.escape(str(journal))}$", result.stdout, re.MULTILINE)


def test_on_a_terminal_a_sweep_draws_a_progress_bar_and_keeps_its_lines_whole(tmp_path: Path) -> None:
    """On a TTY the trials' count, best so far and ETA are a live bar; each log line still prints whole, above it."""
    main, child = pty.openpty()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen(
        [SWEEP, "-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1,0.5)",
         "train.epochs=2", "deepfool.enabled=false", "name=tty"],
        cwd=tmp_path, env=env, stdin=child, stdout=child, stderr=child, close_fds=True,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=300) == 0
    raw = b"".join(chunks).decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw).replace("\r", "\n")  # colours and cursor moves out
    assert re.search(r"trials .*[━╸].* 1/3 ETA", text), text[-3000:]  # the bar, drawn after the first trial
    assert re.search(r"3/3 .*best val_acc 0\.\d+ \(trial \d\)", text)
    lines = text.splitlines()
    for number, lr in enumerate(("0.02", "0.1", "0.5")):  # each log line whole, on a line of its own
        assert any(re.fullmatch(rf"\[[^]]+\]\[HYDRA\] Trial {number}: optimizer\.lr={lr}", line.strip())
                   for line in lines), number
    assert not re.search(r"\[\d/3\] ", text)  # no plain progress lines on a terminal
    assert re.search(r"^Best: trial \d", text, re.MULTILINE)


def test_a_single_run_ends_with_its_summary_line(tmp_path: Path) -> None:
    result = run_cli("train.epochs=1", "deepfool.samples=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"val_acc 0\.\d{4}, test_acc 0\.\d{4}, deepfool_margin \d\.\d{4}; all metrics: \S+/outputs/"
                        r"default/[\d_-]+/metrics\.json", last), last


@pytest.mark.slow
def test_a_failed_trial_row_shows_what_it_measured_marked_and_sampled_values_read_at_six_digits(tmp_path: Path) -> None:
    """A trial failed for a margin it could not measure: its row shows its measured test accuracy and success rate
    marked ``†`` (not ``-``, not as if they were results), its margin ``n/m†``; trial lines and the table show a
    sampled learning rate at 6 significant digits; one member of the front is "1 trial"."""
    result = run_cli("-m", "+experiment=quick/lr_bs_grid", "hydra/sweeper/sampler=random", "hydra.sweeper.seed=1",
                     "hydra.sweeper.n_trials=4", "optimizer.lr=tag(log,interval(1e-5,0.5))", "train.batch_size=32",
                     "train.epochs=1", "deepfool.samples=40", "deepfool.max_iter=1", "deepfool.min_share=0.6",
                     "name=marked", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    study = optuna.load_study(study_name="marked", storage=fresh_storage(
        str(tmp_path / "multirun" / "marked" / "optuna.journal")))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and len(failed) < len(study.trials)  # the lowest learning rates cannot be crossed in one step
    for lr in re.findall(r"\] Trial \d+: optimizer\.lr=(\S+)$", output, re.MULTILINE):
        assert lr == f"{float(lr):g}", lr  # 0.000911116, not 0.0009111159...
    rows = {int(line.split("|")[2]): [c.strip() for c in line.split("|")[3:-1]]
            for line in result.stdout.splitlines() if re.match(r"\| [ *] \| \d", line)}
    assert {n: row[0] for n, row in rows.items()} == {t.number: f"{t.params['optimizer.lr']:g}" for t in study.trials}
    for trial in failed:
        measured = trial.user_attrs["metrics"]
        assert rows[trial.number][1:5] == [f"{measured['test_acc']:.4f}†", "n/m†",
                                           f"{measured['deepfool_success_rate']:.4f}†", "FAIL"]
    assert "†: recorded by a trial that did not complete; not a result the study counts." in result.stdout
    front = len(study.best_trials)
    assert f"Pareto front of {front} trial{'s' if front > 1 else ''}: " in result.stdout
