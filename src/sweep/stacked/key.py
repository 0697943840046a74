"""Which trials may share a stack: :func:`stack_key`. Torch-free, so a sweep can group its trials while planning.

Trials stack when they share the data, the architecture, the batch size and epochs, the device, the optimizer's
family and code path, everything in ``train`` that shapes the loop, and the measures run afterwards. Everything else
may differ per trial: learning rate, momentum, weight decay, betas, alpha, eps, dropout rates (``dropout``,
``input_dropout``, ``keep_prob``), the init scheme and its std, the seed, and the stopping rules (``early_stopping``
and its metric, ``target_train_acc``, ``checkpoint``): a trial that stops early leaves its stack and the rest go on.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from sweep.config import CNNConfig, MLPConfig, RMSpropConfig, TrialConfig, per_layer

# Per-trial values: these may differ within a stack.
_PER_TRIAL = {
    "data": {"download"},  # fetching a missing data set changes nothing once it is there
    "model": {"dropout", "input_dropout", "keep_prob"},
    "optimizer": {"lr", "momentum", "weight_decay", "betas", "alpha", "eps"},
    "train": {"seed", "early_stopping", "early_stopping_metric", "target_train_acc", "checkpoint"},
}
_ALIASES = {"swish": "silu"}  # two names of one activation (nn.SiLU)


def stack_key(cfg: TrialConfig) -> tuple[Any, ...] | str:
    """What trials must share to run as one stack (equal keys stack), or one line saying why ``cfg`` cannot be
    stacked at all."""
    if not isinstance(cfg.model, MLPConfig | CNNConfig):
        return f"model={cfg.model.name}: only mlp and cnn models are stacked (residual blocks are not)"
    if cfg.train.time_budget_s is not None:
        return "train.time_budget_s: trials in a stack share one clock, so none can keep a time budget of its own"
    model = _fields(cfg.model, "model")
    activations = per_layer(cfg.model.activation, len(cfg.model.hidden_dims)) if isinstance(cfg.model, MLPConfig) \
        else [cfg.model.activation]  # "relu" or [relu, relu]: one model
    model["activation"] = tuple(_ALIASES.get(a, a) for a in activations)
    optimizer = _fields(cfg.optimizer, "optimizer")
    if isinstance(cfg.optimizer, RMSpropConfig):  # without momentum torch's update takes another path, rounding apart
        optimizer["momentum>0"] = cfg.optimizer.momentum > 0
    return (
        ("data", _pairs(_fields(cfg.data, "data"))),
        ("model", _pairs(model)),
        ("optimizer", _pairs(optimizer)),
        ("train", _pairs(_fields(cfg.train, "train"))),
        ("measures", _pairs({name: _frozen(options) for name, options in cfg.measures.items()})),
    )


def _fields(node: Any, section: str) -> dict[str, Any]:
    """A config dataclass's fields and values, without those that may differ per trial."""
    skip = _PER_TRIAL.get(section, set())
    return {f.name: _frozen(getattr(node, f.name)) for f in fields(node) if f.name not in skip}


def _pairs(values: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(values.items()))


def _frozen(value: Any) -> Any:
    """``value`` as something hashable: lists as tuples, dataclasses as their (field, value) pairs."""
    if is_dataclass(value) and not isinstance(value, type):
        return tuple((f.name, _frozen(getattr(value, f.name))) for f in fields(value))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value
