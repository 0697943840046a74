"""The summary's table and sentences, as the terminal, the report and MLflow show them."""

from __future__ import annotations

import warnings

import optuna
from hydra_optuna_studies.contract import APP_ATTR, METRICS_ATTR
from hydra_optuna_studies.results import counted, format_table, result_sentence, summarize, ties
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial


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


def _study(directions: list[str], trials: list[tuple[TrialState, list[float] | None, dict]]) -> optuna.Study:
    """A study in memory as the app leaves it: objective names, what its tables show, each trial's recorded
    metrics (strict JSON: a margin that could not be measured is null)."""
    study = optuna.create_study(directions=directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["test_acc", "deepfool_margin"][: len(directions)])
    study.set_user_attr(APP_ATTR, {"shown": ["test_acc", "deepfool_margin"],
                                   "beside": {"deepfool_margin": "deepfool_success_rate"}})
    lr = FloatDistribution(1e-5, 1.0, log=True)
    for i, (state, values, metrics) in enumerate(trials):
        study.add_trial(create_trial(state=state, values=values, params={"optimizer.lr": 0.1891787858799261 / (i + 1)},
                                     distributions={"optimizer.lr": lr}, user_attrs={METRICS_ATTR: metrics}))
    return study


def test_a_failed_trial_shows_what_it_measured_marked_and_nothing_it_did_not() -> None:
    """The terminal's and the report's table: a trial failed for an unmeasurable margin keeps its measured test
    accuracy (marked, not '-'), its margin reads n/m (marked), and a line says what the mark means."""
    study = _study(["maximize", "maximize"], [
        (TrialState.COMPLETE, [0.9, 0.5], {"test_acc": 0.9, "deepfool_margin": 0.5, "deepfool_success_rate": 1.0}),
        (TrialState.FAIL, None, {"test_acc": 0.117, "deepfool_margin": None, "deepfool_success_rate": 0.4}),
        (TrialState.PRUNED, None, {}),
    ])
    lines = format_table(summarize(study, "memory")).splitlines()
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]] for line in lines[2:5]}
    assert rows["0"] == ["0.189179", "0.9000", "0.5000", "1.0000", "COMPLETE", "-"]  # lr to 6 significant digits
    assert rows["1"] == ["0.0945894", "0.1170†", "n/m†", "0.4000†", "FAIL", "-"]
    assert rows["2"] == ["0.0630596", "-", "-", "-", "PRUNED", "-"]
    assert lines[-2:] == ["", "†: recorded by a trial that did not complete; not a result the study counts."]
    assert "†" not in format_table(summarize(_study(["maximize"], [(TrialState.COMPLETE, [0.9], {})]), "memory"))


def test_one_trial_is_said_in_the_singular() -> None:
    study = _study(["maximize", "maximize"], [(TrialState.COMPLETE, [0.9, 0.5], {"test_acc": 0.9})])
    assert result_sentence(summarize(study, "memory")).startswith("Pareto front of 1 trial: trial 0 (")
    assert result_sentence(summarize(study, "memory")).endswith(". Of 1 trial (1 complete).")
    assert counted(2, "trial") == "2 trials"
