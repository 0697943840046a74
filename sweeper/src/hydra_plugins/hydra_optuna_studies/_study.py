"""Opening the study a plan names, safely when several workers open it at the same instant.

Whoever comes first creates the storage's tables and the study (``hydra_optuna_studies.storage`` retries the race on
table creation; ``create_study(load_if_exists=True)`` the race on the name); every later worker, and every resumed
sweep, finds it and checks that it is the same study: the same directions, and the same space for every swept key.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal, cast

from hydra_optuna_studies.contract import APP_ATTR, PRUNER_ATTR
from hydra_optuna_studies.errors import ConfigError, check
from hydra_optuna_studies.storage import open_storage

from ._plan import Plan

log = logging.getLogger(__name__)


def open_study(plan: Plan) -> Any:
    import optuna

    storage = open_storage(plan.storage, "hydra.sweeper.storage", fresh=True)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=plan.study_name,
            directions=cast(list[Literal["minimize", "maximize"]], plan.directions),
            sampler=plan.sampler,
            pruner=optuna.pruners.NopPruner(),  # the sweeper never prunes; jobs prune through reporting.report
            load_if_exists=True,
        )
    except Exception as error:  # noqa: BLE001 - a database that refuses us is a user-facing problem
        raise ConfigError("hydra.sweeper.storage", f"cannot open study {plan.study_name!r}: {error}") from None
    existing = [d.name.lower() for d in study.directions]
    check(existing == plan.directions, "hydra.sweeper.direction",
          f"study {plan.study_name!r} already exists with directions {existing}, not {plan.directions}")
    if plan.metrics and study.metric_names is None:
        with warnings.catch_warnings():  # set_metric_names is marked experimental since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(plan.metrics)
    if study.user_attrs.get(PRUNER_ATTR) != plan.pruner:
        study.set_user_attr(PRUNER_ATTR, plan.pruner)
    if (shown := plan.spec.shown_to_tools()) and study.user_attrs.get(APP_ATTR) != shown:
        study.set_user_attr(APP_ATTR, shown)
    return study


def match_study_space(study: Any, plan: Plan, keep_study_space: bool) -> None:
    """A resumed study sampled a swept key from another space (``choice(0.01, 0.05)``, now ``choice(0.01, 0.3)``):
    refuse before any trial, naming both, unless ``keep_study_space`` says to go on with the study's space."""
    from optuna.distributions import check_distribution_compatibility

    known: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False):
        known.update(trial.distributions)
    for key, param in plan.space.params.items():
        if key not in known:
            continue
        try:
            check_distribution_compatibility(known[key], param.distribution)
        except ValueError:
            if not keep_study_space:
                raise ConfigError(key, f"study {plan.study_name!r} sampled it from {described(known[key])}, this "
                                  f"command from {described(param.distribution)}; name a new "
                                  "hydra.sweeper.study_name, or set hydra.sweeper.keep_study_space=true to go on "
                                  "with the study's") from None
            param.distribution = known[key]


def described(distribution: Any) -> str:
    """A distribution as a user wrote it, near enough: ``choice(0.01, 0.05)``, ``interval(0.0, 1.0, log)``."""
    if hasattr(distribution, "choices"):
        return f"choice({', '.join(map(str, distribution.choices))})"
    step = f", step={distribution.step}" if distribution.step else ""
    return f"interval({distribution.low}, {distribution.high}{step}{', log' if distribution.log else ''})"
