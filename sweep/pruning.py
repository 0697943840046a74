"""The trial's side of pruning: report the objective every epoch to the sweep's Optuna trial.

The sweeper tells each job where its trial lives (``optuna.storage``, ``optuna.study_name``,
``optuna.trial_number``) and keeps the pruner's settings in the study itself (user attribute ``pruner``); the
job reopens that trial and pruner from the shared storage, so pruning works whether the launcher runs jobs in
this process or in others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.errors import ConfigError
from sweep.storage import open_storage
from sweep.train import EpochCallback

PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
}
PRUNER_ATTR = "pruner"  # study user attribute: {"name": ..., "options": {...}}


def build_pruner(name: str, options: dict[str, Any]):
    """The Optuna pruner called ``name`` (a key of PRUNERS) with keyword ``options``."""
    import optuna

    try:
        return getattr(optuna.pruners, PRUNERS[name])(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError("hydra.sweeper.pruner_options", f"{name}: {error}") from None


@dataclass
class OptunaLinkConfig:
    storage: str | None = None  # set by the sweeper for each job; null outside a sweep
    study_name: str | None = None
    trial_number: int | None = None


def pruning_reporter(link: OptunaLinkConfig, metric: str) -> EpochCallback | None:
    """A callback that reports ``metric`` each epoch and raises ``optuna.TrialPruned`` when told to stop."""
    if link.trial_number is None or link.storage is None or link.study_name is None:
        return None
    import optuna

    storage = open_storage(link.storage, "optuna.storage")
    study = optuna.load_study(study_name=link.study_name, storage=storage)
    settings = study.user_attrs.get(PRUNER_ATTR)
    if not settings or settings["name"] == "none":
        return None
    study.pruner = build_pruner(settings["name"], settings["options"])
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(link.study_name), link.trial_number
    )
    trial = optuna.Trial(study, trial_id)

    def report(metrics: dict[str, float]) -> None:
        if metric not in metrics:
            return  # e.g. a DeepFool objective: known only after training
        epoch = int(metrics["epoch"])
        trial.report(metrics[metric], step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({metric}={metrics[metric]:.4g})")

    return report
