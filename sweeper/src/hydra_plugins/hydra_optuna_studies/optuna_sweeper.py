"""Thin Hydra entry point; the work is in ``_sweeper`` so that merely discovering plugins stays fast."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import OFFICIAL_PACKAGE, official_installed

OFFICIAL_TARGET = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


class OptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        from ._sweeper import OptunaStudiesSweeper

        self.sweeper = OptunaStudiesSweeper(options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)


class OfficialTargetSweeper(OptunaSweeper):
    """Configs written for hydra-optuna-sweeper may name its class as ``hydra.sweeper._target_``. Where that plugin
    is not installed, its module path is made to hold this class (in this process's module table only, nothing on
    disk), so that Hydra's plugin registry and its instantiation both find it; the sweep says so in one line."""

    def __init__(self, **options: Any) -> None:
        logging.getLogger(__name__).info("hydra.sweeper._target_ names hydra-optuna-sweeper's class: running "
                                         "hydra-optuna-studies, its successor, with the same config")
        super().__init__(**options)


def _answer_for_the_official_target() -> None:
    module_name, _, class_name = OFFICIAL_TARGET.rpartition(".")
    if official_installed():
        return  # hydra-optuna-sweeper itself is installed: its class is the one Hydra finds (config.py warns)
    OfficialTargetSweeper.__module__, OfficialTargetSweeper.__name__ = module_name, class_name
    OfficialTargetSweeper.__qualname__ = class_name
    package = types.ModuleType(OFFICIAL_PACKAGE)
    package.STAND_IN = True  # type: ignore[attr-defined]
    module = types.ModuleType(module_name)
    module.OptunaSweeper = OfficialTargetSweeper  # type: ignore[attr-defined]
    package.optuna_sweeper = module  # type: ignore[attr-defined]
    sys.modules.setdefault(package.__name__, package)
    sys.modules.setdefault(module_name, module)


_answer_for_the_official_target()
