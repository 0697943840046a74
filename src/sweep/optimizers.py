"""Optimizers for the ``optimizer`` config group: thin, validated front ends to ``torch.optim``.

Each config's fields (other than ``name``) are passed to the torch class as keyword arguments, so the YAML
names are torch's own names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import torch

from sweep.errors import check


def _check_lr_wd(lr: float, weight_decay: float) -> None:
    check(0 < lr < math.inf, "optimizer.lr", f"must be > 0 and finite, got {lr}")
    check(0 <= weight_decay < math.inf, "optimizer.weight_decay", f"must be >= 0 and finite, got {weight_decay}")


def _check_eps(eps: float) -> None:
    check(0 < eps < math.inf, "optimizer.eps", f"must be > 0 and finite, got {eps}")


def _check_momentum(momentum: float) -> None:
    check(0.0 <= momentum < 1.0, "optimizer.momentum", f"must be in [0, 1), got {momentum}")


@dataclass
class SGDConfig:
    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9  # the "SGD + momentum" of the studies; 0.0 for plain SGD
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_lr_wd(self.lr, self.weight_decay)
        _check_momentum(self.momentum)
        check(not self.nesterov or self.momentum > 0, "optimizer.nesterov", "needs optimizer.momentum > 0")


@dataclass
class RMSpropConfig:
    name: str = "rmsprop"
    lr: float = 1e-3
    alpha: float = 0.99  # smoothing constant of the squared-gradient average
    momentum: float = 0.0
    eps: float = 1e-8
    centered: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_lr_wd(self.lr, self.weight_decay)
        _check_eps(self.eps)
        _check_momentum(self.momentum)
        check(0.0 <= self.alpha < 1.0, "optimizer.alpha", f"must be in [0, 1), got {self.alpha}")


@dataclass
class AdamConfig:
    name: str = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0  # L2 penalty added to the gradient (AdamW decouples it)
    amsgrad: bool = False

    def __post_init__(self) -> None:
        _check_lr_wd(self.lr, self.weight_decay)
        _check_eps(self.eps)
        check(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            "optimizer.betas",
            f"must be two values in [0, 1), got {self.betas}",
        )


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


OptimizerConfig = SGDConfig | RMSpropConfig | AdamConfig | AdamWConfig
OPTIMIZERS: dict[str, type] = {"sgd": SGDConfig, "rmsprop": RMSpropConfig, "adam": AdamConfig, "adamw": AdamWConfig}
_TORCH = {SGDConfig: "SGD", RMSpropConfig: "RMSprop", AdamConfig: "Adam", AdamWConfig: "AdamW"}


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The torch optimizer named by ``cfg`` over ``params``."""
    kwargs = {k: v for k, v in asdict(cfg).items() if k != "name"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(torch.optim, _TORCH[type(cfg)])(params, **kwargs)
