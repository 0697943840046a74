"""DeepFool one sample at a time, written straight from the paper (Algorithm 2).

An independent check on ``sweep.deepfool`` (tests) and the per-sample baseline it is timed against
(benchmarks/deepfool.py). Deliberately plain: one forward and k - 1 backward passes per step per sample.
"""

from __future__ import annotations

import torch
from torch import nn


def deepfool_one(model: nn.Module, x: torch.Tensor, overshoot: float = 0.02, max_iter: int = 50) -> tuple[float, int]:
    """(L2 norm of the final perturbation, iterations) for one input ``x`` (no batch dimension)."""
    x0 = x.unsqueeze(0)
    with torch.no_grad():
        k0 = int(model(x0).argmax())
    r_total = torch.zeros_like(x0)
    for i in range(max_iter):
        xi = (x0 + (1 + overshoot) * r_total).requires_grad_(True)
        logits = model(xi)[0]
        if int(logits.argmax()) != k0:
            return float(((1 + overshoot) * r_total).norm()), i
        grad_0 = torch.autograd.grad(logits[k0], xi, retain_graph=True)[0]
        best, best_w = float("inf"), torch.zeros_like(x0)
        for k in range(logits.shape[0]):
            if k == k0:
                continue
            w_k = torch.autograd.grad(logits[k], xi, retain_graph=True)[0] - grad_0
            distance = abs(float(logits[k].detach() - logits[k0].detach())) / float(w_k.norm())
            if distance < best:
                best, best_w = distance, w_k
        r_total = r_total + best * best_w / best_w.norm()  # r_i = |f_l| / ||w_l||^2 * w_l
    return float(((1 + overshoot) * r_total).norm()), max_iter
