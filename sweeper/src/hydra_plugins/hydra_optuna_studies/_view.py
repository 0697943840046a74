"""The sweep in MLflow, for apps whose StudySpec names a tracking store: one parent run per study (kept with the
study, created by whichever worker comes first), the view of its runs table and charts, and each trial's run tagged
with the state the study gave it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra_optuna_studies.contract import FINAL_PREFIX, MLFLOW_RUN_ATTR, masked
from hydra_optuna_studies.storage import StudyLock
from hydra_optuna_studies.sweep_run import RunsView, SweepRun, log_axis

from ._plan import Plan


def open_sweep_run(plan: Plan, study: Any, lock: StudyLock) -> SweepRun | None:
    """The study's MLflow run, reopened or started under the study's lock, so concurrent workers share one."""
    if not plan.spec.tracking_uri:
        return None
    run = SweepRun(True, plan.spec.tracking_uri, plan.spec.experiment or plan.study_name)
    params = {
        "sampler": plan.sampler_name,
        "pruner": plan.pruner["_target_"].rsplit(".", 1)[-1],
        "directions": plan.directions,
        "metrics": plan.names,
        **{f"space.{k}": repr(v) for k, v in plan.space.distributions.items()},
        **{f"fixed.{i}": masked(o) for i, o in enumerate(plan.space.fixed)},
    }
    tags = {"sweep.storage": masked(plan.storage), "sweep.sampler": plan.sampler_name}
    with lock.held():
        known = (study.user_attrs.get(MLFLOW_RUN_ATTR) or {}).get("run_id")
        run.open(plan.study_name, params, tags, known)
        if run.run_id and run.run_id != known:
            study.set_user_attr(MLFLOW_RUN_ATTR, {"run_id": run.run_id, "experiment": run.experiment})
    return run if run.run_id else None


def runs_view(plan: Plan) -> RunsView:
    """The sweep's MLflow view. Columns: each objective's final value, then what the app shows beside the
    objectives. Charts: the objectives and the metrics the app's tables rest on (a margin) against each swept
    parameter, on a log10 axis where the report's figures use a log axis; the app's per-epoch curves."""
    metrics = plan.names
    beside = plan.spec.beside
    shown = [m for name in plan.spec.shown for m in (name, beside.get(name)) if m and m not in metrics]
    charted = [*metrics, *(m for m in plan.spec.beside if m not in metrics)]
    distributions = plan.space.distributions
    return RunsView(study=plan.study_name, params=list(plan.space.params),
                    columns=[f"{FINAL_PREFIX}{m}" for m in [*metrics, *shown]],
                    ascending=plan.directions[0] == "minimize", charted=charted, curves=list(plan.spec.curves),
                    log_params=[p for p, d in distributions.items() if log_axis(d)],
                    value_chars={p: _value_chars(d) for p, d in distributions.items()})


def _value_chars(distribution: Any) -> int:
    """The longest value a param's column shows: its longest choice, an integer's bound, a stepped float's few
    digits, a sampled float as the app logs it (full precision: up to 20 characters)."""
    if hasattr(distribution, "choices"):
        return max((len(str(c)) for c in distribution.choices), default=1)
    if isinstance(distribution.high, int):
        return len(str(distribution.high))
    return 20 if distribution.step is None else 8


def close_sweep_run(run: SweepRun, summary: dict[str, Any], table: str, report_dir: Path, last: bool) -> None:
    """Log the result on the sweep's run; the last worker to finish closes it."""
    run.log_summary(summary, table, report_dir)
    if last:
        run.end("FINISHED")
