"""Weight initialisation schemes for the ``init`` config group.

Applied to every Linear and Conv2d layer after the model is built and seeded; biases start at zero for every
scheme but ``default`` (PyTorch's own per-layer init, untouched).
"""

from __future__ import annotations

from typing import cast

import torch
from hydra_optuna_studies.errors import ConfigError
from torch import nn

from sweep.config import InitConfig, NormalInitConfig

# Activations after which He (Kaiming) init keeps the variance (kaiming_* look for the one after each layer).
_RELU_LIKE = (nn.ReLU, nn.LeakyReLU, nn.CELU, nn.SiLU)
# The heuristic of the initialisation study: He after ReLU, its "Xavier" (LeCun, variance 1 / fan_in) otherwise.
_HEURISTIC_HE = (nn.ReLU, nn.LeakyReLU)


_KNOWN = (nn.Linear, nn.Conv2d, nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)  # norms: left alone


def _weighted(model: nn.Module, unknown_layers: str) -> list[nn.Module]:
    """The layers a scheme initialises; a layer with weights of another kind is an error unless the user asked to
    leave such layers at PyTorch's init (``init.unknown_layers=default``)."""
    unknown = [m for m in model.modules()
               if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, _KNOWN)]
    if unknown and unknown_layers == "error":
        kinds = ", ".join(sorted({type(m).__name__ for m in unknown}))
        raise ConfigError("init.unknown_layers", f"the init schemes do not know {kinds}; set init.unknown_layers="
                          "default to leave them at PyTorch's initialisation")
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def _activation_after(model: nn.Module) -> dict[nn.Module, nn.Module | None]:
    """For each weighted layer, the first activation that follows it in module order (None for the output)."""
    following: dict[nn.Module, nn.Module | None] = {}
    pending: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            pending.append(module)
        elif isinstance(module, (*_RELU_LIKE, nn.Tanh, nn.Sigmoid)):
            following.update({layer: module for layer in pending})
            pending = []
    following.update({layer: None for layer in pending})
    return following


def _kaiming(weight: torch.Tensor, act: nn.Module | None, normal: bool) -> None:
    slope = act.negative_slope if isinstance(act, nn.LeakyReLU) else 0.0
    fn = nn.init.kaiming_normal_ if normal else nn.init.kaiming_uniform_
    fn(weight, a=slope, nonlinearity="leaky_relu" if slope else "relu")


def _lecun(weight: torch.Tensor, normal: bool) -> None:
    """Variance 1 / fan_in: Kaiming's formula with gain 1 (``nonlinearity="linear"``)."""
    (nn.init.kaiming_normal_ if normal else nn.init.kaiming_uniform_)(weight, nonlinearity="linear")


def init_weights(model: nn.Module, cfg: InitConfig) -> None:
    """Re-initialise ``model``'s weights in place according to ``cfg`` (uses the global torch RNG)."""
    if cfg.name == "default":
        return
    after = _activation_after(model)
    for layer in _weighted(model, cfg.unknown_layers):
        weight = cast(torch.Tensor, layer.weight)
        if cfg.name == "xavier_normal":
            nn.init.xavier_normal_(weight)
        elif cfg.name == "xavier_uniform":
            nn.init.xavier_uniform_(weight)
        elif cfg.name in ("kaiming_normal", "kaiming_uniform"):
            _kaiming(weight, after[layer], normal=cfg.name == "kaiming_normal")
        elif cfg.name in ("lecun_normal", "lecun_uniform"):
            _lecun(weight, normal=cfg.name == "lecun_normal")
        elif isinstance(cfg, NormalInitConfig):
            nn.init.normal_(weight, 0.0, cfg.std)
        elif isinstance(after[layer], _HEURISTIC_HE):  # heuristic: He after ReLU
            _kaiming(weight, after[layer], normal=True)
        else:  # heuristic: LeCun before CELU, Swish, tanh, sigmoid and for the output layer
            _lecun(weight, normal=True)
        if layer.bias is not None:
            nn.init.zeros_(cast(torch.Tensor, layer.bias))
