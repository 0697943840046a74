"""Classifiers for the ``model`` config group: MLP, plain CNN and ResNet.

Every model takes inputs in [0, 1]; with ``data.preprocess=standardize`` it starts with :class:`Normalize`, so the
DeepFool perturbation is measured in that input space either way. Input shape and class count come from the data
set, never from the config.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from hydra_optuna_studies.errors import check
from torch import nn

from sweep.config import CNNConfig, MLPConfig, ModelConfig, ResNetConfig, per_layer

ACTIVATIONS: dict[str, type[nn.Module]] = {  # the names are sweep.config.ACTIVATIONS
    "relu": nn.ReLU,
    "celu": nn.CELU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
}


class Normalize(nn.Module):
    """(x - mean) / std per channel, with the training set's statistics held as buffers."""

    mean: torch.Tensor  # (1, C, 1, 1), a buffer: saved and moved with the model
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _head(in_dim: int, cfg: ModelConfig, num_classes: int) -> list[nn.Module]:
    """Fully connected layers ending in the class logits; the last Linear is the output layer.

    Each hidden layer is Linear -> activation -> Dropout (when its drop probability is above 0), with the layer's
    own activation and probability where the config gives one per layer.
    """
    layers: list[nn.Module] = []
    hidden = cfg.hidden_dims
    for width, act, drop in zip(hidden, per_layer(cfg.activation, len(hidden)), per_layer(cfg.dropout, len(hidden)),
                                strict=True):
        layers += [nn.Linear(in_dim, width), ACTIVATIONS[act]()]
        if drop > 0:
            layers.append(nn.Dropout(drop))
        in_dim = width
    return [*layers, nn.Linear(in_dim, num_classes)]


def _mlp(cfg: MLPConfig, shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    return [nn.Flatten(), *_head(shape[0] * shape[1] * shape[2], cfg, num_classes)]


def _cnn(cfg: CNNConfig, shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    act = ACTIVATIONS[cfg.activation]
    layers: list[nn.Module] = []
    in_ch, side, count = shape[0], min(shape[1:]), 0
    every = cfg.pool_every or cfg.layers_per_block
    for width in cfg.channels:
        for _ in range(cfg.layers_per_block):
            layers.append(nn.Conv2d(in_ch, width, 3, padding=1, bias=not cfg.batchnorm))
            if cfg.batchnorm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(act())
            in_ch, count = width, count + 1
            if count % every == 0:
                check(
                    side >= 2,
                    "model.pool_every",
                    f"{count // every} pools shrink the {shape[1]}x{shape[2]} input below 1x1; "
                    "raise pool_every or use fewer layers",
                )
                layers.append(nn.MaxPool2d(2))
                side //= 2
    flat = in_ch * (shape[1] >> (count // every)) * (shape[2] >> (count // every))
    return [*layers, nn.Flatten(), *_head(flat, cfg, num_classes)]


class ResidualBlock(nn.Module):
    """y = act(F(x) + shortcut(x)): two 3x3 convs, or 1x1-3x3-1x1 with ``bottleneck``, with batchnorm."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, bottleneck: bool, act: type[nn.Module]) -> None:
        super().__init__()
        mid = max(1, out_ch // 4) if bottleneck else out_ch
        if bottleneck:
            convs = [(in_ch, mid, 1, 1), (mid, mid, 3, stride), (mid, out_ch, 1, 1)]
        else:
            convs = [(in_ch, mid, 3, stride), (mid, out_ch, 3, 1)]
        layers: list[nn.Module] = []
        for i, (cin, cout, k, s) in enumerate(convs):
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]
            if i < len(convs) - 1:
                layers.append(act())
        self.residual = nn.Sequential(*layers)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            projection = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
            self.shortcut = nn.Sequential(projection, nn.BatchNorm2d(out_ch))
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.residual(x) + self.shortcut(x))


def _resnet(cfg: ResNetConfig, shape: tuple[int, int, int], num_classes: int) -> list[nn.Module]:
    act = ACTIVATIONS[cfg.activation]
    width = cfg.channels[0]
    layers: list[nn.Module] = [nn.Conv2d(shape[0], width, 3, padding=1, bias=False), nn.BatchNorm2d(width), act()]
    side = min(shape[1:])
    for stage, out_ch in enumerate(cfg.channels):
        for block in range(cfg.layers_per_block):
            stride = 2 if stage > 0 and block == 0 and side >= 2 else 1  # halve the map when entering a stage
            side //= stride
            layers.append(ResidualBlock(width, out_ch, stride, cfg.bottleneck, act))
            width = out_ch
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return [*layers, *_head(width, cfg, num_classes)]


_BUILDERS: dict[type, Callable[..., list[nn.Module]]] = {MLPConfig: _mlp, CNNConfig: _cnn, ResNetConfig: _resnet}


Stats = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and std of the training inputs


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...], num_classes: int, stats: Stats | None) -> nn.Sequential:
    """The classifier of ``cfg`` for inputs of ``input_shape`` (C, H, W) in [0, 1]; ``stats`` (per-channel mean and
    std) makes it standardise its input first, None feeds it the inputs as they are (``data.preprocess``).

    Convolutional models hold their weights channels-last: oneDNN and cuDNN pick faster kernels for it, which
    makes training and DeepFool's many backward passes 1.2-1.4x faster on CPU (benchmarks/deepfool.py).
    """
    first: list[nn.Module] = [Normalize(*stats)] if stats is not None else []
    if cfg.input_dropout > 0:
        first.append(nn.Dropout(cfg.input_dropout))
    model = nn.Sequential(*first, *_BUILDERS[type(cfg)](cfg, input_shape, num_classes))
    return model if isinstance(cfg, MLPConfig) else model.to(memory_format=torch.channels_last)
