"""Batched products (matrix products, grouped convolutions, batchnorm) that give, bit for bit, what each trial's
unstacked ``nn.Linear``, ``nn.Conv2d`` and ``nn.BatchNorm2d`` compute.

MKL and oneDNN pick their kernels by shape, layout and thread count, and a batched product is not split like the T
products it replaces: a ``bmm`` runs each slice on one thread, while one ``mm`` may split a product over both
threads of this machine; a convolution with ``groups=T`` hands each thread whole groups, while one convolution's
weight gradient sums the batch over both threads; batchnorm vectorises over the channels, T*C of them stacked. The
two then round differently (about 1e-6 relative): with 2 threads the output layer's weight gradient
(10 x B) @ (B x 512), most convolutions' weight gradients and batchnorm's input gradient with 4 channels differ, the
784-512 layer's products and every convolution's forward pass and input gradient do not. Rather than guess these
libraries' rules, each batched product is compared once per shape, layout and thread count with the per-trial calls
it replaces, on random data of the same shapes and layouts, and replaced by them where the two differ. The
per-trial calls are the unstacked model's own: ``torch.addmm`` as ``F.linear`` makes it, ``mm`` and ``sum`` as
``AddmmBackward0`` makes them, ``conv2d`` and ``convolution_backward`` as ``ConvolutionBackward0`` makes them,
``native_batch_norm`` and its backward, each on its trial's slice in the unstacked model's memory format. On CUDA
the batched forms are always used: cuBLAS and cuDNN promise no bitwise agreement between batched and single kernels
either way, and a per-trial loop there would cost T kernel launches per product.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ConvOptions = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]  # stride, padding, dilation, trials
NormOptions = tuple[bool, float, float, int]  # training, momentum, eps, trials


def addmm(bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight^T + bias`` per trial: (T, N), (T, B, K), (T, N, K) -> (T, B, N), as ``F.linear`` computes it."""
    return _run(_addmm_batched, _addmm_single, bias, x, weight)


def weight_grad(grad: Tensor, x: Tensor) -> Tensor:
    """``grad^T @ x`` per trial: (T, B, N), (T, B, K) -> (T, N, K), the weight gradient autograd gives ``nn.Linear``."""
    return _run(_weight_grad_batched, _weight_grad_single, grad, x)


def input_grad(grad: Tensor, weight: Tensor) -> Tensor:
    """``grad @ weight`` per trial: (T, B, N), (T, N, K) -> (T, B, K), the input gradient of ``nn.Linear``."""
    return _run(_input_grad_batched, _input_grad_single, grad, weight)


def bias_grad(grad: Tensor) -> Tensor:
    """``grad`` summed over the batch per trial: (T, B, N) -> (T, N), the bias gradient of ``nn.Linear``."""
    return _run(_bias_grad_batched, _bias_grad_single, grad)


def conv(x: Tensor, weight: Tensor, bias: Tensor | None, options: ConvOptions) -> Tensor:
    """Every trial's ``conv2d`` on the grouped layout: x (B, T*C, H, W), weight (T*O, C, kh, kw), bias (T*O,)."""
    return _run(_conv_batched, _conv_single, x, weight, bias, options)


def conv_input_grad(grad: Tensor, x: Tensor, weight: Tensor, options: ConvOptions) -> Tensor:
    """The gradient of :func:`conv`'s input, (B, T*C, H, W), for ``grad`` (B, T*O, H', W')."""
    return _run(_conv_input_grad_batched, _conv_input_grad_single, grad, x, weight, options)


def conv_weight_grad(grad: Tensor, x: Tensor, weight: Tensor, bias: bool,
                     options: ConvOptions) -> tuple[Tensor, Tensor | None]:
    """The gradients of :func:`conv`'s weight and (with ``bias``) bias for ``grad`` (B, T*O, H', W')."""
    out: tuple[Tensor, Tensor | None] = _run(_conv_weight_grad_batched, _conv_weight_grad_single, grad, x, weight,
                                             bias, options)
    return out


def batch_norm(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
               options: NormOptions) -> tuple[Tensor, Tensor, Tensor]:
    """Every trial's ``native_batch_norm`` on the grouped layout (x (B, T*C, H, W), the rest (T*C,)): the output and
    the batch's mean and inverse std; in training, ``mean`` and ``var`` (the running statistics) update in place."""
    out, save_mean, save_invstd, _, _ = _run(_norm_batched, _norm_single, x, weight, bias, mean, var, options)
    return out, save_mean, save_invstd


def batch_norm_grads(grad: Tensor, x: Tensor, weight: Tensor, save_mean: Tensor, save_invstd: Tensor,
                     options: NormOptions) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of :func:`batch_norm`'s input, weight and bias in training, for ``grad`` (B, T*C, H, W)."""
    grads: tuple[Tensor, Tensor, Tensor] = _run(_norm_grads_batched, _norm_grads_single, grad, x, weight, save_mean,
                                                save_invstd, options)
    return grads


def _addmm_batched(bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _addmm_single(bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    return torch.stack([torch.addmm(b, xi, w.t()) for b, xi, w in zip(bias, x, weight, strict=True)])


def _weight_grad_batched(grad: Tensor, x: Tensor) -> Tensor:
    return torch.bmm(grad.transpose(1, 2), x)


def _weight_grad_single(grad: Tensor, x: Tensor) -> Tensor:
    return torch.stack([g.t().mm(xi) for g, xi in zip(grad, x, strict=True)])


def _input_grad_batched(grad: Tensor, weight: Tensor) -> Tensor:
    return torch.bmm(grad, weight)


def _input_grad_single(grad: Tensor, weight: Tensor) -> Tensor:
    return torch.stack([g.mm(w) for g, w in zip(grad, weight, strict=True)])


def _bias_grad_batched(grad: Tensor) -> Tensor:
    return grad.sum(1)


def _bias_grad_single(grad: Tensor) -> Tensor:
    return torch.stack([g.sum(0) for g in grad])


def _conv_batched(x: Tensor, weight: Tensor, bias: Tensor | None, options: ConvOptions) -> Tensor:
    return F.conv2d(x, weight, bias, *options)


def _conv_single(x: Tensor, weight: Tensor, bias: Tensor | None, options: ConvOptions) -> Tensor:
    stride, padding, dilation, trials = options
    biases = _per_trial(bias, trials, 0) if bias is not None else [None] * trials
    outs = [F.conv2d(xi, w, b, stride, padding, dilation)
            for xi, w, b in zip(_per_trial(x, trials, 1), _per_trial(weight, trials, 0), biases, strict=True)]
    return torch.cat(outs, 1).contiguous(memory_format=torch.channels_last)


def _conv_backward(grad: Tensor, x: Tensor, weight: Tensor, bias: bool, options: ConvOptions, groups: int,
                   mask: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    stride, padding, dilation, _ = options
    sizes = [weight.shape[0]] if bias else None
    return torch.ops.aten.convolution_backward(grad, x, weight, sizes, stride, padding, dilation, False, [0, 0],
                                               groups, mask)


def _conv_input_grad_batched(grad: Tensor, x: Tensor, weight: Tensor, options: ConvOptions) -> Tensor:
    return _conv_backward(grad, x, weight, False, options, options[3], [True, False, False])[0]


def _conv_input_grad_single(grad: Tensor, x: Tensor, weight: Tensor, options: ConvOptions) -> Tensor:
    trials = options[3]
    parts = zip(_per_trial(grad, trials, 1), _per_trial(x, trials, 1), _per_trial(weight, trials, 0), strict=True)
    grads = [_conv_backward(g, xi, w, False, options, 1, [True, False, False])[0] for g, xi, w in parts]
    return torch.cat(grads, 1).contiguous(memory_format=torch.channels_last)


def _conv_weight_grad_batched(grad: Tensor, x: Tensor, weight: Tensor, bias: bool,
                              options: ConvOptions) -> tuple[Tensor, Tensor | None]:
    _, grad_w, grad_b = _conv_backward(grad, x, weight, bias, options, options[3], [False, True, bias])
    return grad_w, grad_b


def _conv_weight_grad_single(grad: Tensor, x: Tensor, weight: Tensor, bias: bool,
                             options: ConvOptions) -> tuple[Tensor, Tensor | None]:
    trials = options[3]
    parts = zip(_per_trial(grad, trials, 1), _per_trial(x, trials, 1), _per_trial(weight, trials, 0), strict=True)
    grads = [_conv_backward(g, xi, w, bias, options, 1, [False, True, bias]) for g, xi, w in parts]
    grad_w = torch.cat([g[1] for g in grads]).contiguous(memory_format=torch.channels_last)
    return grad_w, torch.cat([g[2] for g in grads]) if bias else None


def _norm_batched(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                  options: NormOptions) -> tuple[Tensor, ...]:
    training, momentum, eps, _ = options
    return (*torch.ops.aten.native_batch_norm(x, weight, bias, mean, var, training, momentum, eps), mean, var)


def _norm_single(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, var: Tensor,
                 options: NormOptions) -> tuple[Tensor, ...]:
    training, momentum, eps, trials = options
    parts = zip(_per_trial(x, trials, 1), *(t.chunk(trials) for t in (weight, bias, mean, var)), strict=True)
    outs = [torch.ops.aten.native_batch_norm(*part, training, momentum, eps) for part in parts]  # stats: views
    out = torch.cat([o[0] for o in outs], 1).contiguous(memory_format=torch.channels_last)
    return out, torch.cat([o[1] for o in outs]), torch.cat([o[2] for o in outs]), mean, var


def _norm_grads_batched(grad: Tensor, x: Tensor, weight: Tensor, save_mean: Tensor, save_invstd: Tensor,
                        options: NormOptions) -> tuple[Tensor, Tensor, Tensor]:
    return torch.ops.aten.native_batch_norm_backward(grad, x, weight, None, None, save_mean, save_invstd, True,
                                                     options[2], [True, True, True])


def _norm_grads_single(grad: Tensor, x: Tensor, weight: Tensor, save_mean: Tensor, save_invstd: Tensor,
                       options: NormOptions) -> tuple[Tensor, Tensor, Tensor]:
    trials = options[3]
    parts = zip(_per_trial(grad, trials, 1), _per_trial(x, trials, 1),
                *(t.chunk(trials) for t in (weight, save_mean, save_invstd)), strict=True)
    grads = [_norm_grads_batched(g, xi, w, m, s, options) for g, xi, w, m, s in parts]
    grad_x = torch.cat([g[0] for g in grads], 1).contiguous(memory_format=torch.channels_last)
    return grad_x, torch.cat([g[1] for g in grads]), torch.cat([g[2] for g in grads])


def _per_trial(tensor: Tensor, trials: int, dim: int) -> list[Tensor]:
    """Each trial's part of a grouped tensor, laid out as the unstacked model holds it (channels-last when 4-D)."""
    layout = torch.channels_last if tensor.dim() == 4 else torch.contiguous_format
    return [part.contiguous(memory_format=layout) for part in tensor.chunk(trials, dim)]


Product = Callable[..., Any]
_VERDICTS: dict[tuple[Any, ...], bool] = {}


def _run(batched: Product, single: Product, *args: Any) -> Any:
    """``batched(*args)`` where it gives what ``single(*args)`` gives bitwise (always on CUDA), else ``single``."""
    device = next(a.device for a in args if isinstance(a, Tensor))
    if device.type != "cpu":
        return batched(*args)
    key = (batched.__name__, torch.get_num_threads(),
           *((tuple(a.shape), a.stride()) if isinstance(a, Tensor) else a for a in args))
    if key not in _VERDICTS:
        _VERDICTS[key] = _agree(batched, single, args)
    return (batched if _VERDICTS[key] else single)(*args)


def _agree(batched: Product, single: Product, args: tuple[Any, ...]) -> bool:
    """Whether ``batched`` and ``single`` agree bitwise on random data shaped and laid out as ``args``."""
    rng = torch.Generator().manual_seed(0)  # never the global stream: a trial's dropout may draw from it next

    def like(a: Any) -> Any:
        if not isinstance(a, Tensor):
            return a
        return torch.empty_strided(a.shape, a.stride()).copy_(torch.randn(a.shape, generator=rng))

    probe = [like(a) for a in args]

    def copies() -> list[Any]:  # each call its own: batch_norm updates its running statistics in place
        return [a.clone() if isinstance(a, Tensor) else a for a in probe]

    outs = batched(*copies()), single(*copies())
    pairs = zip(*outs, strict=True) if isinstance(outs[0], tuple) else [outs]
    return all((b is None and s is None) or torch.equal(b, s) for b, s in pairs)
