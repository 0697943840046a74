"""Samplers and pruners by name: the Optuna class each name builds, with options checked into one-line errors.

The names are what ``hydra.sweeper.sampler`` / ``hydra.sweeper.pruner`` accept (and the options of
``hydra/sweeper/sampler=<name>`` in the plugin's config). ``grid`` is not Optuna's GridSampler: the sweeper enqueues
each grid point itself (so a resumed or conditional grid runs exactly its missing, valid points), and the sampler
behind it never draws.
"""

from __future__ import annotations

import warnings
from typing import Any

from sweep.errors import ConfigError, check_choice

SAMPLERS = {
    "grid": "RandomSampler",
    "random": "RandomSampler",
    "tpe": "TPESampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler",
    "nsgaii": "NSGAIISampler",  # hydra-optuna-sweeper's name for it
    "qmc": "QMCSampler",
}
MULTI_OBJECTIVE = ("grid", "random", "tpe", "gp", "nsga2", "nsgaii", "qmc")
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
}
_REMOVED = {"motpe": "the 'motpe' sampler was removed in Optuna 4.0; tpe handles several objectives itself"}


def _build(kind: str, name: str, cls_name: str, options: dict[str, Any]) -> Any:
    import optuna

    module = optuna.samplers if kind == "sampler" else optuna.pruners
    try:
        with warnings.catch_warnings():  # QMCSampler and a few options are marked experimental; that is no error
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return getattr(module, cls_name)(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"hydra.sweeper.{kind}_options", f"{name}: {error}") from None


def build_sampler(name: str, options: dict[str, Any]) -> Any:
    """The Optuna sampler called ``name`` with keyword ``options`` (None values mean Optuna's defaults)."""
    if name in _REMOVED:
        raise ConfigError("hydra.sweeper.sampler", _REMOVED[name])
    check_choice(name, "hydra.sweeper.sampler", tuple(SAMPLERS))
    return _build("sampler", name, SAMPLERS[name], {k: v for k, v in options.items() if v is not None})


def build_pruner(name: str, options: dict[str, Any]) -> Any:
    """The Optuna pruner called ``name`` with keyword ``options``."""
    check_choice(name, "hydra.sweeper.pruner", tuple(PRUNERS))
    return _build("pruner", name, PRUNERS[name], dict(options))
