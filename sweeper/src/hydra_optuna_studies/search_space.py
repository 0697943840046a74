"""Hydra's override grammar -> Optuna distributions, plus conditional parameters: pure functions, no study.

    optimizer.lr=choice(1e-3,1e-2)             -> CategoricalDistribution((0.001, 0.01))
    train.batch_size=range(16,65,16)           -> IntDistribution(16, 64, step=16)   (stop excluded, as in Hydra)
    model.dropout=range(0.0,0.5,0.25)          -> FloatDistribution(0.0, 0.25, step=0.25)
    optimizer.lr=tag(log,interval(1e-4,0.5))   -> FloatDistribution(1e-4, 0.5, log=True)
    train.epochs=int(interval(5,20))           -> IntDistribution(5, 20)            (also tag(int, interval(...)))
    train.epochs=tag(log,int(interval(5,20)))  -> IntDistribution(5, 20, log=True)
    train.seed=shuffle(range(0,3))             -> CategoricalDistribution((0, 1, 2))
    +model.extra=choice(1,2)                   -> a swept key the config does not have yet (param name "+model.extra")
    train.epochs=10                            -> passed unchanged to every trial

A parameter of ``hydra.sweeper.params`` may be conditional: ``{when: {optimizer: sgd}, values: "interval(0, 0.99)"}``
is sampled (and passed to the trial) only in trials whose swept ``optimizer`` is ``sgd``; ``when`` may list several
keys (all must hold) and several allowed values per key. A grid enumerates exactly the valid points.

For a grid, a parameter may also take different values in different cases, given as a list of such entries with
disjoint ``when``s: a union of grids, such as a study's "K = [32] with L in {8, 16, 32}; K = [64, 128, 256] with L
in {2, 4, 8}". Optuna stores the union of the cases' values as the parameter's choices.

Choices that Optuna cannot store (lists, dicts) are kept as their override text, e.g. ``"[512]"``, which is
exactly what the trial receives back.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from hydra_optuna_studies.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Param:
    """One swept key: its distribution, and the values of other swept keys it depends on."""

    distribution: Any  # an optuna distribution
    textual: bool = False  # choices are stored as override text (lists, dicts)
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # swept key -> values under which this is sampled
    # A union of grids: (when, values) per case; the distribution holds every case's values, when the first case's.
    cases: tuple[tuple[dict[str, tuple[Any, ...]], tuple[Any, ...]], ...] = ()

    @property
    def parents(self) -> set[str]:
        return set(self.when).union(*(when for when, _ in self.cases))


@dataclass
class SearchSpace:
    params: dict[str, Param] = field(default_factory=dict)  # in sampling order: every key after those it depends on
    fixed: list[str] = field(default_factory=list)  # overrides every trial gets unchanged
    order: list[str] = field(default_factory=list)  # every key, fixed or swept, in the order the user gave them

    @property
    def distributions(self) -> dict[str, Any]:
        return {key: p.distribution for key, p in self.params.items()}

    @property
    def grid_only(self) -> list[str]:
        """The keys whose values differ by case: only a grid can enumerate them."""
        return [key for key, param in self.params.items() if param.cases]

    def active(self, key: str, point: Mapping[str, Any]) -> bool:
        """Whether ``key`` is part of a trial whose swept values so far are ``point``."""
        return self._case(key, point) is not None

    def _case(self, key: str, point: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The values ``key`` may take in a trial whose swept values so far are ``point``; None where inactive."""
        param = self.params[key]
        for when, values in param.cases or ((param.when, ()),):
            if all(point.get(parent, _UNSET) in allowed for parent, allowed in when.items()):
                return values
        return None

    def sample(self, trial: Any) -> dict[str, Any]:
        """Suggest every active parameter on an Optuna ``trial`` (define-by-run), in dependency order."""
        point: dict[str, Any] = {}
        for key, param in self.params.items():
            if self.active(key, point):
                point[key] = suggest(trial, key, param.distribution)
        return point

    def points(self, key: str = "hydra.sweeper.sampler") -> Iterator[dict[str, Any]]:
        """Every valid point of a discrete space, one at a time, in a fixed order (the first key varies slowest);
        refuses continuous dimensions. Nothing is built ahead: a grid of 10**8 points costs what it yields."""
        names = list(self.params)
        values = {name: _discrete_values(name, self.params[name].distribution, key) for name in names}

        def walk(i: int, point: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(names):
                yield point
                return
            case = self._case(names[i], point)
            if case is None:  # inactive here: the point goes on without this key
                yield from walk(i + 1, point)
                return
            for value in case or values[names[i]]:
                yield from walk(i + 1, {**point, names[i]: value})

        return walk(0, {})

    def size(self, limit: int) -> int | None:
        """How many points the grid has, or None when more than ``limit`` (counting a conditional grid walks it)."""
        if not any(param.parents for param in self.params.values()):
            values = (_discrete_values(k, p.distribution, "hydra.sweeper.sampler") for k, p in self.params.items())
            total = math.prod(len(v) for v in values)
            return total if total <= limit else None
        count = sum(1 for _ in itertools.islice(self.points(), limit + 1))
        return count if count <= limit else None

    def overrides(self, point: Mapping[str, Any]) -> list[str]:
        """The fixed overrides and ``key=value`` for each swept value of ``point``, in the order the user gave the
        keys (as Hydra's own sweepers keep it: a group's option before the keys it brings)."""
        fixed = iter(self.fixed)
        lines = {key: next(fixed) for key in self.order if key not in self.params}
        for key, value in point.items():
            lines[key] = f"{key}={value if key in self.params and self.params[key].textual else override_text(value)}"
        position = {key: i for i, key in enumerate(self.order)}
        return [lines[key] for key in sorted(lines, key=lambda k: position.get(k, len(position)))]


_UNSET = object()


def suggest(trial: Any, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` for ``distribution``: Optuna's public define-by-run API, one call per kind."""
    import optuna.distributions as d

    if isinstance(distribution, d.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, d.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, step=distribution.step,
                               log=distribution.log)


def _discrete_values(name: str, dist: Any, key: str) -> Sequence[Any]:
    """A discrete distribution's values in order, as a lazy sequence (a range of 10**8 is not built)."""
    import optuna.distributions as d

    if isinstance(dist, d.CategoricalDistribution):
        return list(dist.choices)
    step = getattr(dist, "step", None)
    if step is None:
        raise ConfigError(
            key, f"grid needs discrete values, but {name} is a continuous interval; use choice(...) or range(...)"
        )
    count = int(round((dist.high - dist.low) / step)) + 1
    if isinstance(dist, d.FloatDistribution):
        return _Steps(dist.low, step, count)
    return range(int(dist.low), int(dist.low) + count * int(step), int(step))


@dataclass(frozen=True)
class _Steps(Sequence):
    """low, low + step, ... (``size`` values), each as the decimal a user typed."""

    low: float
    step: float
    size: int

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.size))]
        if not -self.size <= i < self.size:
            raise IndexError(i)
        return _tidy(self.low + (i % self.size) * self.step)


def _tidy(value: float) -> float:
    """A float as the decimal a user typed: 0.1 + 2 * 0.1 is 0.30000000000000004, and Optuna checks steps exactly."""
    return float(f"{value:.12g}")


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


def _categorical(values: list[Any]) -> tuple[Any, bool]:
    """(CategoricalDistribution, textual): one list or dict choice makes every choice override text."""
    import optuna.distributions as d

    if any(_storable(v) != v for v in values):
        return d.CategoricalDistribution(tuple(override_text(v) for v in values)), True
    return d.CategoricalDistribution(tuple(values)), False


def _range(key: str, sweep: RangeSweep) -> tuple[Any, bool]:
    import optuna.distributions as d

    if not _numbers(sweep.start, sweep.stop, sweep.step) or cast(float, sweep.step) <= 0:
        raise ConfigError(key, "range(start, stop, step) needs numbers and a positive step")
    start, stop, step = cast(float, sweep.start), cast(float, sweep.stop), cast(float, sweep.step)
    count = math.ceil(_tidy((stop - start) / step))
    if count < 1:
        raise ConfigError(key, f"range({start}, {stop}, {step}) is empty (the stop value is excluded, as in Hydra)")
    integral = all(isinstance(v, int) for v in (start, step))
    last = start + (count - 1) * step if integral else _tidy(start + (count - 1) * step)
    if sweep.shuffle:  # shuffle(range(...)): its values as choices; the sampler picks the order
        return _categorical([start + i * step if integral else _tidy(start + i * step) for i in range(count)])
    if integral:
        return d.IntDistribution(int(start), int(last), step=int(step)), False
    return d.FloatDistribution(float(start), float(last), step=float(step)), False


def _interval(key: str, sweep: IntervalSweep, tags: set[str]) -> Any:
    import optuna.distributions as d

    finite = _numbers(sweep.start, sweep.end) and all(math.isfinite(cast(float, v)) for v in (sweep.start, sweep.end))
    if not finite or not cast(float, sweep.start) < cast(float, sweep.end):
        raise ConfigError(key, f"interval(low, high) needs finite numbers with low < high, got ({sweep.start}, "
                          f"{sweep.end})")
    low, high = cast(float, sweep.start), cast(float, sweep.end)
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(key, f"unknown tags {sorted(unknown)}; allowed: log, int")
    log = "log" in tags
    if log and low <= 0:
        raise ConfigError(key, f"a log interval needs low > 0, got {low}")
    # int(interval(a, b)) casts the bounds to int; tag(int, interval(a, b)) says the same in a tag.
    if "int" in tags or (isinstance(low, int) and isinstance(high, int)):
        return d.IntDistribution(int(low), int(high), log=log)
    return d.FloatDistribution(float(low), float(high), log=log)


def distribution(override: Override) -> tuple[Any, bool]:
    """(the Optuna distribution, textual) of one sweep override: ``choice``, ``range`` or ``interval``."""
    key = override.get_key_element()
    sweep = override.value()
    tags = set(getattr(sweep, "tags", set()) or set())
    if isinstance(sweep, IntervalSweep):
        return _interval(key, sweep, tags), False
    if tags:
        raise ConfigError(key, f"tags {sorted(tags)} apply to interval(...) only")
    if isinstance(sweep, ChoiceSweep):
        if any(isinstance(v, ChoiceSweep | RangeSweep | IntervalSweep) for v in sweep.list):
            raise ConfigError(key, "a choice(...) holds plain values, not another sweep; list the values in one "
                              "choice(...)")
        repeated = [v for i, v in enumerate(sweep.list) if repr(v) in map(repr, sweep.list[:i])]
        if repeated:
            raise ConfigError(key, f"choice(...) lists {repeated[0]!r} twice; each value once")
        return _categorical(list(sweep.list))
    if isinstance(sweep, RangeSweep):
        return _range(key, sweep)
    raise ConfigError(key, f"{override.input_line!r} cannot be a search dimension; use choice, range or interval")


def _conditional(key: str, entry: Any) -> tuple[str, dict[str, tuple[Any, ...]]]:
    """(the sweep text, its conditions) of one ``hydra.sweeper.params`` entry."""
    if isinstance(entry, str | int | float | bool):
        return str(entry), {}
    if not isinstance(entry, Mapping) or set(entry) - {"when", "values"} or "values" not in entry:
        raise ConfigError(f"hydra.sweeper.params.{key}", "must be a sweep like 'choice(1,2)' or "
                          "{when: {other.key: value}, values: 'choice(1,2)'}")
    when = entry.get("when") or {}
    if not isinstance(when, Mapping):
        raise ConfigError(f"hydra.sweeper.params.{key}.when", f"must map swept keys to values, got {when!r}")
    conditions = {str(k): tuple(v) if isinstance(v, list | tuple) else (v,) for k, v in when.items()}
    return str(entry["values"]), conditions


def _cases(key: str, entries: list[Any]) -> tuple[list[str], tuple[tuple[dict[str, tuple[Any, ...]], str], ...]]:
    """The sweeps and (conditions, sweep) of a parameter given as a list of cases."""
    if not entries or not all(isinstance(e, Mapping) and e.get("when") for e in entries):
        raise ConfigError(f"hydra.sweeper.params.{key}", "a list of cases needs a {when: ..., values: ...} in each")
    parsed = [_conditional(key, entry) for entry in entries]
    return [text for text, _ in parsed], tuple((when, text) for text, when in parsed)


def _union(key: str, overrides: list[Override]) -> tuple[Any, bool, list[tuple[Any, ...]]]:
    """The categorical union of several cases' discrete sweeps, and each case's values as stored."""
    per_case = []
    for override in overrides:
        dist, textual = distribution(override)
        per_case.append((_discrete_values(key, dist, f"hydra.sweeper.params.{key}"), textual))
    textual = any(t for _, t in per_case)
    stored = [tuple(override_text(v) if textual and not t else v for v in values) for values, t in per_case]
    union = list(dict.fromkeys(v for values in stored for v in values))
    dist, _ = _categorical(union)
    return dist, textual, stored


def _ordered(params: dict[str, Param]) -> dict[str, Param]:
    """``params`` with every key after the keys its conditions name; refuses unknown, continuous or cyclic ones."""
    for key, param in params.items():
        for parent in param.parents:
            if parent not in params:
                raise ConfigError(f"hydra.sweeper.params.{key}.when",
                                  f"{parent} is not swept; a condition names another swept key")
            if getattr(params[parent].distribution, "step", 1) is None:
                raise ConfigError(f"hydra.sweeper.params.{key}.when",
                                  f"{parent} is a continuous interval; a condition needs a choice or range")
    ordered: dict[str, Param] = {}
    while len(ordered) < len(params):
        ready = [k for k, p in params.items() if k not in ordered and all(q in ordered for q in p.parents)]
        if not ready:
            cycle = sorted(k for k in params if k not in ordered)
            raise ConfigError("hydra.sweeper.params", f"conditions form a cycle among {', '.join(cycle)}")
        ordered.update((k, params[k]) for k in ready)
    return ordered


def parse_search_space(params: Mapping[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """Combine ``hydra.sweeper.params`` (config) with command-line ``arguments``; the command line wins on a key
    (its values replace the config's; a ``when`` from the config stays).

    Raises Hydra's ``OverrideParseException`` for malformed grammar and :class:`ConfigError` for sweeps
    Optuna cannot represent.
    """
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError("hydra.sweeper.params", f"must map keys to sweeps ({{optimizer.lr: 'choice(0.1, 0.01)'}}), "
                          f"got {type(params).__name__} {params!r}")
    parser = OverridesParser.create()
    conditions: dict[str, dict[str, tuple[Any, ...]]] = {}
    cases: dict[str, tuple[tuple[dict[str, tuple[Any, ...]], str], ...]] = {}
    lines = []
    for key, entry in (params or {}).items():
        if isinstance(entry, Sequence) and not isinstance(entry, str):
            _, cases[str(key)] = _cases(str(key), list(entry))
            continue
        text, conditions[str(key)] = _conditional(str(key), entry)
        lines.append(f"{key}={text}")
    by_key: dict[str, Override] = {}
    for override in parser.parse_overrides(lines):
        by_key[override.get_key_element()] = override
    given: dict[str, Override] = {}
    for override in parser.parse_overrides(arguments):  # the command line wins over the config's params
        key = override.get_key_element()
        if key in given and (override.is_sweep_override() or given[key].is_sweep_override()):
            raise ConfigError(key, f"given twice on the command line, {given[key].input_line!r} and "
                              f"{override.input_line!r}: the last would silently replace the other; give it once")
        if key.startswith("hydra.") and override.is_sweep_override():
            raise ConfigError(key, f"Sweeping over Hydra's configuration is not supported : '{override.input_line}'")
        config_sweep = (by_key[key].input_line if key in by_key and by_key[key].is_sweep_override()
                        else " | ".join(text for _, text in cases[key]) if key in cases else None)
        if config_sweep is not None and not override.is_sweep_override():  # pinning a swept key: said, not silent
            log.info("%s: the command line's value replaces the config's sweep (%s)", override.input_line,
                     config_sweep)
            cases.pop(key, None)
        given[key] = by_key[key] = override
    swept: dict[str, Param] = {}
    fixed: list[str] = []
    for key, override in by_key.items():
        if not override.is_sweep_override():
            if conditions.get(key):
                raise ConfigError(f"hydra.sweeper.params.{key}", "a conditional parameter needs a sweep as values")
            fixed.append(override.input_line or f"{key}={override.get_value_element_as_str()}")
            continue
        if override.is_delete():
            raise ConfigError(key, "a deleted key (~) cannot be swept")
        dist, textual = distribution(override)
        swept[key] = Param(dist, textual, conditions.get(key, {}))
    for key, alternatives in cases.items():
        if key in swept:  # the command line's sweep of the key replaces its cases
            continue
        overrides = parser.parse_overrides([f"{key}={text}" for _, text in alternatives])
        dist, textual, values = _union(key, overrides)
        whens = [when for when, _ in alternatives]
        swept[key] = Param(dist, textual, whens[0], tuple(zip(whens, values, strict=True)))
    order = [*by_key, *(key for key in cases if key not in by_key)]
    return SearchSpace(params=_ordered(swept), fixed=fixed, order=order)
