"""The models of a stack's trials as one model whose weights carry a leading trial dimension T.

Each trial's ordinary model is built and initialised first, exactly as ``sweep.trial.run_trial`` builds it, and its
parameters are stacked: the initial weights are those of the unstacked run, bit for bit. Activations flow in two
layouts: (T, B, ...) through the fully connected layers (batched matrix products) and (B, T*C, H, W) channels-last
through the convolutions: trial t's channels are the t-th group of C, so one convolution with ``groups=T`` computes
every trial's and batchnorm's per-channel statistics are each trial's own. Each product goes through
:mod:`sweep.stacked.products`, which keeps it bitwise equal to the unstacked one. ``unstack(i)`` puts trial i's
weights back into its own model, so the measures run on it unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sweep.stacked import products
from sweep.stacked.dropout import dropout

Stage = Callable[[Tensor, "StackedModel"], Tensor]


class StackedModel:
    """T compatible trials' models as one; ``forward`` maps inputs (T, B, C, H, W) to logits (T, B, classes).

    ``params`` are the stacked leaves, in the order of each trial's ``model.parameters()``, so an optimizer's
    per-parameter state lines up with the unstacked one's. ``streams`` are the trials' dropout streams.
    """

    def __init__(self, models: Sequence[nn.Sequential], streams: Sequence[torch.Generator],
                 device: torch.device) -> None:
        self.templates = [m.cpu() for m in models]  # each trial's own model (now the stack's), to unstack into
        self.streams = list(streams)
        self.device = device
        self.training = True
        self.batches = 0  # training batches seen: batchnorm's num_batches_tracked when unstacked
        self.stages, self.drop_p = _compile(models, device)
        self.params = [torch.stack([p.detach() for p in ps]).to(device).contiguous().requires_grad_()
                       for ps in zip(*(m.parameters() for m in models), strict=True)]
        self.norm_stats = [torch.stack([getattr(bn, name).detach() for bn in bns]).to(device)
                           for bns in zip(*(_batchnorms(m) for m in models), strict=True)
                           for name in ("running_mean", "running_var")]

    def __len__(self) -> int:
        return len(self.templates)

    def __call__(self, x: Tensor) -> Tensor:
        if self.training:
            self.batches += 1
        for stage in self.stages:
            x = stage(x, self)
        return x

    def train(self, mode: bool = True) -> None:
        self.training = mode

    def eval(self) -> None:
        self.training = False

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only the trials at ``rows`` (positions in the stack), in that order: the others leave it."""
        index = torch.tensor(list(rows), device=self.device)
        self.params = [p.detach()[index].requires_grad_() for p in self.params]
        self.norm_stats = [s[index] for s in self.norm_stats]
        self.templates = [self.templates[i] for i in rows]
        self.streams = [self.streams[i] for i in rows]
        self.drop_p = [[ps[i] for i in rows] for ps in self.drop_p]

    def unstack(self, i: int) -> nn.Sequential:
        """Trial ``i``'s weights (and batchnorm statistics) in an ordinary model of its own, on the stack's device."""
        model = copy.deepcopy(self.templates[i]).to(self.device)
        with torch.no_grad():
            for p, stacked in zip(model.parameters(), self.params, strict=True):
                p.copy_(stacked[i])
            stats = iter(self.norm_stats)
            for bn in _batchnorms(model):
                bn.get_buffer("running_mean").copy_(next(stats)[i])
                bn.get_buffer("running_var").copy_(next(stats)[i])
                bn.get_buffer("num_batches_tracked").fill_(self.batches)
        return model


def _batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def _skeleton(model: nn.Sequential) -> tuple[list[nn.Module], dict[int, float]]:
    """The model's layers but its Dropout layers, and each dropout's probability keyed by the number of layers
    before it: trials of a stack share the layers, while a dropout of probability 0 is not built at all."""
    layers: list[nn.Module] = []
    drops: dict[int, float] = {}
    for module in model:
        if isinstance(module, nn.Dropout):
            drops[len(layers)] = module.p
        else:
            layers.append(module)
    return layers, drops


def _compile(models: Sequence[nn.Sequential], device: torch.device) -> tuple[list[Stage], list[list[float]]]:
    """The stages of the stacked forward pass, and each dropout slot's probability per trial."""
    skeletons = [_skeleton(m) for m in models]
    layers = skeletons[0][0]
    if any([type(m) for m in s] != [type(m) for m in layers] for s, _ in skeletons):
        raise ValueError("trials of a stack must share their architecture (sweep.stacked.key.stack_key)")
    slots = sorted({k for _, drops in skeletons for k in drops})
    drop_p = [[drops.get(k, 0.0) for _, drops in skeletons] for k in slots]
    stages: list[Stage] = []
    param = norms = 0
    for position, layer in enumerate([*layers, None]):
        if position in slots:
            stages.append(_Dropout(slots.index(position)))
        if layer is None:
            break
        stages.append(_stage(layer, param, norms, device))
        param += len(list(layer.parameters()))
        norms += isinstance(layer, nn.BatchNorm2d)
    return stages, drop_p


def _stage(layer: nn.Module, param: int, norms: int, device: torch.device) -> Stage:
    """The stacked form of one layer whose parameters start at index ``param`` of the stack's parameters, after
    ``norms`` batchnorm layers."""
    if isinstance(layer, nn.Linear):
        return _Linear(param)
    if isinstance(layer, nn.Conv2d):
        return _Conv(layer, param)
    if isinstance(layer, nn.BatchNorm2d):
        return _BatchNorm(layer, param, 2 * norms)
    if isinstance(layer, nn.Flatten):
        return _flatten
    if any(True for _ in layer.parameters()):
        raise ValueError(f"{type(layer).__name__} layers cannot be stacked")
    return _Apply(copy.deepcopy(layer).to(device))  # activations, pooling, Normalize: the same for every trial


class _Apply:
    """A layer without weights, the same for every trial (activation, max-pool, input standardisation), applied to
    the stacked tensor as it is: elementwise or per channel, it never mixes trials."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, x: Tensor, net: StackedModel) -> Tensor:
        return self.layer(x)


class _Dropout:
    """Each trial's dropout (probability 0 where its model has none), with its own masks; nothing in evaluation."""

    def __init__(self, slot: int) -> None:
        self.slot = slot

    def __call__(self, x: Tensor, net: StackedModel) -> Tensor:
        return dropout(x, net.drop_p[self.slot], net.streams) if net.training else x


class _LinearFunction(torch.autograd.Function):
    """``nn.Linear`` per trial, forward and backward, through :mod:`sweep.stacked.products`: autograd's own
    backward of ``baddbmm`` would compute the weight gradient as ``x^T @ grad``, not as ``grad^T @ x`` as it does
    for ``F.linear``, and round differently."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return products.addmm(bias, x, weight)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        x, weight = ctx.saved_tensors
        grad_x = products.input_grad(grad, weight) if ctx.needs_input_grad[0] else None
        return grad_x, products.weight_grad(grad, x), products.bias_grad(grad)


class _Linear:
    """``nn.Linear`` per trial on the (T, B, features) layout."""

    def __init__(self, param: int) -> None:
        self.param = param

    def __call__(self, x: Tensor, net: StackedModel) -> Tensor:
        out: Tensor = _LinearFunction.apply(x, net.params[self.param], net.params[self.param + 1])
        return out


def _flatten(x: Tensor, net: StackedModel) -> Tensor:
    """(T, B, C, H, W) or the convolutions' (B, T*C, H, W) to (T, B, C*H*W), each trial's features in the order
    ``nn.Flatten`` gives them."""
    if x.dim() == 4:
        x = x.unflatten(1, (len(net), -1)).transpose(0, 1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _grouped(x: Tensor) -> Tensor:
    """(T, B, C, H, W) as (B, T*C, H, W) channels-last: trial t's channels are the t-th group of C."""
    if x.dim() == 4:
        return x
    t, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, t * c, h, w).contiguous(memory_format=torch.channels_last)


class _ConvFunction(torch.autograd.Function):
    """``nn.Conv2d`` per trial as one convolution with ``groups=T``, forward and backward, through
    :mod:`sweep.stacked.products`, which falls back to per-trial convolutions where the grouped one rounds apart."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, options: products.ConvOptions) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.options, ctx.bias = options, bias is not None
        return products.conv(x, weight, bias, options)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = products.conv_input_grad(grad, x, weight, ctx.options) if ctx.needs_input_grad[0] else None
        grad_w, grad_b = products.conv_weight_grad(grad, x, weight, ctx.bias, ctx.options)
        return grad_x, grad_w, grad_b, None


class _Conv:
    """``nn.Conv2d`` per trial on the (B, T*C, H, W) channels-last layout, the unstacked model's memory format."""

    def __init__(self, layer: nn.Conv2d, param: int) -> None:
        if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ValueError("only plain convolutions (groups=1, zero padding) can be stacked")
        self.param, self.bias = param, layer.bias is not None
        self.options = tuple(layer.stride), tuple(layer.padding), tuple(layer.dilation)

    def __call__(self, x: Tensor, net: StackedModel) -> Tensor:
        weight = net.params[self.param]
        # .to, not .contiguous: with one input channel both layouts fit the same memory, and .contiguous would keep
        # the contiguous strides, from which the convolution picks its slower, differently rounding NCHW kernels
        weight = weight.reshape(-1, *weight.shape[2:]).to(memory_format=torch.channels_last)
        bias = net.params[self.param + 1].reshape(-1) if self.bias else None
        out: Tensor = _ConvFunction.apply(_grouped(x), weight, bias, (*self.options, len(net)))
        return out


class _BatchNormFunction(torch.autograd.Function):
    """``nn.BatchNorm2d`` per trial, forward and backward, through :mod:`sweep.stacked.products`: on the grouped
    layout its per-channel statistics are per trial, but its kernels vectorise over the channels, so with few
    channels per trial the stacked call can round apart and falls back to per-trial calls."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                options: products.NormOptions) -> Tensor:
        out, save_mean, save_invstd = products.batch_norm(x, weight, bias, mean, var, options)
        ctx.save_for_backward(x, weight, save_mean, save_invstd)
        ctx.options = options
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None, None]:
        x, weight, save_mean, save_invstd = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x, grad_w, grad_b = products.batch_norm_grads(grad, x, weight, save_mean, save_invstd, ctx.options)
        return grad_x, grad_w, grad_b, None, None, None


class _BatchNorm:
    """``nn.BatchNorm2d`` per trial on the (B, T*C, H, W) layout, each trial with its own running statistics."""

    def __init__(self, layer: nn.BatchNorm2d, param: int, stats: int) -> None:
        if layer.momentum is None or not layer.track_running_stats or not layer.affine:
            raise ValueError("only affine batchnorm with running statistics and a momentum can be stacked")
        self.param, self.stats, self.momentum, self.eps = param, stats, layer.momentum, layer.eps

    def __call__(self, x: Tensor, net: StackedModel) -> Tensor:
        mean, var = net.norm_stats[self.stats].view(-1), net.norm_stats[self.stats + 1].view(-1)
        weight, bias = net.params[self.param].reshape(-1), net.params[self.param + 1].reshape(-1)
        options = (net.training, self.momentum, self.eps, len(net))
        out: Tensor = _BatchNormFunction.apply(_grouped(x), weight, bias, mean, var, options)
        return out
