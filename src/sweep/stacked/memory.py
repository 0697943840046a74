"""How many trials one stack may hold (:func:`stack_cap`), and :func:`split` into stacks of at most that many.

Per trial, a stack holds the weights with their gradients, the optimizer's state and its temporaries, the
activations of a training batch kept for the backward pass, and an evaluation batch copied for the trial. On CUDA
the cap is what the free device memory (``torch.cuda.mem_get_info``) holds, with a margin. On the CPU memory is
not the limit but the caches are: past a point a bigger stack only streams more weights and optimizer state through
memory per step, and the speed-up over sequential trials stops growing (``_CPU_BUDGET`` gives the measurement).
There a stack also holds a multiple of the threads: a batched product hands each thread whole trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch

from sweep.config import RMSpropConfig, SGDConfig, TrialConfig
from sweep.data import Dataset
from sweep.models import build_model

# CPU: stack until the trials' training working sets (trial_bytes without the evaluation batch) add up to this, in
# a multiple of the threads. Measured with `benchmarks/stacked.py --sizes 1 2 3 4 6 8 --epochs 2` on the 784-512-10
# MLP with SGD + momentum (8.3 MB per trial at batch 16 by trial_bytes; 4.9 MB of weights, gradients and momentum),
# on this machine's 2 EPYC cores (1 MB L2 each, 32 MB L3), best of 3, per trial against sequential fits:
#   batch 16:  T=2 1.30x, 3 1.11x, 4 1.26x, 6 1.07x, 8 1.18x
#   batch 64:  T=2 1.16x, 3 0.97x, 4 1.19x, 6 1.05x, 8 1.09x
#   batch 256: T=2 1.03x, 3 0.78x, 4 0.96x, 6 0.96x, 8 0.94x
# Past 4 trials (about 35 MB) the stack no longer fits the L3 and its weights, gradients and momentum stream from
# memory on every step; odd sizes lose because a bmm hands each thread whole products (3 split 2:1). The small CNN
# (30 MB per trial at batch 16) gets a cap of 1, rightly: its convolutions are compute-bound, and one stack of 8 ran
# at 0.59x to 0.91x of sequential fits (benchmarks/stacked.py --models cnn --epochs 1 --runs 2).
_CPU_BUDGET = 36 * 2**20
_CUDA_MARGIN = 0.8  # share of the free device memory a stack may plan to use: the allocator fragments the rest
_FLOAT = 4  # bytes: stacks train in float32

T = TypeVar("T")


def trial_bytes(cfg: TrialConfig, data: Dataset, evaluation: bool = True) -> int:
    """Bytes one trial of ``cfg`` adds to a stack training on ``data``: weights, gradients, optimizer state and
    temporaries, a training batch's activations, and (with ``evaluation``) its copy of an evaluation batch."""
    with torch.device("meta"):  # shapes only: no memory, no compute, and the global random stream is left alone
        model = build_model(cfg.model, data.input_shape, data.num_classes, None)
        sizes: list[int] = []
        hooks = [layer.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for layer in model]
        model(torch.empty(1, *data.input_shape))
    for hook in hooks:
        hook.remove()
    weights = sum(p.numel() for p in model.parameters())
    per_example = sum(sizes)  # every layer's output is kept for the backward pass, and its gradient flows back
    total = weights * (2 + _optimizer_state(cfg) + 2) + cfg.train.batch_size * 2 * per_example
    if evaluation:
        batch = min(cfg.train.eval_batch_size, max(len(data.val), len(data.test)))
        total += batch * (math.prod(data.input_shape) + 2 * max(sizes))
    return _FLOAT * total


def stack_cap(cfg: TrialConfig, data: Dataset, budget: int | None = None) -> int:
    """The most trials like ``cfg`` one stack should hold on ``data``'s device: what fits ``budget`` bytes, by
    default the free CUDA memory (with a margin) or, on the CPU, the working set past which stacking stops paying."""
    device = data.train.y.device
    if budget is None and device.type == "cuda":
        budget = int(torch.cuda.mem_get_info(device)[0] * _CUDA_MARGIN)
    if budget is None:
        cap, threads = _CPU_BUDGET // trial_bytes(cfg, data, evaluation=False), torch.get_num_threads()
        return max(1, cap - cap % threads if cap >= threads else cap)
    return max(1, budget // trial_bytes(cfg, data))


def split(trials: Sequence[T], cap: int) -> list[list[T]]:
    """``trials`` in order, cut into the fewest stacks of at most ``cap``, as even as they come (10 trials at cap 8:
    5 and 5, not 8 and 2: the stragglers of an uneven split would run at a small stack's poor speed)."""
    stacks = math.ceil(len(trials) / max(1, cap))
    size, extra = divmod(len(trials), stacks) if stacks else (0, 0)
    bounds = [i * size + min(i, extra) for i in range(stacks + 1)]
    return [list(trials[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def _optimizer_state(cfg: TrialConfig) -> int:
    """Tensors of state per weight the optimizer of ``cfg`` keeps."""
    opt = cfg.optimizer
    if isinstance(opt, SGDConfig):
        return int(opt.momentum > 0)
    if isinstance(opt, RMSpropConfig):
        return 1 + int(opt.momentum > 0) + int(opt.centered)
    return 2 + int(opt.amsgrad)
