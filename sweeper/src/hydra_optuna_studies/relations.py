"""How a metric depends on one swept setting, in words that claim only what a test supports.

A rank correlation (Spearman) summarises a monotonic relation only: a margin that rises from 0.22-0.46 at lr 1e-4
to 0.54-0.59 from lr 1e-2 up, or peaks at a middle lr, can have a rho whose interval includes 0. So the trials are
also grouped by the setting (each value of a grid; equal-count bins of a continuous sampler's values), and:

- whether the groups differ at all: a permutation test of the share of the ranks' variance between groups (a
  Kruskal-Wallis test: one diverged trial does not make an effect);
- which groups are highest and lowest: the groups not clearly below the highest (or above the lowest), by t
  intervals of the differences in group means with the pooled variance, Bonferroni-corrected over the comparisons
  (multiple comparisons with the best);
- the shape: a *peak* when both the first and the last group are clearly below the highest (a *dip* mirrored),
  *rises* when the first group is clearly below the highest, the last is not, and the mirror holds for the lowest.

A sentence claims a relation only when the groups differ (the permutation test, at :data:`LEVEL`): one test per
sentence, so that on pure noise about one sentence in twenty claims a relation. Where only the rank correlation's
interval excludes 0, the sentence says no clear effect and which way rho leans.

The permutations are seeded, so a report says the same each time it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra_optuna_studies.axes import unit_text

LEVEL = 0.05  # the tests' and intervals' error rate
RESAMPLES = 1999
MIN_PER_GROUP = 2  # trials per group, so that every group has a spread of its own
MAX_GROUPS = 8  # more distinct values than this (a continuous sampler) are binned


@dataclass
class Group:
    """The trials at one value of the setting (or one bin of values)."""

    low: float
    high: float
    values: Any  # numpy array of the metric

    @property
    def label(self) -> str:
        return unit_text(self.low) if self.low == self.high else f"in [{unit_text(self.low)}, {unit_text(self.high)}]"


def _mean_range(values: Any) -> str:
    """Trials' mean and range, as each sentence gives a group: ``0.34 (0.22-0.46)``."""
    low, high = f"{float(values.min()):.2g}", f"{float(values.max()):.2g}"
    return f"{float(values.mean()):.3g}" + ("" if low == high else f" ({low}-{high})")


@dataclass
class Shape:
    """What the groups say: their effect (permutation p, share of variance) and the highest and lowest groups."""

    groups: list[Group]
    p: float
    share: float
    top: list[int]  # groups not clearly below the highest mean, in order of the setting
    bottom: list[int]  # groups not clearly above the lowest mean

    @property
    def kind(self) -> str:
        """peak | dip | rises | falls | differs | none."""
        last = len(self.groups) - 1
        if self.p >= LEVEL:
            return "none"
        if len(self.groups) >= 3 and 0 not in self.top and last not in self.top:
            return "peak"
        if len(self.groups) >= 3 and 0 not in self.bottom and last not in self.bottom:
            return "dip"
        if 0 in self.bottom and last in self.top and 0 not in self.top and last not in self.bottom:
            return "rises"
        if 0 in self.top and last in self.bottom and 0 not in self.bottom and last not in self.top:
            return "falls"
        return "differs"


def groups_of(x: Any, y: Any) -> list[Group]:
    """The trials grouped by the setting's value (numpy arrays ``x``, ``y``), in order: each distinct value when
    there are at most :data:`MAX_GROUPS` (a grid), else consecutive values in bins of about equal counts (a continuous
    sampler); a group of fewer than :data:`MIN_PER_GROUP` trials is merged into its smaller neighbour."""
    import numpy as np

    distinct, counts = np.unique(x, return_counts=True)
    bins: list[list[float]] = [[]]  # each group's distinct values
    sizes = [0]
    target = 0 if len(distinct) <= MAX_GROUPS else len(x) / max(2, min(MAX_GROUPS // 2, len(x) // 5))
    for value, count in zip(distinct, counts, strict=True):
        if sizes[-1] and sizes[-1] >= target:
            bins.append([])
            sizes.append(0)
        bins[-1].append(float(value))
        sizes[-1] += int(count)
    while len(bins) > 1 and min(sizes) < MIN_PER_GROUP:
        i = sizes.index(min(sizes))
        j = i + 1 if i == 0 else i - 1 if i == len(bins) - 1 or sizes[i - 1] <= sizes[i + 1] else i + 1
        low, high = min(i, j), max(i, j)
        bins[low:high + 1] = [bins[low] + bins[high]]
        sizes[low:high + 1] = [sizes[low] + sizes[high]]
    return [Group(b[0], b[-1], y[(x >= b[0]) & (x <= b[-1])]) for b in bins]


def _between(groups: list[Group], rows: Any) -> Any:
    """The sum of squares between the groups of each row of ``rows`` (values in the groups' order)."""
    import numpy as np

    counts = np.array([len(g.values) for g in groups], dtype=float)
    onehot = (np.repeat(np.arange(len(groups)), counts.astype(int))[:, None] == np.arange(len(groups))).astype(float)
    means = rows @ onehot / counts
    return (counts * (means - rows.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)


def _ranks(groups: list[Group]) -> Any:
    import numpy as np
    from scipy import stats

    return stats.rankdata(np.concatenate([g.values for g in groups]))


def share_between(groups: list[Group]) -> float:
    """The share of the variance of the values' ranks that lies between the groups (eta squared of ranks, the
    Kruskal-Wallis statistic scaled to 0-1): how much the setting explains, and one diverged trial cannot make a
    setting look important."""
    y = _ranks(groups)
    total = float(((y - y.mean()) ** 2).sum())
    return float(_between(groups, y[None, :])[0]) / total if total > 0 else 0.0


def _permutation(groups: list[Group]) -> tuple[float, float]:
    """:func:`share_between`, and its permutation p-value (values shuffled across groups, seed 0): a Kruskal-Wallis
    test that needs no large-sample approximation."""
    import numpy as np

    share = share_between(groups)
    if share == 0:
        return 0.0, 1.0
    y = _ranks(groups)
    observed = float(_between(groups, y[None, :])[0])
    shuffled = np.random.default_rng(0).permuted(np.tile(y, (RESAMPLES, 1)), axis=1)
    p = (1 + int((_between(groups, shuffled) >= observed * (1 - 1e-12)).sum())) / (RESAMPLES + 1)
    return share, p


def _not_clearly_apart(groups: list[Group], best: int, sign: float) -> list[int]:
    """The groups whose mean is not clearly below (``sign`` 1) or above (-1) group ``best``'s: the one-sided lower
    bound of ``sign * (mean[best] - mean[g])`` is at or below 0. The bound is Student's t with the groups' pooled
    variance (as one-way ANOVA, n - k degrees of freedom) at level :data:`LEVEL`, Bonferroni-corrected over the
    ``len(groups) - 1`` comparisons with ``best`` (multiple comparisons with the best, so picking the best group
    after seeing the data is accounted for)."""
    import numpy as np
    from scipy import stats

    sizes = np.array([len(g.values) for g in groups], dtype=float)
    means = np.array([g.values.mean() for g in groups])
    freedom = sizes.sum() - len(groups)
    pooled = sum(float(((g.values - g.values.mean()) ** 2).sum()) for g in groups) / freedom
    margin = stats.t.ppf(1 - LEVEL / (len(groups) - 1), freedom) * np.sqrt(pooled * (1 / sizes + 1 / sizes[best]))
    lower = sign * (means[best] - means) - margin
    return [g for g in range(len(groups)) if g == best or lower[g] <= 0]


def shape_of(x: Any, y: Any) -> Shape | None:
    """The :class:`Shape` of ``y`` against ``x``; None when fewer than two groups can be formed."""
    import numpy as np

    groups = groups_of(x, y)
    if len(groups) < 2:
        return None
    share, p = _permutation(groups)
    means = np.array([g.values.mean() for g in groups])
    return Shape(groups, p, share, _not_clearly_apart(groups, int(means.argmax()), 1.0),
                 _not_clearly_apart(groups, int(means.argmin()), -1.0))


def _where(shape: Shape, members: list[int], key: str) -> str:
    """Where a set of groups lies: ``at lr 0.01``, ``from lr 0.01 up``, ``at lr 1e-3 and below``,
    ``at lr in [1e-3, 0.1]``, ``at lr 1e-3, 0.1``."""
    groups = [shape.groups[i] for i in members]
    contiguous = members == list(range(members[0], members[-1] + 1))
    if len(members) == 1:
        return f"at {key} {groups[0].label}"
    if contiguous and members[-1] == len(shape.groups) - 1:
        return f"from {key} {unit_text(groups[0].low)} up"
    if contiguous and members[0] == 0:
        return f"at {key} {unit_text(groups[-1].high)} and below"
    if contiguous:
        return f"at {key} in [{unit_text(groups[0].low)}, {unit_text(groups[-1].high)}]"
    return f"at {key} {', '.join(g.label for g in groups)}"


def _span(shape: Shape, members: list[int]) -> str:
    import numpy as np

    return _mean_range(np.concatenate([shape.groups[i].values for i in members]))


def in_words(shape: Shape, metric: str, key: str, rho_clear: int) -> str:
    """The shape as a sentence, each group as ``mean (range)`` of its trials; ``rho_clear`` is the sign of Spearman's
    rho where its interval excludes 0, else 0."""
    def at(members: list[int]) -> str:
        return f"{_span(shape, members)} {_where(shape, members, key)}"

    def where_with(members: list[int]) -> str:
        return f"{_where(shape, members, key)} with {_span(shape, members)}"

    ends = f"{at([0])}; {at([len(shape.groups) - 1])}"
    apart = not set(shape.top) & set(shape.bottom)  # else a rise or fall is told by its two ends
    low, high = (at(shape.bottom), at(shape.top)) if apart else (at([0]), at([len(shape.groups) - 1]))
    evidence = f"groups differ: permutation p={shape.p:.3f}, {shape.share:.0%} of the ranks' variance between them"
    said = {
        "peak": f"not monotonic: {metric} peaks {where_with(shape.top)}, clearly above both ends ({ends})",
        "dip": f"not monotonic: {metric} dips {where_with(shape.bottom)}, clearly below both ends ({ends})",
        "rises": f"{metric} rises from {low} to {high}",
        "falls": f"{metric} falls from {high if apart else low} to {low if apart else high}",
        "differs": f"{metric} differs with {key}, not in one clear direction: highest {where_with(shape.top)}, "
                   f"lowest {where_with(shape.bottom)}",
    }
    if shape.kind in said:
        return f"{said[shape.kind]}; {evidence}"
    if rho_clear:
        side, trend = ("above", "rises") if rho_clear > 0 else ("below", "falls")
        return (f"no clear effect: the groups of {key} differ no more than chance would (p={shape.p:.2f}), though the "
                f"rank correlation's interval lies {side} 0: if {metric} {trend} with {key}, it does so weakly")
    return (f"no clear relation: the rank correlation's interval includes 0 and the groups of {key} differ no more "
            f"than chance would (p={shape.p:.2f})")


def describe(x: Any, y: Any, metric: str, key: str, interval: tuple[float, float]) -> tuple[str, str]:
    """A short verdict for a table (``peak``, ``rises``, ``no clear relation``, ...) and the sentence behind it;
    ``interval`` is Spearman's rho's 95% interval."""
    low, high = interval
    rho_clear = 1 if low > 0 else -1 if high < 0 else 0
    shape = shape_of(x, y)
    if shape is None:
        direction = {1: "rises", -1: "falls", 0: "no clear relation"}[rho_clear]
        return direction, f"{metric} {direction} with {key} (rank correlation)" if rho_clear else direction
    verdicts = {"peak": "not monotonic: peak", "dip": "not monotonic: dip", "rises": "rises", "falls": "falls",
                "differs": "differs, no clear direction"}
    verdict = verdicts.get(shape.kind) or ({1: "no clear effect (rho > 0)", -1: "no clear effect (rho < 0)"}.get(
        rho_clear) or "no clear relation")
    return verdict, in_words(shape, metric, key, rho_clear)
