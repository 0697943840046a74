"""The summary's table and sentences, as the terminal, the report and MLflow show them."""

from __future__ import annotations

from hydra_optuna_studies.results import format_table, ties


def _summary(values: list[float]) -> dict:
    trials = [{"number": i, "state": "COMPLETE", "values": [v], "params": {"lr": 0.1 * (i + 1)}, "duration_s": 1.0,
               "metrics": {"test_acc": v}} for i, v in enumerate(values)]
    best = max(trials, key=lambda t: (t["values"][0], -t["number"]))
    return {"metrics": ["val_acc"], "directions": ["maximize"], "shown": ["test_acc"], "trials": trials,
            "best": [best]}


def test_ties_are_named_and_a_clear_best_is_not() -> None:
    assert ties(_summary([0.9722, 0.95, 0.9722, 0.9722])) == (
        "3 trials tie at val_acc 0.9722: 0, 2, 3; trial 0 is reported as best (the first to finish)")
    assert ties(_summary([0.9722, 0.95])) is None
    table = format_table(_summary([0.9722, 0.95]))
    assert table.splitlines()[2].startswith("| * | 0 ") and "test_acc" in table.splitlines()[0]
