"""What a sweep and a single run print: one line per trial, no library chatter, an aligned table that names ties."""

from __future__ import annotations

import re
from pathlib import Path

from sweep.study.results import format_table, ties
from tests.conftest import run_cli


def test_a_sweep_prints_one_line_per_trial_and_an_aligned_table(tmp_path: Path) -> None:
    result = run_cli("-m", "+experiment=quickstart", "train.epochs=2", "deepfool.samples=50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    trials = re.findall(r"\] Trial (\d+): optimizer\.lr=\S+ train\.batch_size=\d+$", output, re.MULTILINE)
    assert trials == [str(n) for n in range(9)]
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


def test_a_single_run_ends_with_its_summary_line(tmp_path: Path) -> None:
    result = run_cli("train.epochs=1", "deepfool.samples=20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"val_acc 0\.\d{4}, test_acc 0\.\d{4}, deepfool_margin \d\.\d{4}; all metrics: \S+/outputs/"
                        r"default/[\d_-]+/metrics\.json", last), last


def _summary(values: list[float]) -> dict:
    trials = [{"number": i, "state": "COMPLETE", "values": [v], "params": {"lr": 0.1 * (i + 1)}, "duration_s": 1.0,
               "metrics": {"test_acc": v}} for i, v in enumerate(values)]
    best = max(trials, key=lambda t: (t["values"][0], -t["number"]))
    return {"metrics": ["val_acc"], "directions": ["maximize"], "trials": trials, "best": [best]}


def test_ties_are_named_and_a_clear_best_is_not() -> None:
    assert ties(_summary([0.9722, 0.95, 0.9722, 0.9722])) == (
        "3 trials tie at val_acc 0.9722: 0, 2, 3; trial 0 is reported as best (the first to finish)")
    assert ties(_summary([0.9722, 0.95])) is None
    table = format_table(_summary([0.9722, 0.95]))
    assert table.splitlines()[2].startswith("| * | 0 ") and "test_acc" in table.splitlines()[0]
