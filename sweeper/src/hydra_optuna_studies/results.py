"""What a study found, read from its storage: the trials table, the best trial or Pareto front, as data.

Used by the sweeper at the end of a sweep and by ``sweep-report`` / ``sweep-export`` later, so every view of
a study is made from the same summary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.contract import APP_ATTR, FAIL_REASON_ATTR, METRICS_ATTR

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial


def app_of(study: Study) -> dict[str, Any]:
    """What the app told the sweeper its tables and reports show (:meth:`StudySpec.shown_to_tools`); {} for an app
    that told nothing."""
    return dict(study.user_attrs.get(APP_ATTR) or {})


def shown_metrics(study: Study) -> list[str]:
    """Recorded metrics every table shows beside the objectives, as the app named them: each with what it rests on
    (a margin, then its success rate)."""
    app = app_of(study)
    beside = app.get("beside", {})
    return list(dict.fromkeys(m for name in app.get("shown", ()) for m in (name, beside.get(name)) if m))


def objective_names(study: Study) -> list[str]:
    """The objectives' names: the study's own, else ``objective_0``, ``objective_1``, ... as Optuna's tools say."""
    return list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])


def state_counts(summary: dict[str, Any]) -> str:
    """"9 complete, 1 pruned": how many trials ended in each state."""
    return ", ".join(f"{n} {state.lower()}" for state, n in summary["states"].items())


def _trial_row(trial: FrozenTrial, shown: list[str]) -> dict[str, Any]:
    """One trial as the summary holds it; ``metrics``: what it recorded of the objectives and the ``shown`` metrics,
    also when it did not complete (a failed trial's measured accuracy is kept, for the tables to show marked)."""
    duration = trial.duration.total_seconds() if trial.duration else None
    recorded = trial.user_attrs.get(METRICS_ATTR) or {}
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": list(trial.values) if trial.values else None,
        "params": dict(trial.params),
        "duration_s": round(duration, 3) if duration is not None else None,
        "metrics": {k: recorded[k] for k in shown if k in recorded},
        **({"fail_reason": trial.user_attrs[FAIL_REASON_ATTR]} if FAIL_REASON_ATTR in trial.user_attrs else {}),
    }


def best_trials(study: Study) -> list[FrozenTrial]:
    """The best trial of a single-objective study, or the Pareto front of a multi-objective one."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def summarize(study: Study, storage_spec: str) -> dict[str, Any]:
    """A plain, YAML-ready summary of ``study``: settings, counts per state, best trial(s), every trial.

    It starts with hydra-optuna-sweeper's keys, so code written for its ``optimization_results.yaml`` reads ours:
    ``name``, then ``best_params`` and ``best_value`` (one objective) or ``solutions`` (the Pareto front).
    """
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    names = objective_names(study)
    shown = shown_metrics(study)
    recorded = list(dict.fromkeys([*names, *shown]))
    best = best_trials(study)
    compatible: dict[str, Any]
    if len(study.directions) == 1:
        compatible = {"best_params": dict(best[0].params), "best_value": best[0].value} if best else {}
    else:
        compatible = {"solutions": [{"params": dict(t.params), "values": list(t.values)} for t in best]}
    return {
        "name": "optuna",
        **compatible,
        "study_name": study.study_name,
        "storage": storage_spec,
        "metrics": list(names),
        "directions": [d.name.lower() for d in study.directions],
        "shown": shown,
        "n_trials": len(trials),
        "states": counts,
        ("best" if len(study.directions) == 1 else "pareto_front"): [_trial_row(t, recorded) for t in best],
        "trials": [_trial_row(t, recorded) for t in trials],
    }


def write_yaml(summary: dict[str, Any], path: Path) -> None:
    from omegaconf import OmegaConf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(summary)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/m"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    return str(value)


def param_text(value: Any) -> str:
    """A swept value as the user wrote it (1e-05, 0.1, [512]); a sampled float to 6 significant digits: what every
    table, trial line and run name shows (the study and each trial's config keep the exact value)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def counted(n: int, noun: str) -> str:
    """"1 trial", "9 trials"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


FAILED_MARK = "†"  # after a value a failed (or pruned) trial recorded: measured, but not a result the study counts
FAILED_LEGEND = f"{FAILED_MARK}: recorded by a trial that did not complete; not a result the study counts."


def _rank(summary: dict[str, Any]) -> Any:
    """Sort key: complete trials first, then by the objectives in order, each towards its direction."""
    sign = [1 if d == "maximize" else -1 for d in summary["directions"]]

    def rank(t: dict) -> tuple:
        values = t["values"] or [-math.inf * s for s in sign]
        return (t["state"] != "COMPLETE", *(-s * v for s, v in zip(sign, values, strict=True)))

    return rank


def _cells(t: dict[str, Any], metrics: list[str], extra: list[str]) -> list[str]:
    """A trial's objective and shown-metric cells. A complete trial's objectives are its values; a recorded metric
    that could not be measured reads ``n/m``. A trial that did not complete shows what it recorded, each value
    marked (a failed trial's test accuracy was measured even when its margin was not), ``-`` where it recorded
    nothing."""
    recorded = t.get("metrics", {})
    complete = t["state"] == "COMPLETE"

    def shown(m: str) -> str:
        if m not in recorded:
            return "n/m" if complete else "-"
        return _fmt(math.nan if recorded[m] is None else recorded[m])  # strict JSON keeps "not measurable" as null

    if t["values"]:
        return [_fmt(v) for v in t["values"]] + [shown(m) for m in extra]
    cells = [shown(m) for m in [*metrics, *extra]]
    return cells if complete else [c if c == "-" else c + FAILED_MARK for c in cells]


def format_table(summary: dict[str, Any]) -> str:
    """The trials as an aligned Markdown table, best first: params, objectives, the metrics the app shows beside them
    (when recorded), state, seconds; ``*`` marks the best trial (or the Pareto front's members), ``†`` a value
    recorded by a trial that did not complete (a line under the table says so)."""
    metrics = summary["metrics"]
    recorded = {m for t in summary["trials"] for m in t.get("metrics", {})}
    extra = [m for m in summary.get("shown", []) if m not in metrics and m in recorded]
    param_names = sorted({k for t in summary["trials"] for k in t["params"]})
    best = {t["number"] for t in summary.get("best") or summary.get("pareto_front") or []}
    header = ["", "trial", *param_names, *metrics, *extra, "state", "seconds"]
    cells = [header]
    for t in sorted(summary["trials"], key=_rank(summary)):
        params = [param_text(t["params"][p]) if p in t["params"] else "" for p in param_names]
        seconds = f"{t['duration_s']:.1f}" if t["duration_s"] is not None else "-"
        cells.append(["*" if t["number"] in best else "", str(t["number"]), *params, *_cells(t, metrics, extra),
                      t["state"], seconds])
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    if any(c.endswith(FAILED_MARK) for row in cells for c in row):
        lines += ["", FAILED_LEGEND]
    return "\n".join(lines)


def ties(summary: dict[str, Any]) -> str | None:
    """A sentence naming the trials that tie with the best one (one objective), or None: Optuna keeps the first of
    them as ``best_trial``, which the user should know is a choice by trial order, not by value."""
    if len(summary["metrics"]) != 1 or not summary.get("best"):
        return None
    best = summary["best"][0]
    tied = [t["number"] for t in summary["trials"] if t["state"] == "COMPLETE" and t["values"] == best["values"]]
    if len(tied) < 2:
        return None
    return (f"{len(tied)} trials tie at {summary['metrics'][0]} {_fmt(best['values'][0])}: "
            f"{', '.join(map(str, tied))}; trial {best['number']} is reported as best (the first to finish)")


def result_sentence(summary: dict[str, Any]) -> str:
    """The sweep's result in one sentence: the best trial, or the Pareto front's members, with values and params;
    the terminal, the report and the MLflow parent run's description all say it this way."""
    counts = state_counts(summary)
    total = counted(summary["n_trials"], "trial")

    def described(t: dict[str, Any]) -> str:
        values = ", ".join(f"{m} {_fmt(v)}" for m, v in zip(summary["metrics"], t["values"], strict=True))
        params = " ".join(f"{k}={param_text(v)}" for k, v in t["params"].items())
        return f"trial {t['number']} ({values}{'; ' + params if params else ''})"

    if summary.get("pareto_front"):
        members = "; ".join(described(t) for t in summary["pareto_front"])
        front = counted(len(summary["pareto_front"]), "trial")
        return f"Pareto front of {front}: {members}. Of {total} ({counts})."
    if summary.get("best"):
        return f"Best: {described(summary['best'][0])}. Of {total} ({counts})."
    return f"No complete trial yet: {total} ({counts})."
