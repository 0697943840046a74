"""Each trial's dropout masks, drawn from its own random stream exactly as its unstacked run's ``F.dropout`` draws them.

An unstacked trial draws its masks from the device's default generator, as its ``init_weights`` left it (on CUDA,
as ``torch.manual_seed`` left it: the init runs on the CPU). On the CPU, ``F.dropout`` fills
``empty_like(x).bernoulli_(1 - p)``, divides it by ``1 - p`` and multiplies; each trial of a stack holds a
``torch.Generator`` with the state its init left and fills its slice of the mask with the same ``bernoulli_`` on a
slice of the same size and layout, so it consumes its stream exactly as ``F.dropout`` would and gets the same mask
(``tests/test_stacked.py`` checks it against ``F.dropout``). A trial whose probability is 0 has no Dropout layer
unstacked and draws nothing. On CUDA, ``F.dropout`` is one fused kernel that takes no generator: the trial's state is
swapped into the device's default generator around a call of ``F.dropout`` on its slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def trial_stream(device: torch.device) -> torch.Generator:
    """The stream the trial whose model was just built and initialised will draw its dropout masks from: a copy of
    the default generator of ``device`` as it is now (call right after ``init_weights``)."""
    stream = torch.Generator(device)
    stream.set_state(_default(device).get_state())
    return stream


def dropout(x: Tensor, p: Sequence[float], streams: Sequence[torch.Generator]) -> Tensor:
    """``x`` (T, B, ...) with trial t's slice dropped out with probability ``p[t]``, its mask drawn from
    ``streams[t]``; a trial with probability 0 is left untouched and draws nothing."""
    if x.device.type != "cpu":
        return torch.stack([_swapped(xi, q, g) if q > 0 else xi for xi, q, g in zip(x, p, streams, strict=True)])
    noise = torch.empty_like(x)
    for part, q, stream in zip(noise, p, streams, strict=True):
        if q > 0:
            part.bernoulli_(1 - q, generator=stream)
        else:
            part.fill_(1.0)
    keep = torch.tensor([1 - q for q in p], dtype=x.dtype, device=x.device)  # 1 - p in double, then float: as torch
    return x * noise.div_(keep.view(-1, *[1] * (x.dim() - 1)))


def _swapped(x: Tensor, p: float, stream: torch.Generator) -> Tensor:
    """``F.dropout(x, p)`` on CUDA with ``stream``'s state in the device's default generator (advanced as it
    draws), the default generator's own state restored after."""
    default = _default(x.device)
    saved = default.get_state()
    default.set_state(stream.get_state())
    try:
        return F.dropout(x, p, training=True)
    finally:
        stream.set_state(default.get_state())
        default.set_state(saved)


def _default(device: torch.device) -> torch.Generator:
    """The default generator of ``device``; CUDA's exist once CUDA is initialised."""
    if device.type == "cpu":
        return torch.default_generator
    torch.cuda.init()
    return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
