"""Measurements of a trial's final model: one module each in this package, found here and read everywhere else.

A measure module defines ``MEASURE``: its name (the config section, e.g. ``deepfool.samples=500``), its options
dataclass (with an ``enabled`` field), the function that measures a trained model, and the metrics that function
returns. The trial runs every enabled measure, the config checks objectives against their metrics, and the study's
figures and tables show each measure's ``headline`` metric. Adding a measure is one new module here and one line in
``conf/config.yaml``'s defaults list (README: "Add a measure").

Measure modules stay torch-free at import (the function imports what it needs when it runs), so the study side and
the command line read this registry without loading the trial's code.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measure:
    name: str  # its config section, and the prefix of its metrics
    config: type  # options dataclass; ``enabled: bool`` turns it on or off
    run: Callable[[Any, Any, Any], dict[str, float]]  # (model, data set, options) -> {metric: value}
    metrics: tuple[str, ...]  # exactly the keys ``run`` returns
    headline: str  # the one metric tables and heatmaps show beside the objectives
    check: Callable[[Any, Any], None] | None = None  # (options, data set): refuse what cannot work, before training
    beside: tuple[str, ...] = ()  # metrics tables show next to the headline: what it rests on (success rate, ...)

    def __call__(self, model: Any, data: Any, options: Any) -> dict[str, float]:
        """Run the measure, holding it to the metrics it declares."""
        values = self.run(model, data, options)
        if set(values) != set(self.metrics):
            raise RuntimeError(f"measure {self.name} returned {sorted(values)}, declared {sorted(self.metrics)}")
        return values


def _discover() -> dict[str, Measure]:
    found: dict[str, Measure] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        measure = importlib.import_module(f"{__name__}.{info.name}").MEASURE
        found[measure.name] = measure
    return found


MEASURES: dict[str, Measure] = _discover()
MEASURE_METRICS: tuple[str, ...] = tuple(m for measure in MEASURES.values() for m in measure.metrics)


def measure_of(metric: str) -> Measure | None:
    """The measure that reports ``metric``, if one does."""
    return next((m for m in MEASURES.values() if metric in m.metrics), None)
