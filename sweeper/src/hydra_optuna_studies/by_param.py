"""A metric against each swept parameter, its points coloured by another parameter: margin against lr coloured by
batch size, and batch size coloured by lr, in one figure.

One figure per metric (each objective, and the metrics the app shows beside them), with one panel per swept
parameter: at most :data:`MAX_PANELS`, those that explain the metric most first (:func:`_relation`), so the count of
figures and panels stays bounded however many parameters a study sweeps. The points are coloured by the
parameter most related after the first panel's own; buttons on the interactive figure colour them by any other.
Log-scaled parameters sit on log axes with ticks in their units; continuous samplers and grids are drawn alike.
A failed trial that recorded the metric is drawn as an ``x`` (its value is real, but its trial did not complete).
A conditional parameter (momentum only where the optimizer is sgd) thins only the panels it is drawn in: each panel
draws the trials that have its parameter and the colouring's, and the default colouring is a parameter the most
trials have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.axes import Axis, is_log, kept_range, numeric, padded, param_axis, unit_text

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

    from hydra_optuna_studies.heatmaps import Getter

MAX_PANELS = 4


@dataclass
class Points:
    """The trials that have the metric, their values, whether each failed, and the parameters to draw (a trial
    may lack one: a conditional parameter)."""

    metric: str
    trials: list[FrozenTrial]
    values: list[float]
    failed: list[bool]
    params: list[str]  # most related first
    distributions: dict[str, Any]

    def having(self, *names: str) -> list[int]:
        """The indices of the trials that have every one of the params ``names``."""
        return [i for i, t in enumerate(self.trials) if all(n in t.params for n in names)]

    def axis(self, name: str) -> Axis:
        """The param's axis over the trials that have it, its positions in the order of :meth:`having`."""
        return param_axis(name, [self.trials[i].params[name] for i in self.having(name)],
                          self.distributions.get(name))

    def y_range(self) -> tuple[float, float]:
        """The metric's axis range: every value but a diverged one far from all others (``axes.kept_range``)."""
        return padded(kept_range(self.values) or (0.0, 1.0))

    def note(self) -> str:
        """The trials whose value lies beyond the metric's axis, or nothing."""
        low, high = self.y_range()
        beyond = [(t.number, v) for t, v in zip(self.trials, self.values, strict=True) if not low <= v <= high]
        if not beyond:
            return ""
        listed = "; ".join(f"trial {n} ({self.metric} {v:.4g})" for n, v in beyond[:5])
        return f"{len(beyond)} trial{'s' * (len(beyond) > 1)} beyond the axis (diverged, far from the rest): {listed}"


def points_of(study: Study, metric: str, value: Getter) -> Points | None:
    """The COMPLETE and FAIL trials with a finite ``metric``, and the params that vary among the trials having
    them; None when fewer than two trials or no param varied."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
    having = [(t, v) for t in trials if (v := value(t)) is not None and math.isfinite(v)]
    distributions = {k: d for t, _ in having for k, d in t.distributions.items()}
    varied = [p for p in sorted(distributions) if len({repr(t.params[p]) for t, _ in having if p in t.params}) > 1]
    if len(having) < 2 or not varied:
        return None
    found = Points(metric, [t for t, _ in having], [float(v) for _, v in having],
                   [t.state == TrialState.FAIL for t, _ in having], varied, distributions)
    found.params = sorted(varied, key=lambda p: -_relation(found, p))[:MAX_PANELS]
    return found


def _relation(points: Points, name: str) -> float:
    """How much of the metric's variance lies between the param's values (or bins of them): the panels' order. Not
    a rank correlation, which misses a relation that is not monotonic."""
    import numpy as np

    from hydra_optuna_studies.relations import groups_of, share_between

    values = [points.values[i] for i in points.having(name)]
    groups = groups_of(np.array(points.axis(name).positions), np.array(values))
    return share_between(groups) if len(groups) > 1 else 0.0


def colour_by(points: Points) -> str:
    """The default colouring: the parameter most related to the metric after the first panel's own, among those
    the most trials have (a conditional one would leave the trials without it out of every panel)."""
    return max([*points.params[1:], points.params[0]], key=lambda p: len(points.having(p)))


def _x_axis(points: Points, name: str) -> dict[str, Any]:
    """A panel's plotly axis settings, decided over every trial having its param (so the same for each colouring):
    a log axis with ticks in the param's units, categories, or a linear axis."""
    every = [points.trials[i].params[name] for i in points.having(name)]
    if not numeric(every):
        return {"type": "category"}
    if is_log(every, points.distributions.get(name)):
        ticks = [10**v for v in points.axis(name).tickvals or []]  # a log axis always has ticks (axes.param_axis)
        return {"type": "log", "tickvals": ticks, "ticktext": [unit_text(t) for t in ticks]}
    return {"type": "linear"}


def _xs(points: Points, name: str, shown: list[int], axis: dict[str, Any]) -> list[Any]:
    """The x values of the trials ``shown`` (indices) on a panel's ``axis``: categories by name, numbers as they
    are."""
    raw = [points.trials[i].params[name] for i in shown]
    return [str(v) for v in raw] if axis["type"] == "category" else raw


def _colouring(points: Points, name: str) -> tuple[Axis, dict[int, float]]:
    """The colours' values for ``name``, with the colour bar's ticks in the param's units: a grid's few values by
    rank (8, 32, 128 as three colours evenly apart), others as on an axis (log10 where log-scaled); and each trial's
    colour value by its index (the trials that have the param)."""
    axis = points.axis(name)
    if axis.tickvals is not None and len(axis.tickvals) <= 8 and set(axis.positions) <= set(axis.tickvals):
        rank = {v: float(i) for i, v in enumerate(axis.tickvals)}
        axis = Axis(name, [rank[v] for v in axis.positions], False, list(rank.values()), axis.ticktext)
    return axis, dict(zip(points.having(name), axis.positions, strict=True))


def _bar(colouring: Axis) -> dict[str, Any]:
    return {"title": {"text": colouring.title}, "tickvals": colouring.tickvals, "ticktext": colouring.ticktext}


def _hover(points: Points, i: int) -> str:
    trial, failed = points.trials[i], points.failed[i]
    params = " ".join(f"{k}={unit_text(p) if isinstance(p, float) else p}" for k, p in trial.params.items())
    value = f"{points.metric} {points.values[i]:.4g}"
    return f"trial {trial.number}{' (failed; recorded value)' * failed}: {value}<br>{params}"


def _panels(points: Points, colour: str) -> dict[str, list[list[Any]]]:
    """Every panel's points when coloured by ``colour``, as plotly's restyle takes them (per property, a list per
    panel): the trials that have the panel's param and ``colour``."""
    _, shade = _colouring(points, colour)
    data: dict[str, list[list[Any]]] = {"x": [], "y": [], "marker.color": [], "marker.symbol": [], "hovertext": []}
    for name in points.params:
        shown = points.having(name, colour)
        data["x"].append(_xs(points, name, shown, _x_axis(points, name)))
        data["y"].append([points.values[i] for i in shown])
        data["marker.color"].append([shade[i] for i in shown])
        data["marker.symbol"].append(["x" if points.failed[i] else "circle" for i in shown])
        data["hovertext"].append([_hover(points, i) for i in shown])
    return data


def plotly_figure(points: Points) -> Any:
    """The interactive figure: a panel per param, a shared colour axis, a button per colouring."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(points.params), shared_yaxes=True, horizontal_spacing=0.04)
    default = colour_by(points)
    colouring, _ = _colouring(points, default)
    panels = _panels(points, default)
    for col, name in enumerate(points.params, 1):
        k = col - 1
        figure.add_trace(go.Scatter(x=panels["x"][k], y=panels["y"][k], mode="markers", name=name,
                                    hovertext=panels["hovertext"][k], hoverinfo="text",
                                    marker=dict(color=panels["marker.color"][k], coloraxis="coloraxis", size=10,
                                                symbol=panels["marker.symbol"][k],
                                                line=dict(width=0.5, color="white"))),
                         row=1, col=col)
        figure.update_xaxes(title_text=points.axis(name).title, row=1, col=col, **_x_axis(points, name))
    figure.update_yaxes(range=list(points.y_range()))
    figure.update_yaxes(title_text=points.metric, row=1, col=1)
    figure.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=_bar(colouring)), showlegend=False,
                         title=_title(points, default), updatemenus=[_buttons(points, default)])
    notes = [*(["x: a failed trial's recorded value"] if any(points.failed) else []), *filter(None, [points.note()])]
    if notes:
        figure.add_annotation(text="<br>".join(notes), xref="paper", yref="paper", x=0, y=0, yshift=-50,
                              showarrow=False, xanchor="left", yanchor="top", align="left")
        figure.update_layout(margin=dict(b=120))
    return figure


def _title(points: Points, colour: str) -> str:
    return f"{points.metric} against each swept parameter, coloured by {colour}"


def _buttons(points: Points, default: str) -> dict[str, Any]:
    """A dropdown that colours every panel by another param (its colour bar and the title follow). Where a trial
    lacks a drawn param (a conditional one), a colouring changes which trials each panel shows, so each button
    sets the panels' points too; else their colours only."""
    every = len(points.having(*points.params)) == len(points.trials)
    buttons = []
    for name in [default, *(p for p in points.params if p != default)]:
        colouring, _ = _colouring(points, name)
        panels = _panels(points, name)
        buttons.append(dict(label=f"colour by {name}", method="update",
                            args=[{"marker.color": panels["marker.color"]} if every else panels,
                                  {"coloraxis.colorbar.title.text": colouring.title,
                                   "coloraxis.colorbar.tickvals": colouring.tickvals,
                                   "coloraxis.colorbar.ticktext": colouring.ticktext,
                                   "title.text": _title(points, name)}]))
    return dict(buttons=buttons, direction="down", x=1, xanchor="right", y=1.02, yanchor="bottom", showactive=True)


def png(points: Points, path: Path) -> Path:
    """The figure as a PNG, coloured by the default param (matplotlib)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    from hydra_optuna_studies.figures import pyplot

    plt = pyplot()
    default = colour_by(points)
    colouring, shade = _colouring(points, default)
    n = len(points.params)
    width = 3.8 * n + 1.8
    fig, axes = plt.subplots(1, n, figsize=(width, 4.4), dpi=100, squeeze=False, sharey=True)
    # Margins in inches, set by hand: a layout engine (constrained, tight) would double the time this figure takes.
    fig.subplots_adjust(left=0.8 / width, right=1 - 1.5 / width, bottom=0.2, top=0.88, wspace=0.08)
    for ax, name in zip(axes[0], points.params, strict=True):
        shown = points.having(name, default)
        settings = _x_axis(points, name)
        xs = _xs(points, name, shown, settings)
        for failed, marker in ((False, "o"), (True, "x")):
            chosen = [(x, i) for x, i in zip(xs, shown, strict=True) if points.failed[i] == failed]
            image = ax.scatter([x for x, _ in chosen], [points.values[i] for _, i in chosen], marker=marker, s=36,
                               c=[shade[i] for _, i in chosen], cmap="viridis",
                               vmin=min(colouring.positions), vmax=max(colouring.positions),
                               label="failed (recorded value)" if failed and chosen else None)
        if settings["type"] == "log":
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(settings["tickvals"]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels(settings["ticktext"])
        ax.set_xlabel(points.axis(name).title)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(points.metric)
    axes[0][0].set_ylim(*points.y_range())
    if any(points.failed):
        axes[0][0].legend(fontsize=8)
    bar = fig.colorbar(image, cax=fig.add_axes((1 - 1.3 / width, 0.2, 0.18 / width, 0.68)))
    bar.set_label(colouring.title)
    if colouring.tickvals is not None:
        bar.set_ticks(colouring.tickvals, labels=colouring.ticktext)
    fig.suptitle(_title(points, default), fontsize=10)
    if note := points.note():
        fig.text(0.01, 0.01, note, fontsize=8)
    fig.savefig(path)
    plt.close(fig)
    return path


def by_param(study: Study, metric: str, value: Getter, path: Path) -> tuple[Path, Any]:
    """``metric`` against each swept param, coloured by another (module docstring), as PNG and plotly figure.

    Raises ValueError when fewer than two trials have the metric or no param varied: the report notes it.
    """
    points = points_of(study, metric, value)
    if points is None:
        raise ValueError(f"fewer than two trials have {metric}, or no swept parameter varied")
    return png(points, path), plotly_figure(points)
