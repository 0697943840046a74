"""Heatmaps of a metric over two discrete parameters (lr x batch size): the mean per cell written in, every cell
marked for what it holds, and a colour range that does not turn noise into an effect.

A cell's trials are its COMPLETE trials and its failed ones: a trial that failed because its objective could not be
measured often recorded the rest (its test accuracy), and leaving it out would blank exactly the cells that say
"this setting does not train". Such a value is shown marked (``0.41†``, hatched, as every table marks it), a cell
with no value at all is hatched and marked ``n/m``, so no cell of the grid is ever blank.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.axes import discrete, kept_range, unit_text
from hydra_optuna_studies.contract import METRICS_ATTR
from hydra_optuna_studies.results import FAILED_MARK

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

Getter = Callable[["FrozenTrial"], float | None]  # a trial's value of one metric, if it has one
Cells = dict[tuple[Any, Any], list[float]]  # (x value, y value) -> the metric of each trial in that cell

MIN_SPAN = 0.25  # the colour range spans at least this share of the values' largest magnitude
MAX_WIDTH_IN = 11.5  # at 100 dpi: 1150 px, within the report page's 1168 px column, so it is shown unscaled
DPI = 100
CELL_FONT_PT = 10  # 13.9 px at 100 dpi, shown unscaled (MAX_WIDTH_IN)
NOT_MEASURED = "#e6e6e6"  # the ground of a cell with no value, under its hatching
FAILED_NOTE = f"hatched: value{FAILED_MARK} recorded by a trial that did not complete; n/m: not measured"


@dataclass
class Grid:
    """A metric per (x, y) cell: each trial's value (NaN where it has none), and the cells holding a value recorded
    by a failed trial."""

    values: Cells = field(default_factory=dict)
    failed: set[tuple[Any, Any]] = field(default_factory=set)

    def add(self, at: tuple[Any, Any], value: float | None, failed: bool) -> None:
        number = math.nan if value is None else float(value)
        self.values.setdefault(at, []).append(number)
        if failed and math.isfinite(number):
            self.failed.add(at)


def _sort_key(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


def measured_trials(study: Study) -> list[FrozenTrial]:
    """The trials a study's figures draw: the COMPLETE ones, and the FAIL ones that recorded a metric (the
    contract's metrics attr), whose values are shown marked; a study whose every trial failed after measuring
    something still gets its figures."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    return [t for t in trials if t.state == TrialState.COMPLETE
            or any(v is not None for v in (t.user_attrs.get(METRICS_ATTR) or {}).values())]


def discrete_pair(study: Study) -> tuple[str, str] | None:
    """The two swept params when the study sweeps exactly two and both are discrete (e.g. lr x batch size), over
    the :func:`measured_trials`."""
    distributions = {k: d for t in measured_trials(study) for k, d in t.distributions.items()}
    names = sorted(distributions)
    return (names[0], names[1]) if len(names) == 2 and all(discrete(distributions[n]) for n in names) else None


def cells_of(study: Study, x: str, y: str, value: Getter) -> Grid:
    """The metric of each COMPLETE or FAIL trial, by its (x, y) params; a trial whose value is missing counts as
    NaN."""
    from optuna.trial import TrialState

    grid = Grid()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        if x in trial.params and y in trial.params:
            grid.add((trial.params[x], trial.params[y]), value(trial), trial.state == TrialState.FAIL)
    return grid


def colour_range(values: list[float]) -> tuple[float, float]:
    """The colour scale's range for ``values`` (finite, not empty): their own span (less a diverged value far from
    all others, :func:`~hydra_optuna_studies.axes.kept_range`: its cell takes the scale's end colour), widened around
    its middle to at least :data:`MIN_SPAN` of their largest magnitude; kept within [0, 1] when every value lies
    there (accuracies, rates) and above 0 when none is negative.

    Margins of 0.536-0.578 thus get 0.485-0.629, where a difference of 0.04 is a third of the scale, not all of it:
    the colours of a heatmap whose cells differ by noise look alike. Accuracies of 0.95-0.97 get 0.76-1.
    """
    low, high = kept_range(values) or (0.0, 1.0)
    span = max(high - low, MIN_SPAN * max(abs(low), abs(high))) or 1.0
    start = (low + high - span) / 2
    if low >= 0 and high <= 1:
        start = min(start, 1 - span)
    if low >= 0:
        start = max(start, 0.0)
    return start, start + span


def _means(grid: Grid, xs: list[Any], ys: list[Any]) -> Any:
    """The mean of each cell's finite values (rows y, columns x), NaN where it has none."""
    import numpy as np

    means = np.full((len(ys), len(xs)), np.nan)
    for (vx, vy), values in grid.values.items():
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            means[ys.index(vy), xs.index(vx)] = float(np.mean(finite))
    return means


def heatmap_figure(grid: Grid, x: str, y: str, title: str, rates: Cells | None = None) -> tuple[Any, Any]:
    """The heatmap as a matplotlib (figure, axes), cell (i, j) at data coordinates (j, i): see :func:`heatmap`."""
    from matplotlib.colors import Normalize

    from hydra_optuna_studies.figures import pyplot

    plt = pyplot()
    xs = sorted({k[0] for k in grid.values}, key=_sort_key)
    ys = sorted({k[1] for k in grid.values}, key=_sort_key)
    means = _means(grid, xs, ys)
    finite = [float(v) for v in means.flat if math.isfinite(v)]
    low, high = colour_range(finite) if finite else (0.0, 1.0)
    colours = plt.get_cmap("viridis")
    norm = Normalize(low, high)
    cell_w = min(1.25, (MAX_WIDTH_IN - 3.2) / len(xs))
    cell_h = 0.75 if rates else 0.6
    fig, ax = plt.subplots(figsize=(max(7.0, cell_w * len(xs) + 3.2), cell_h * len(ys) + 2.2), dpi=DPI)
    image = ax.imshow(means, cmap=colours, norm=norm, aspect="auto", origin="lower")
    for i, vy in enumerate(ys):
        for j, vx in enumerate(xs):
            if (vx, vy) not in grid.values:
                ax.text(j, i, "-", ha="center", va="center", fontsize=CELL_FONT_PT, color="grey")
            else:
                fill = colours(norm(means[i, j])) if math.isfinite(means[i, j]) else None
                _cell(ax, (j, i), means[i, j], fill, (vx, vy) in grid.failed, _mean_rate(rates, vx, vy))
    ax.set_xticks(range(len(xs)), [_label(v) for v in xs], fontsize=CELL_FONT_PT)
    ax.set_yticks(range(len(ys)), [_label(v) for v in ys], fontsize=CELL_FONT_PT)
    ax.grid(False)
    ax.set_xlabel(x, fontsize=CELL_FONT_PT + 1)
    ax.set_ylabel(y, fontsize=CELL_FONT_PT + 1)
    ax.set_title(f"{title}\n(in brackets: success rate)" if rates else title, fontsize=CELL_FONT_PT + 1)
    slack = 1e-9 * (high - low)
    beyond = {"min": min(finite, default=low) < low - slack, "max": max(finite, default=high) > high + slack}
    bar = fig.colorbar(image, ax=ax, extend={(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (beyond["min"], beyond["max"]), "neither"))
    bar.set_label(f"colour range {low:.3g} to {high:.3g}\n(at least {MIN_SPAN:.0%} of the largest value"
                  + ("; beyond: end colours" if any(beyond.values()) else "") + ")", fontsize=CELL_FONT_PT - 1)
    if grid.failed or any(not math.isfinite(v) for v in means.flat):
        fig.text(0.01, 0.01, FAILED_NOTE, fontsize=CELL_FONT_PT - 1, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig, ax


def _cell(ax: Any, at: tuple[int, int], value: float, fill: Any, failed: bool, rate: str) -> None:
    """The text of one cell and its marks: a value; hatched with ``value†`` where a failed trial recorded it;
    ``n/m`` hatched on grey where nothing was measured (``fill`` None). Marked text sits on a patch of its cell's
    colour, so the hatching never crosses it."""
    from matplotlib.patches import Rectangle

    corner = (at[0] - 0.5, at[1] - 0.5)
    ink = _ink(fill) if fill is not None else "black"
    if fill is None:
        ax.add_patch(Rectangle(corner, 1, 1, facecolor=NOT_MEASURED, edgecolor="none"))
    marked = failed or fill is None
    if marked:
        ax.add_patch(Rectangle(corner, 1, 1, fill=False, hatch="///", linewidth=0,
                               hatchcolor=ink if fill is not None else "grey"))
    text = f"{value:.3g}{FAILED_MARK * failed}" if fill is not None else "n/m"
    box = dict(boxstyle="round,pad=0.15", facecolor=NOT_MEASURED if fill is None else fill, edgecolor="none")
    ax.text(*at, text + rate, ha="center", va="center", fontsize=CELL_FONT_PT, color=ink, bbox=box if marked else None)


def heatmap(grid: Grid, x: str, y: str, title: str, path: Path, rates: Cells | None = None) -> Path:
    """The mean of each (x, y) cell, with the numbers written in, as a PNG (or SVG) at ``path``.

    Every cell says what it holds: a value; ``value†`` hatched where a failed trial recorded it; ``n/m`` hatched on
    grey where its trials measured nothing (a margin over too few samples, a trial that failed before recording);
    ``-`` where no trial ran. ``rates``, for a margin, are its success rates, written in each cell under the value:
    how much of the sample the value rests on. The colour range follows :func:`colour_range` and the colour bar
    says it. The figure is at most :data:`MAX_WIDTH_IN` wide at :data:`DPI`, so the report's page shows it unscaled
    with the cell text at :data:`CELL_FONT_PT` points (14 px).
    """
    from hydra_optuna_studies.figures import pyplot

    fig, _ = heatmap_figure(grid, x, y, title, rates)
    fig.savefig(path)
    pyplot().close(fig)
    return path


def _label(value: Any) -> str:
    """A cell's coordinate as its axis names it: a float in the parameter's units (``1e-4``), anything else as is."""
    return unit_text(value) if isinstance(value, float) else str(value)


def _ink(rgba: tuple[float, ...]) -> str:
    """Black on a light colour, white on a dark one (relative luminance)."""
    r, g, b = rgba[:3]
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "white"


def _mean_rate(rates: Cells | None, x: Any, y: Any) -> str:
    """The cell's mean success rate as a second line of its text, or nothing."""
    finite = [v for v in (rates or {}).get((x, y), []) if math.isfinite(v)]
    return f"\n({sum(finite) / len(finite):.0%})" if finite else ""
