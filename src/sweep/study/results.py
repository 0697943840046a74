"""What a study found, read from its storage: the trials table, the best trial or Pareto front, as data.

Used by the sweeper at the end of a sweep and by ``sweep-report`` / ``sweep-export`` later, so every view of
a study is made from the same summary.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial


def _trial_row(trial: FrozenTrial) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "values": list(trial.values) if trial.values else None,
        "params": dict(trial.params),
        "duration_s": round(duration, 3) if duration is not None else None,
        **({"fail_reason": trial.user_attrs["fail_reason"]} if "fail_reason" in trial.user_attrs else {}),
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
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
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
        "n_trials": len(trials),
        "states": counts,
        ("best" if len(study.directions) == 1 else "pareto_front"): [_trial_row(t) for t in best],
        "trials": [_trial_row(t) for t in trials],
    }


def write_yaml(summary: dict[str, Any], path: Path) -> None:
    from omegaconf import OmegaConf

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(summary)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def format_table(summary: dict[str, Any]) -> str:
    """The trials as a Markdown table (params, values, state, duration), best first."""
    metrics = summary["metrics"]
    param_names = sorted({k for t in summary["trials"] for k in t["params"]})
    header = ["trial", *param_names, *metrics, "state", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sign = [1 if d == "maximize" else -1 for d in summary["directions"]]

    def rank(t: dict) -> tuple:
        values = t["values"] or [-math.inf * s for s in sign]
        return (t["state"] != "COMPLETE", *(-s * v for s, v in zip(sign, values, strict=True)))

    for t in sorted(summary["trials"], key=rank):
        values = t["values"] or [None] * len(metrics)
        cells = [t["number"], *(t["params"].get(p, "") for p in param_names), *values, t["state"], t["duration_s"]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines)
