"""The Pareto front of a study with several objectives, drawn so it reads at a glance: its members in one strong
colour and every other trial grey (never a colour scale by trial number), a line through the members in the order
of the first objective, each axis naming its objective's direction and which way is better, and no colour bar.

Trials whose values would squash the front into a corner (diverged: a value far from all others; or not finite)
are left out of the axes, and a note on the figure says how many and which. Where the trials that remain still
leave the front in a corner (untrained trials at chance accuracy), a second panel zooms on the front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.axes import kept_range, padded
from hydra_optuna_studies.results import objective_names, param_text

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

MEMBER, OTHER = "#d62728", "#9e9e9e"  # a strong red for the front, grey for the rest
ZOOM = 0.25  # a front spanning less than this share of an axis gets a second panel, zoomed on it


@dataclass
class Front:
    """What the figure shows: the trials inside the axes (members apart), the axes' ranges, the trials left out."""

    names: list[str]
    maximise: list[bool]
    others: list[FrozenTrial]
    members: list[FrozenTrial]  # sorted by the first objective: the order the front's line follows
    ranges: list[tuple[float, float]]
    left_out: list[FrozenTrial]
    numbers: frozenset[int]  # the front's members, those left out included
    total: int  # complete trials

    def title(self, i: int, vertical: bool) -> str:
        """``test_acc (maximize, better →)``: the objective, its direction, which way is better on this axis."""
        arrow = ("↑" if self.maximise[i] else "↓") if vertical else ("→" if self.maximise[i] else "←")
        return f"{self.names[i]} ({'maximize' if self.maximise[i] else 'minimize'}, better {arrow})"

    def zoom(self) -> list[tuple[float, float]] | None:
        """Per objective, the range around the front's members, when they span less than :data:`ZOOM` of an axis;
        None when they fill the axes well enough, or no other trial widens the axes."""
        if not self.members or not self.others:
            return None
        spans = [(min(t.values[i] for t in self.members), max(t.values[i] for t in self.members))
                 for i in range(len(self.names))]
        if all(high - low >= ZOOM * (axis[1] - axis[0]) for (low, high), axis in zip(spans, self.ranges,
                                                                                    strict=True)):
            return None
        around = []
        for (low, high), (start, end) in zip(spans, self.ranges, strict=True):
            pad = max(0.5 * (high - low), 0.05 * (end - start))
            around.append((max(start, low - pad), min(end, high + pad)))
        return around

    def heading(self) -> str:
        count = f"{len(self.numbers)} trial{'s' * (len(self.numbers) != 1)}"
        line = "" if len(self.names) == 2 else "; no line: in a projection, members need not lie on a front"
        return f"Pareto front: {count} (red) of {self.total} complete{line}"

    def note(self) -> str:
        """How many trials are left out of the axes, and which (the first five), or nothing."""
        if not self.left_out:
            return ""
        on_front = sum(t.number in self.numbers for t in self.left_out)
        listed = "; ".join(f"trial {t.number} ({_values(self.names, t)})" for t in self.left_out[:5])
        more = f"; {len(self.left_out) - 5} more" if len(self.left_out) > 5 else ""
        front = f", {on_front} of them on the front" if on_front else ""
        return (f"{len(self.left_out)} trial{'s' * (len(self.left_out) > 1)} left out of the axes (diverged or not "
                f"finite{front}): {listed}{more}")


def front_of(study: Study) -> Front:
    """The study's complete trials split into the front's members and the others, with the axes' ranges."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    numbers = frozenset(t.number for t in study.best_trials)
    names = objective_names(study)
    kept = [kept_range([t.values[i] for t in trials]) for i in range(len(names))]
    inside = [t for t in trials
              if all(r is not None and r[0] <= v <= r[1] for v, r in zip(t.values, kept, strict=True))]
    ranges = [padded((min(t.values[i] for t in inside), max(t.values[i] for t in inside))) if inside else (0.0, 1.0)
              for i in range(len(names))]  # of the trials shown: one left out for one objective leaves both axes
    members = sorted((t for t in inside if t.number in numbers), key=lambda t: t.values[0])
    return Front(names, [d.name == "MAXIMIZE" for d in study.directions],
                 [t for t in inside if t.number not in numbers], members, ranges,
                 [t for t in trials if t not in inside], numbers, len(trials))


def _values(names: list[str], trial: FrozenTrial) -> str:
    return ", ".join(f"{n} {v:.4g}" for n, v in zip(names, trial.values, strict=True))


def _hover(trial: FrozenTrial, names: list[str]) -> str:
    values = _values(names, trial)
    params = " ".join(f"{k}={param_text(v)}" for k, v in trial.params.items())
    return f"trial {trial.number}: {values}<br>{params}"


@dataclass
class View:
    """One panel: a pair of objectives (x, y) and the ranges it shows."""

    x: int
    y: int
    ranges: list[tuple[float, float]]
    title: str = ""


def views(front: Front) -> list[View]:
    """A panel per pair of objectives; for two objectives with a front in a corner, a second panel zoomed on it."""
    shown = [View(i, j, front.ranges) for i, j in combinations(range(len(front.names)), 2)]
    if len(shown) == 1 and (around := front.zoom()):
        return [View(0, 1, front.ranges, "all trials"), View(0, 1, around, "zoomed on the front")]
    return shown


def plotly_figure(front: Front) -> Any:
    """The front as an interactive figure: a panel per :func:`views`, three to a row."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = views(front)
    columns = min(3, len(panels))
    figure = make_subplots(rows=math.ceil(len(panels) / columns), cols=columns,
                           subplot_titles=[v.title for v in panels] if panels[0].title else None)
    for k, view in enumerate(panels):
        row, col = k // columns + 1, k % columns + 1
        for trials, name, colour, size, mode in (
                (front.others, f"other trials ({len(front.others)})", OTHER, 9, "markers"),
                (front.members, f"Pareto front ({len(front.members)})", MEMBER, 12,
                 "lines+markers" if len(front.names) == 2 else "markers")):
            figure.add_trace(go.Scatter(
                x=[t.values[view.x] for t in trials], y=[t.values[view.y] for t in trials], mode=mode, name=name,
                showlegend=k == 0, legendgroup=name, marker=dict(color=colour, size=size, line=dict(color="white",
                                                                                                    width=1)),
                line=dict(color=colour, width=2.5), hovertext=[_hover(t, front.names) for t in trials],
                hoverinfo="text"), row=row, col=col)
        figure.update_xaxes(title_text=front.title(view.x, False), range=list(view.ranges[view.x]), row=row, col=col)
        figure.update_yaxes(title_text=front.title(view.y, True), range=list(view.ranges[view.y]), row=row, col=col)
    figure.update_layout(title=front.heading(), legend=dict(orientation="h", y=1.02, x=1, xanchor="right",
                                                             yanchor="bottom"))
    if note := front.note():
        figure.add_annotation(text=note, xref="paper", yref="paper", x=0, y=0, yshift=-50, showarrow=False,
                              xanchor="left", yanchor="top", font=dict(size=12))
        figure.update_layout(margin=dict(b=110))
    return figure


def png(front: Front, path: Path) -> Path:
    """The same figure as a PNG (matplotlib)."""
    from hydra_optuna_studies.figures import pyplot

    plt = pyplot()
    panels = views(front)
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), dpi=100, squeeze=False)
    for ax, view in zip(axes[0], panels, strict=True):
        ax.scatter([t.values[view.x] for t in front.others], [t.values[view.y] for t in front.others], s=40,
                   color=OTHER, label=f"other trials ({len(front.others)})", zorder=2)
        ax.plot([t.values[view.x] for t in front.members], [t.values[view.y] for t in front.members], color=MEMBER,
                lw=2.5 if len(front.names) == 2 else 0, marker="o", markersize=9, markeredgecolor="white",
                label=f"Pareto front ({len(front.members)})", zorder=3)
        ax.set_xlim(*view.ranges[view.x])
        ax.set_ylim(*view.ranges[view.y])
        ax.set_xlabel(front.title(view.x, False))
        ax.set_ylabel(front.title(view.y, True))
        ax.set_title(view.title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(front.heading(), fontsize=11)
    if note := front.note():
        fig.text(0.01, 0.01, note, fontsize=8, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def pareto(study: Study, path: Path) -> tuple[Path, Any]:
    """The study's Pareto front as a PNG at ``path`` and an interactive figure (module docstring)."""
    front = front_of(study)
    return png(front, path), plotly_figure(front)
