"""Optimizers for the ``optimizer`` config group: thin, validated front ends to ``torch.optim``.

Each config's fields (other than ``name``) are passed to the torch class as keyword arguments, so the YAML
names are torch's own names.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

import torch

from sweep.config import AdamConfig, AdamWConfig, OptimizerConfig, RMSpropConfig, SGDConfig

_TORCH = {SGDConfig: "SGD", RMSpropConfig: "RMSprop", AdamConfig: "Adam", AdamWConfig: "AdamW"}


def build_optimizer(cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The torch optimizer named by ``cfg`` over ``params``."""
    kwargs = {k: v for k, v in asdict(cfg).items() if k != "name"}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(torch.optim, _TORCH[type(cfg)])(params, **kwargs)
