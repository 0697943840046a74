"""SGD, Adam, AdamW and RMSprop over stacked parameters, each trial with its own hyperparameters.

``torch.optim`` applies one learning rate (one momentum, one eps, ...) to a whole parameter tensor, and a stacked
parameter holds T trials. Here every hyperparameter is a (T,) tensor broadcast over the trial dimension, as HFTA's
fused optimizers do. The updates follow torch's single-tensor implementations (what ``torch.optim`` runs on the
CPU) operation by operation, so float32 results equal the unstacked run's bit for bit. Where torch passes a
hyperparameter as a scalar, the stacked form puts the per-trial tensor where the kernel applies the scalar:

- ``a.add(b, alpha=s)`` is one fused multiply-add on the CPU, and so is ``torch.addcmul(a, b, s_t)``;
- ``a.addcmul(b, c, value=s)`` computes ``a + (s*b)*c``: ``a.addcmul(s_t*b, c)`` rounds ``s_t*b`` identically;
- ``a.addcdiv(b, c, value=s)`` computes ``a + (s*b)/c``: ``a.addcdiv(s_t*b, c)``;
- ``lerp_``, ``mul_``, division by and ``add_`` of a scalar give the same results with a broadcast tensor.

Scalars torch computes in Python (Adam's bias corrections, AdamW's ``1 - lr * weight_decay``) are computed per trial
in double with torch's expressions, then rounded to float32 once, as torch's kernels round a scalar. Dampening is 0
(the config does not expose it). On CUDA ``torch.optim`` runs its foreach implementations, which apply the same
operations in the same order; results there agree to float32 rounding rather than bitwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sweep.config import AdamConfig, AdamWConfig, OptimizerConfig, RMSpropConfig, SGDConfig


class StackedOptimizer:
    """Per-trial hyperparameters as (T,) tensors and per-parameter state as stacked tensors; ``keep`` drops the
    trials that leave the stack from both."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.hyper: dict[str, Tensor] = {}
        self.state: list[dict[str, Tensor]] = []  # one dict per stacked parameter, created on the first step

    def per_trial(self, name: str, values: Sequence[float]) -> None:
        self.hyper[name] = torch.tensor(list(values), dtype=torch.float32, device=self.device)

    def h(self, name: str, like: Tensor) -> Tensor:
        """Hyperparameter ``name`` shaped (T, 1, ...) to broadcast over a stacked tensor like ``like``."""
        return self.hyper[name].view(-1, *[1] * (like.dim() - 1))

    def keep(self, rows: Sequence[int]) -> None:
        index = torch.tensor(list(rows), device=self.device)
        self.hyper = {k: v[index] for k, v in self.hyper.items()}
        self.state = [{k: v[index] for k, v in s.items()} for s in self.state]

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        if not self.state:
            self.state = [{} for _ in params]
        for param, grad, state in zip(params, grads, self.state, strict=True):
            self.update(param, grad, state)

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        raise NotImplementedError


class SGD(StackedOptimizer):
    """``torch.optim.SGD`` (momentum, nesterov, weight_decay; dampening 0), per trial.

    Trials without momentum or weight decay may share a stack with trials that have them: a momentum buffer
    multiplied by 0 and added to the gradient is the gradient, and adding 0 x the weights leaves it unchanged, so
    their numbers are those of torch's shorter code path.
    """

    def __init__(self, cfgs: Sequence[SGDConfig], device: torch.device) -> None:
        super().__init__(device)
        self.per_trial("neg_lr", [-c.lr for c in cfgs])
        self.per_trial("momentum", [c.momentum for c in cfgs])
        self.per_trial("weight_decay", [c.weight_decay for c in cfgs])
        self.momentum = any(c.momentum != 0 for c in cfgs)
        self.decay = any(c.weight_decay != 0 for c in cfgs)
        self.nesterov = cfgs[0].nesterov  # part of the stack key

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        if self.decay:
            grad = torch.addcmul(grad, param, self.h("weight_decay", param))
        if self.momentum:
            momentum = self.h("momentum", param)
            if "buf" not in state:
                state["buf"] = grad.detach().clone()
            else:
                state["buf"].mul_(momentum).add_(grad)
            grad = torch.addcmul(grad, state["buf"], momentum) if self.nesterov else state["buf"]
        param.addcmul_(grad, self.h("neg_lr", param))


class Adam(StackedOptimizer):
    """``torch.optim.Adam`` and ``AdamW`` (betas, eps, weight_decay, amsgrad), per trial."""

    def __init__(self, cfgs: Sequence[AdamConfig], device: torch.device) -> None:
        super().__init__(device)
        self.lr = [c.lr for c in cfgs]
        self.betas = [(float(c.betas[0]), float(c.betas[1])) for c in cfgs]
        self.per_trial("one_minus_beta1", [1 - b1 for b1, _ in self.betas])
        self.per_trial("beta2", [b2 for _, b2 in self.betas])
        self.per_trial("one_minus_beta2", [1 - b2 for _, b2 in self.betas])
        self.per_trial("eps", [c.eps for c in cfgs])
        self.per_trial("weight_decay", [c.weight_decay for c in cfgs])
        self.per_trial("decay_factor", [1 - c.lr * c.weight_decay for c in cfgs])  # AdamW's param.mul_ factor
        self.decoupled = isinstance(cfgs[0], AdamWConfig)
        self.decay = any(c.weight_decay != 0 for c in cfgs)
        self.amsgrad = cfgs[0].amsgrad  # part of the stack key
        self.steps = 0

    def keep(self, rows: Sequence[int]) -> None:
        super().keep(rows)
        self.lr = [self.lr[i] for i in rows]
        self.betas = [self.betas[i] for i in rows]

    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        self.steps += 1
        step = float(self.steps)  # torch keeps the step as a float32 tensor and reads it back as a float
        self.per_trial("neg_step_size", [-(lr / (1 - b1**step)) for lr, (b1, _) in zip(self.lr, self.betas,
                                                                                         strict=True)])
        self.per_trial("bias_correction2_sqrt", [(1 - b2**step) ** 0.5 for _, b2 in self.betas])
        super().step(params, grads)

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        if not state:
            state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(param), torch.zeros_like(param)
            if self.amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(param)
        if self.decay and self.decoupled:
            param.mul_(self.h("decay_factor", param))
        elif self.decay:
            grad = torch.addcmul(grad, param, self.h("weight_decay", param))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, self.h("one_minus_beta1", param))
        exp_avg_sq.mul_(self.h("beta2", param)).addcmul_(grad * self.h("one_minus_beta2", param), grad)
        if self.amsgrad:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]
        denom = (exp_avg_sq.sqrt() / self.h("bias_correction2_sqrt", param)).add_(self.h("eps", param))
        param.addcdiv_(exp_avg * self.h("neg_step_size", param), denom)


class RMSprop(StackedOptimizer):
    """``torch.optim.RMSprop`` (alpha, eps, momentum, centered, weight_decay), per trial. Whether momentum is used
    at all changes torch's update (a buffer, or ``addcdiv`` straight into the weights): it is part of the key."""

    def __init__(self, cfgs: Sequence[RMSpropConfig], device: torch.device) -> None:
        super().__init__(device)
        self.per_trial("neg_lr", [-c.lr for c in cfgs])
        self.per_trial("alpha", [c.alpha for c in cfgs])
        self.per_trial("one_minus_alpha", [1 - c.alpha for c in cfgs])
        self.per_trial("eps", [c.eps for c in cfgs])
        self.per_trial("momentum", [c.momentum for c in cfgs])
        self.per_trial("weight_decay", [c.weight_decay for c in cfgs])
        self.decay = any(c.weight_decay != 0 for c in cfgs)
        self.momentum, self.centered = cfgs[0].momentum > 0, cfgs[0].centered  # part of the stack key

    def update(self, param: Tensor, grad: Tensor, state: dict[str, Tensor]) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(param)
            if self.momentum:
                state["buf"] = torch.zeros_like(param)
            if self.centered:
                state["grad_avg"] = torch.zeros_like(param)
        if self.decay:
            grad = torch.addcmul(grad, param, self.h("weight_decay", param))
        square_avg = state["square_avg"]
        square_avg.mul_(self.h("alpha", param)).addcmul_(grad * self.h("one_minus_alpha", param), grad)
        if self.centered:
            state["grad_avg"].lerp_(grad, self.h("one_minus_alpha", param))
            avg = square_avg.addcmul(state["grad_avg"], state["grad_avg"], value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(self.h("eps", param))
        if self.momentum:
            state["buf"].mul_(self.h("momentum", param)).addcdiv_(grad, avg)
            param.addcmul_(state["buf"], self.h("neg_lr", param))
        else:
            param.addcdiv_(grad * self.h("neg_lr", param), avg)


def build_optimizer(cfgs: Sequence[OptimizerConfig], device: torch.device) -> StackedOptimizer:
    """The stacked optimizer for trials whose optimizer configs share a stack key (one family, one code path)."""
    if len({type(c) for c in cfgs}) != 1:
        raise ValueError("trials of a stack must share their optimizer (sweep.stacked.key.stack_key)")
    if isinstance(cfgs[0], SGDConfig):
        return SGD([c for c in cfgs if isinstance(c, SGDConfig)], device)
    if isinstance(cfgs[0], RMSpropConfig):
        return RMSprop([c for c in cfgs if isinstance(c, RMSpropConfig)], device)
    return Adam([c for c in cfgs if isinstance(c, AdamConfig)], device)
