"""What a task tells the study it runs in: intermediate values (for pruning) and its final metrics.

Any Hydra task swept by ``hydra/sweeper=optuna`` can call these; outside such a sweep (a single run, another
sweeper) they do nothing, so a task calls them unconditionally::

    from hydra_optuna_studies.reporting import record, report

    for epoch in range(1, epochs + 1):
        val_loss = train_one_epoch()
        report(val_loss, step=epoch)  # raises optuna.TrialPruned when the study's pruner says stop
    record({"val_loss": val_loss, "test_acc": test_acc})  # kept with the trial, shown in reports
    return val_loss

The job finds its trial through the environment the sweeper sets (:mod:`hydra_optuna_studies.contract`) and reaches
it through the shared storage, so this works in the sweep's own process and in launcher subprocesses (joblib,
SLURM) alike. A job that runs several trials at once (a stacked launcher) holds one :class:`Reporter` per trial.
Intermediate values are stored only when the study has a pruner: without one nothing reads them, and a write per
epoch would cost a journal append or a database transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.contract import HISTORY_ATTR, METRICS_ATTR, PRUNER_ATTR, TrialLink, current_link

if TYPE_CHECKING:
    import optuna


class Reporter:
    """The reporting side of one trial, reached through ``link``; its storage is looked up once, on first use."""

    def __init__(self, link: TrialLink) -> None:
        self.link = link

    @cached_property
    def _trial(self) -> tuple[optuna.Trial, bool]:
        """The Optuna trial and whether its study has a pruner."""
        import optuna

        from hydra_optuna_studies.instantiate import build
        from hydra_optuna_studies.storage import open_storage

        storage = open_storage(self.link.storage)
        study = optuna.load_study(study_name=self.link.study_name, storage=storage)
        node = study.user_attrs.get(PRUNER_ATTR)
        study.pruner = build(node, "pruner") if node else optuna.pruners.NopPruner()
        study_id = storage.get_study_id_from_name(self.link.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, self.link.trial_number)
        # Optuna has no public way to reattach to a RUNNING trial from another process; Trial(study, id) is what
        # study.ask() itself builds. Pinned by optuna>=5,<6 and checked in tests/test_reporting.py.
        return optuna.Trial(study, trial_id), not isinstance(study.pruner, optuna.pruners.NopPruner)

    def report(self, value: float, step: int) -> None:
        """Report ``value`` at ``step``; raise ``optuna.TrialPruned`` when the study's pruner says stop."""
        trial, prunes = self._trial
        if not prunes:
            return
        trial.report(float(value), step=step)
        if trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned at step {step} (value {value:.4g})")

    def record(self, metrics: Mapping[str, Any], history: Mapping[str, Any] | None = None) -> None:
        """Keep ``metrics`` (and ``history``, named learning curves) with the trial, as strict JSON."""
        trial, _ = self._trial
        trial.set_user_attr(METRICS_ATTR, strict(metrics))
        if history is not None:
            trial.set_user_attr(HISTORY_ATTR, strict(history))


_current: Reporter | None = None  # the trial of the job running now: looked up once per job, not once per step


def _reporter() -> Reporter | None:
    global _current
    link = current_link()
    if link is None:
        return None
    if _current is None or _current.link != link:
        _current = Reporter(link)
    return _current


def report(value: float, step: int) -> None:
    """Report ``value`` at ``step`` (an epoch, a batch count) to this job's trial; raise ``optuna.TrialPruned``
    when the study's pruner decides the trial should stop. A no-op outside a sweep or when nothing prunes."""
    if (reporter := _reporter()) is not None:
        reporter.report(value, step)


def record(metrics: Mapping[str, Any], history: Mapping[str, Any] | None = None) -> None:
    """Keep ``metrics`` (name -> number) with this job's trial, for reports and export, and optionally its
    ``history``: named learning curves, each a list of rows (``{"epoch": 1, "val_acc": 0.9, ...}``), which reports
    draw per trial. A no-op outside a sweep. Non-finite numbers are stored as None so the storage holds strict JSON.
    """
    if (reporter := _reporter()) is not None:
        reporter.record(metrics, history)


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
