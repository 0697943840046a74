"""How a swept parameter sits on a figure's axis or colour bar: in its own units, on a log scale where it was drawn
on one (or its numeric values span two decades, as a learning-rate grid does), choices by position; and which range
of a metric an axis or colour scale shows, so that one diverged trial does not squash all the others.

One place decides this for every figure (parallel coordinates, the metric against each parameter, its colouring),
so a learning rate reads ``1e-4, 1e-3, 0.01`` everywhere, never ``-4, -3, -2`` on a log10 axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LOG_SPREAD = 100  # positive numeric values spanning this factor (two decades) go on a log axis
SQUASH = 10  # a value this many times the others' span away from them would squash them into a tenth of the axis
PAD = 0.06  # share of an axis's span added at both ends


def unit_text(value: float) -> str:
    """A tick label in the parameter's own units: ``1e-4``, ``5e-4``, ``0.01``, ``0.5``, ``128``."""
    if value != 0 and (abs(value) < 0.01 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    return f"{value:.3g}"


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values (in the parameter's units) for a log axis over [low, high], both > 0: the powers of ten inside
    it; with fewer than three of those, the 1-2-5 series as well; with none of those, the ends and their geometric
    middle."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    tolerance = 1e-9 * (high - low)
    for steps in ((1.0,), (1.0, 2.0, 5.0)):
        ticks = [s * 10.0**e for e in range(first, last + 1) for s in steps]
        inside = [t for t in ticks if low - tolerance <= t <= high + tolerance]
        if len(inside) >= 3:
            return inside
    return inside if len(inside) >= 2 else [low, math.sqrt(low * high), high]


@dataclass
class Axis:
    """A parameter's values as positions on an axis (log10 of the values on a log axis, a choice's index for
    categories) and ticks labelled in the parameter's units."""

    name: str
    positions: list[float]
    log: bool
    tickvals: list[float] | None = None  # positions of the ticks; None: the plotting library's own
    ticktext: list[str] | None = None

    @property
    def title(self) -> str:
        return f"{self.name} (log scale)" if self.log else self.name


def numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def is_log(values: list[Any], distribution: Any = None) -> bool:
    """A log axis: the parameter was drawn on a log scale, or its numeric values are positive and span two decades
    (numeric choices, as a learning-rate grid has)."""
    if getattr(distribution, "log", False):
        return True
    return numeric(values) and bool(values) and min(values) > 0 and max(values) / min(values) >= LOG_SPREAD


def param_axis(name: str, values: list[Any], distribution: Any = None) -> Axis:
    """``values`` of the parameter ``name`` as an :class:`Axis`: non-numeric choices by their index (ticks name each
    choice), a log-scaled one as log10 with ticks in its units, few numeric values with a tick at each."""
    if not numeric(values):
        choices = [str(c) for c in getattr(distribution, "choices", ())] or sorted({str(v) for v in values})
        return Axis(name, [float(choices.index(str(v))) for v in values], False, list(range(len(choices))), choices)
    floats = [float(v) for v in values]
    distinct = sorted(set(floats))
    few = len(distinct) <= 8 and discrete(distribution)  # a grid's values: a tick at each
    if is_log(values, distribution):
        ticks = distinct if few else log_ticks(distinct[0], distinct[-1])
        return Axis(name, [math.log10(v) for v in floats], True, [math.log10(t) for t in ticks],
                    [unit_text(t) for t in ticks])
    if few:
        return Axis(name, floats, False, distinct, [unit_text(t) for t in distinct])
    return Axis(name, floats, False)


def discrete(distribution: Any) -> bool:
    """Choices, a stepped range, or values read from configs (no distribution): a grid's values, unlike a
    continuous interval's samples."""
    return distribution is None or hasattr(distribution, "choices") or getattr(distribution, "step", None) is not None


def kept_range(values: list[float]) -> tuple[float, float] | None:
    """The range of ``values`` an axis shows: the finite ones, less those at either end that lie more than
    :data:`SQUASH` times the span of the rest away from it (a diverged trial), peeled one at a time while three or
    more remain. None when no value is finite."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return None
    low, high = 0, len(finite) - 1
    while high - low >= 3:
        without_high = finite[high - 1] - finite[low]  # the span of the rest, the top value left out
        without_low = finite[high] - finite[low + 1]
        squash_high = (finite[high] - finite[high - 1]) / without_high if without_high > 0 else 0.0
        squash_low = (finite[low + 1] - finite[low]) / without_low if without_low > 0 else 0.0
        if max(squash_low, squash_high) <= SQUASH:
            break
        if squash_high >= squash_low:
            high -= 1
        else:
            low += 1
    return finite[low], finite[high]


def padded(span: tuple[float, float]) -> tuple[float, float]:
    """``span`` widened by :data:`PAD` of itself at both ends (of its magnitude, at least 1, when it is one value),
    so that no point sits on the axis's frame: one margin for every figure's metric axes."""
    low, high = span
    pad = PAD * (high - low) or PAD * max(abs(low), 1.0)
    return low - pad, high + pad
