"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard, CVPR 2016): the smallest L2 step that changes a prediction.

``deepfool`` runs the multi-class L2 attack on a whole batch at once, with no Python loop over samples. Each
iteration needs the input gradients of ``k - 1`` logit gaps (k candidate classes) for the samples still unfooled,
taken one of two ways: on a CPU, which is bound by arithmetic, one forward pass and ``k - 1`` backward passes (the
fewest operations); on a GPU, which is bound by kernel launches, one forward and one backward pass over ``k - 1``
copies of the batch (the fewest launches: 2x faster for an MLP on an H100, level for a small CNN, ``k - 1`` times
the memory; benchmarks/deepfool.py). A CPU attacks the batch in cache-sized blocks of rows. It follows the original
code where the paper is silent: the reference class is the model's own prediction at x, the candidates are the top-k
classes at x fixed once, and each step linearises at ``x + (1 + overshoot) * r_total``. Where the original code adds
1e-4 to every step's length (so a step never lands exactly on the boundary), this one lengthens the step by a
relative 1e-5: the same safeguard, without biasing small margins, so a linear model's margin comes out exact.

A trial measures its final model with it through ``sweep.measures.deepfool`` (the margin statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
from hydra_optuna_studies.errors import check
from torch import nn

_STEP_STRETCH = 1.0 + 1e-5  # each step goes this much past its linearised boundary
_CPU_PASS_BYTES = 8 << 20  # largest block of one pass on a CPU: cache-sized (see _rows_per_pass)
_GPU_PASS_BYTES = 1 << 30  # and on a GPU: bounds memory


@dataclass
class DeepFoolResult:
    """Per-sample outcome of :func:`deepfool`; every tensor has the batch as its first dimension."""

    norm: torch.Tensor  # L2 norm of the final perturbation, overshoot included
    rho: torch.Tensor  # norm / ||x||: the paper's per-sample robustness
    iterations: torch.Tensor  # steps taken (int64)
    success: torch.Tensor  # bool: the perturbed input's prediction differs from the original one
    perturbed: torch.Tensor  # x + perturbation
    original: torch.Tensor  # the model's prediction at x: the class DeepFool moves away from

    @classmethod
    def cat(cls, parts: list[DeepFoolResult]) -> DeepFoolResult:
        """The results of consecutive slices of a batch, as one."""
        return cls(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)})


def deepfool(
    model: nn.Module,
    inputs: torch.Tensor,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int | None = None,
    *,
    replicate: bool | None = None,
    batch_size: int | None = None,
) -> DeepFoolResult:
    """Minimal L2 perturbations of ``inputs`` that change ``model``'s prediction, found with DeepFool.

    Args:
        model: maps a batch of inputs to class logits; measured in eval mode, its mode is restored after.
        inputs: a batch in the model's input space, e.g. (B, C, H, W) pixels in [0, 1].
        overshoot: the final perturbation is ``(1 + overshoot) * r`` to step across the boundary.
        max_iter: most linearisation steps per sample.
        candidates: consider only the top-k classes at x (k >= 2); ``None`` means every class.
        replicate: take the k - 1 gradients in one backward pass over k - 1 copies of the batch instead of
            k - 1 passes; ``None`` does so on GPUs only. The same result either way, up to float rounding.
        batch_size: rows attacked together; ``None`` takes as many as keep the largest block of a pass under 8 MB
            on a CPU (cache) and 1 GiB on a GPU (memory); see :func:`_rows_per_pass`.

    Returns:
        A :class:`DeepFoolResult`; samples with ``success`` False did not cross within ``max_iter`` steps.

    Example:
        >>> result = deepfool(model, images[:1000])
        >>> result.norm[result.success].mean()
    """
    check(overshoot >= 0, "deepfool.overshoot", f"must be >= 0, got {overshoot}")
    check(max_iter >= 1, "deepfool.max_iter", f"must be >= 1, got {max_iter}")
    check(batch_size is None or batch_size >= 1, "deepfool.batch_size", f"must be >= 1 or null, got {batch_size}")
    check(len(inputs) > 0, "deepfool inputs", "need at least one sample, got an empty batch")
    inputs = inputs.detach()
    was_training = model.training
    weights = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in weights:  # input gradients only: a graph without weight gradients is a quarter cheaper
        p.requires_grad_(False)
    try:
        replicate = inputs.device.type == "cuda" if replicate is None else replicate
        rows = batch_size or _rows_per_pass(model, inputs, candidates, replicate)
        with _full_float32():
            parts = [_deepfool(model, x, overshoot, max_iter, candidates, replicate) for x in inputs.split(rows)]
        return DeepFoolResult.cat(parts)
    finally:
        model.train(was_training)
        for p in weights:
            p.requires_grad_(True)


def _rows_per_pass(model: nn.Module, inputs: torch.Tensor, candidates: int | None, replicate: bool) -> int:
    """Rows attacked together: as many as keep a pass's largest block (an activation of all its copies, or the k - 1
    input gradients) within a budget. On a CPU 8 MB: larger blocks fall out of cache, and glibc returns blocks over
    32 MB to the OS, so every pass page-faults them in afresh (on the CNN of benchmarks/deepfool.py, attacking 1,000
    rows at once took 1.1x to 1.4x as long: its "one block" column). On a GPU 1 GiB, which bounds memory and still
    takes 1,000 rows of the benchmark's models at once (bigger passes mean fewer launches)."""
    widest = 0

    def note(_module: nn.Module, _args: object, out: object) -> None:
        nonlocal widest
        if isinstance(out, torch.Tensor):
            widest = max(widest, out[0].numel())

    hooks = [m.register_forward_hook(note) for m in model.modules()]
    try:
        with torch.no_grad():
            classes = model(inputs[:1]).shape[1]
    finally:
        for hook in hooks:
            hook.remove()
    gaps = (candidates or classes) - 1
    row = max(widest * (gaps if replicate else 1), gaps * inputs[0].numel()) * inputs.element_size()
    budget = _GPU_PASS_BYTES if inputs.device.type == "cuda" else _CPU_PASS_BYTES
    return max(1, budget // row)


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """Full float32 arithmetic for the measurement: cuDNN runs float32 convolutions in TF32 (10-bit mantissa) by
    default on recent GPUs, which moved CNN margins by about 1% on an H100."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul  # type: ignore[attr-defined]  # torch>=2.9
    saved = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved


def _deepfool(
    model: nn.Module, x0: torch.Tensor, overshoot: float, max_iter: int, k: int | None, replicate: bool
) -> DeepFoolResult:
    if replicate:
        with torch.no_grad():
            graph, logits = None, model(x0)
    else:  # the first step linearises at x itself: the pass that finds the candidates serves it too
        graph = _forward(model, x0, 1)
        logits = graph[1][0].detach()
    num_classes = logits.shape[1]
    k = num_classes if k is None else k
    check(2 <= k <= num_classes, "deepfool.candidates", f"must be in [2, {num_classes}] or null, got {k}")
    classes = logits.topk(k, dim=1).indices  # (B, k); column 0 is the prediction
    original = classes[:, 0]
    batch = x0.shape[0]
    r_total = torch.zeros_like(x0)
    iterations = torch.zeros(batch, dtype=torch.long, device=x0.device)
    success = torch.zeros(batch, dtype=torch.bool, device=x0.device)
    active = torch.arange(batch, device=x0.device)
    scale = 1.0 + overshoot
    for _ in range(max_iter):
        point = x0[active] + scale * r_total[active]
        unfooled, gaps, grads = _linearise(model, point, classes[active], replicate, graph)
        graph = None
        success[active[~unfooled]] = True
        active = active[unfooled]
        if len(active) == 0:
            break
        # gaps (A, k-1): f_k - f_orig; grads (A, k-1, D): w_k - w_orig, for the still unfooled rows
        w_norm = grads.norm(dim=2).clamp_min(1e-12)
        distance = gaps.abs() / w_norm  # distance to each linearised boundary
        best = distance.argmin(dim=1, keepdim=True)
        step_len = distance.gather(1, best) * _STEP_STRETCH  # (A, 1)
        w_best = grads.gather(1, best.unsqueeze(2).expand(-1, 1, grads.shape[2])).squeeze(1)
        step = (step_len / w_norm.gather(1, best)) * w_best  # (A, D)
        r_total[active] += step.view(-1, *x0.shape[1:])
        iterations[active] += 1
    if len(active):  # rows that took max_iter steps: did the last one cross?
        with torch.no_grad():
            success[active] = model(x0[active] + scale * r_total[active]).argmax(1) != original[active]
    perturbation = scale * r_total
    norm = perturbation.flatten(1).norm(dim=1)
    return DeepFoolResult(
        norm=norm,
        rho=norm / x0.flatten(1).norm(dim=1).clamp_min(1e-12),
        iterations=iterations,
        success=success,
        perturbed=x0 + perturbation,
        original=original,
    )


def _linearise(
    model: nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    replicate: bool,
    graph: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows still unfooled at ``x``, their logit gaps, the gaps' input gradients); ``graph``: a forward pass at x.

    The gradients are taken for the unfooled rows only. Per class (the arithmetic-bound CPU form) that takes a
    second forward pass without the fooled rows, which costs less than carrying them through k - 1 backward passes;
    replicated (the launch-bound GPU form) the fooled rows ride along and are dropped after.
    """
    gap_count = classes.shape[1] - 1
    copies = gap_count if replicate else 1
    leaf, logits = graph or _forward(model, x, copies)
    unfooled = logits[0].argmax(1) == classes[:, 0]
    if not unfooled.any():
        return unfooled, logits.new_empty(0), logits.new_empty(0)
    kept = unfooled if replicate else slice(None)  # rows of the gradients below to keep
    if not (replicate or unfooled.all()):
        leaf, logits = _forward(model, x[unfooled], copies)
        classes = classes[unfooled]
    f = logits[0].detach().gather(1, classes)  # (rows, k)
    gaps = f[:, 1:] - f[:, :1]  # (rows, k-1)
    # Cotangent j backpropagates gap j: +1 on candidate j's logit, -1 on the prediction's.
    index = classes.T.unsqueeze(2)  # (k, rows, 1)
    cotangents = logits.new_zeros(gap_count, *logits.shape[1:]).scatter_(2, index[1:], 1.0)  # (k-1, rows, classes)
    cotangents.scatter_(2, index[:1].expand(gap_count, -1, -1), -1.0)
    if replicate:
        grads = torch.autograd.grad(logits, leaf, cotangents)[0].view(copies, len(classes), -1).transpose(0, 1)
    else:
        grads = torch.stack(
            [torch.autograd.grad(logits[0], leaf, cotangent, retain_graph=True)[0] for cotangent in cotangents], dim=1
        ).flatten(2)
    return unfooled, gaps[kept], grads[kept]


def _forward(model: nn.Module, x: torch.Tensor, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(leaf, logits (copies, rows, classes)) of ``copies`` stacked copies of ``x``, graph kept for input gradients."""
    leaf = x.repeat(copies, *[1] * (x.dim() - 1)).requires_grad_(True)  # copy j serves gap j when replicated
    return leaf, model(leaf).view(copies, len(x), -1)
