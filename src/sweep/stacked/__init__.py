"""Stacked trials: many compatible trials trained as one model whose weights carry a leading trial dimension.

Trials that share everything but their per-trial hyperparameters (learning rate, momentum, betas, eps, weight decay,
dropout rates, init scheme, seed) run as one stack: one forward pass of batched matrix products and grouped
convolutions and one fused optimizer step advance every trial, while each trial keeps its own data order, dropout
masks, metrics and stopping rules. On the CPU every number matches an unstacked ``sweep.train.fit`` run bit for bit
(the tests hold it to 1e-5); what a stack cannot reproduce is refused by :func:`~sweep.stacked.key.stack_key`.

The modules, in the order a stack is planned and run:

- ``key``: :func:`stack_key`, what trials must share to stack, or why a trial cannot (torch-free, for planning);
- ``memory``: :func:`stack_cap`, how many trials one stack may hold on a device, and :func:`split` into stacks;
- ``model``: :class:`StackedModel`, the trials' own models stacked, and ``unstack(i)`` back to an ordinary one;
- ``products``: the batched matrix products, checked once against the per-trial ones they replace;
- ``dropout``: each trial's dropout masks, drawn from its own random stream as ``F.dropout`` would;
- ``optim``: SGD, Adam, AdamW and RMSprop over stacked tensors with per-trial hyperparameters;
- ``loop``: :func:`fit_stacked`, ``sweep.train.fit`` for a stack, one outcome per trial.

This package imports nothing itself, so ``from sweep.stacked.key import stack_key`` stays free of torch.
"""
