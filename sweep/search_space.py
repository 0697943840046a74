"""Hydra's override grammar -> Optuna distributions: pure functions, no study, no launcher.

    optimizer.lr=choice(1e-3,1e-2)            -> CategoricalDistribution((0.001, 0.01))
    train.batch_size=range(16,65,16)          -> IntDistribution(16, 64, step=16)
    optimizer.lr=tag(log,interval(1e-4,0.5))  -> FloatDistribution(1e-4, 0.5, log=True)
    model.dropout=interval(0,0.6)             -> FloatDistribution(0.0, 0.6)
    train.epochs=tag(int,interval(5,20))      -> IntDistribution(5, 20)
    train.epochs=10                           -> passed unchanged to every trial

Choices that Optuna cannot store (lists, dicts) are kept as their override text, e.g. ``"[512]"``, which is
exactly what the trial receives back.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from sweep.errors import ConfigError


@dataclass
class SearchSpace:
    distributions: dict[str, Any] = field(default_factory=dict)  # key -> optuna distribution
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets unchanged
    textual: set[str] = field(default_factory=set)  # keys whose choices are stored as override text

    def grid(self, key: str = "hydra.sweeper.sampler") -> list[dict[str, Any]]:
        """Every point of a fully discrete space, in a fixed order; refuses continuous dimensions."""
        values: dict[str, list] = {}
        for name, dist in self.distributions.items():
            values[name] = _discrete_values(name, dist, key)
        names = list(values)
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*values.values())]


def _discrete_values(name: str, dist: Any, key: str) -> list:
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if step is None:
        raise ConfigError(
            key, f"grid needs discrete values, but {name} is a continuous interval; use choice(...) or range(...)"
        )
    count = int(round((dist.high - dist.low) / step)) + 1
    cast = float if isinstance(dist, d.FloatDistribution) else int
    return [cast(dist.low + i * step) for i in range(count)]


def override_text(value: Any) -> str:
    """A Python value as Hydra override text: ``0.001``, ``true``, ``null``, ``[512,256]``, ``'a b'``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if text and all(c.isalnum() or c in "_-./:" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _storable(value: Any) -> Any:
    """Optuna stores only None, bool, int, float and str as choices."""
    return value if value is None or isinstance(value, bool | int | float | str) else override_text(value)


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override (``choice``, ``range`` or ``interval``)."""
    import optuna.distributions as d

    key = override.get_key_element()
    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    if isinstance(sweep, ChoiceSweep):
        if tags:
            raise ConfigError(key, f"tags {sorted(tags)} apply to interval(...), not choice(...)")
        if any(_storable(v) != v for v in sweep.list):  # one list choice makes every choice override text
            return d.CategoricalDistribution(tuple(override_text(v) for v in sweep.list))
        return d.CategoricalDistribution(tuple(sweep.list))
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if tags:
            raise ConfigError(key, f"tags {sorted(tags)} apply to interval(...), not range(...)")
        if not _numbers(start, stop, step) or step <= 0:
            raise ConfigError(key, "range(start, stop, step) needs numbers and a positive step")
        count = math.ceil((stop - start) / step)
        if count < 1:
            raise ConfigError(key, f"range({start}, {stop}, {step}) is empty")
        last = start + (count - 1) * step
        if _numbers(start, step) and all(isinstance(v, int) for v in (start, step)):
            return d.IntDistribution(int(start), int(last), step=int(step))
        return d.FloatDistribution(float(start), float(last), step=float(step))
    if isinstance(sweep, IntervalSweep):
        low, high = sweep.start, sweep.end
        if not _numbers(low, high) or not low < high:
            raise ConfigError(key, f"interval(low, high) needs numbers with low < high, got ({low}, {high})")
        log = "log" in tags
        if log and low <= 0:
            raise ConfigError(key, f"a log interval needs low > 0, got {low}")
        unknown = tags - {"log", "int"}
        if unknown:
            raise ConfigError(key, f"unknown tags {sorted(unknown)}; allowed: log, int")
        if "int" in tags:
            return d.IntDistribution(int(low), int(high), log=log)
        return d.FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(key, f"unsupported sweep {override.input_line!r}; allowed: choice, range, interval")


def parse_search_space(params: dict[str, str] | None, arguments: list[str]) -> SearchSpace:
    """Combine ``hydra.sweeper.params`` (config) with command-line ``arguments``; the command line wins.

    Raises Hydra's ``OverrideParseException`` for malformed grammar and :class:`ConfigError` for sweeps
    Optuna cannot represent.
    """
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    parser = OverridesParser.create()
    space = SearchSpace()
    by_key: dict[str, Override] = {}
    for override in parser.parse_overrides(lines) + parser.parse_overrides(arguments):
        by_key[override.get_key_element()] = override
    for key, override in by_key.items():
        if override.is_sweep_override():
            if override.is_delete() or override.is_add():
                raise ConfigError(key, "a swept key cannot be added (+) or deleted (~)")
            space.distributions[key] = distribution(override)
            sweep = override.value()
            if isinstance(sweep, ChoiceSweep) and any(_storable(v) != v for v in sweep.list):
                space.textual.add(key)
        else:
            space.fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
    return space
