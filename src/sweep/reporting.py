"""What a task tells the study it runs in: intermediate values (for pruning) and its final metrics.

Any Hydra task swept by ``hydra/sweeper=optuna`` can call these; outside such a sweep (a single run, another
sweeper) they do nothing, so a task calls them unconditionally::

    from sweep.reporting import record, report

    for epoch in range(1, epochs + 1):
        val_loss = train_one_epoch()
        report(val_loss, step=epoch)  # raises optuna.TrialPruned when the study's pruner says stop
    record({"val_loss": val_loss, "test_acc": test_acc})  # kept with the trial, shown in reports
    return val_loss

The job finds its trial through the environment the sweeper sets (:mod:`sweep.contract`) and reaches it through the
shared storage, so this works in the sweep's own process and in launcher subprocesses (joblib, SLURM) alike.
Intermediate values are stored only when the study has a pruner: without one nothing reads them, and a write per
epoch would cost a journal append or a database transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sweep.contract import HISTORY_ATTR, METRICS_ATTR, PRUNER_ATTR, TrialLink, current_link

if TYPE_CHECKING:
    import optuna

# The trial of the job running now, and whether its study prunes: looked up once per job, not once per step.
_linked: tuple[TrialLink, optuna.Trial, bool] | None = None


def _trial() -> tuple[optuna.Trial, bool] | None:
    """This job's Optuna trial and whether its study has a pruner; None outside a sweep."""
    global _linked
    link = current_link()
    if link is None:
        return None
    if _linked is None or _linked[0] != link:
        import optuna

        from sweep.study.registry import build_pruner
        from sweep.study.storage import open_storage

        storage = open_storage(link.storage)
        study = optuna.load_study(study_name=link.study_name, storage=storage)
        settings = study.user_attrs.get(PRUNER_ATTR) or {"name": "none", "options": {}}
        study.pruner = build_pruner(settings["name"], settings["options"])
        study_id = storage.get_study_id_from_name(link.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, link.trial_number)
        # Optuna has no public way to reattach to a RUNNING trial from another process; Trial(study, id) is what
        # study.ask() itself builds. Pinned by optuna>=5,<6 and checked in tests/test_reporting.py.
        _linked = (link, optuna.Trial(study, trial_id), settings["name"] != "none")
    return _linked[1], _linked[2]


def report(value: float, step: int) -> None:
    """Report ``value`` at ``step`` (an epoch, a batch count) to this job's trial; raise ``optuna.TrialPruned``
    when the study's pruner decides the trial should stop. A no-op outside a sweep or when nothing prunes."""
    linked = _trial()
    if linked is None or not linked[1]:
        return
    trial, _ = linked
    trial.report(float(value), step=step)
    if trial.should_prune():
        import optuna

        raise optuna.TrialPruned(f"pruned at step {step} (value {value:.4g})")


def strict(value: Any) -> Any:
    """``value`` (numbers, nested in dicts and lists) as strict JSON holds it: NaN and infinities become None."""
    if isinstance(value, Mapping):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def record(metrics: Mapping[str, Any], history: Mapping[str, Any] | None = None) -> None:
    """Keep ``metrics`` (name -> number) with this job's trial, for reports and export, and optionally its
    ``history``: named learning curves, each a list of rows (``{"epoch": 1, "val_acc": 0.9, ...}``), which reports
    draw per trial. A no-op outside a sweep. Non-finite numbers are stored as None so the storage holds strict JSON.
    """
    linked = _trial()
    if linked is None:
        return
    linked[0].set_user_attr(METRICS_ATTR, strict(metrics))
    if history is not None:
        linked[0].set_user_attr(HISTORY_ATTR, strict(history))
