"""A study's figures, right for one objective or several: each as a PNG (matplotlib, Agg) and, for the report's
HTML page, an interactive plotly figure.

Per objective: optimization history, parameter importances (computed so that higher is better where the objective
is maximised), parallel coordinates (the best trials dark and drawn on top), and the objective against each swept
parameter (a log axis where the parameter was drawn on a log scale). For the study: the Pareto front of several
objectives (its members marked), the validation curves of every trial overlaid, and a heatmap per metric when the
study sweeps exactly two discrete parameters (choices or stepped ranges, never continuous intervals). A figure the
data cannot support (one trial, one value) is left out with a note saying why.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.contract import HISTORY_ATTR, METRICS_ATTR
from hydra_optuna_studies.results import app_of, best_trials, objective_names

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
Getter = Callable[["FrozenTrial"], float | None]  # a trial's value of one metric, if it has one


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed), shared by every figure of a report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Optuna's slice plot draws choice() values as categories, and matplotlib logs an INFO line each time.
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    return plt


@contextlib.contextmanager
def _quiet_optuna_plots() -> Iterator[None]:
    """Figures are drawn after every trial has finished, from data the study already holds: Optuna's advisory
    warnings while drawing them (experimental plots, importances over few trials, tight_layout) are no news to the
    user, and must not turn into errors under ``python -W error``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _discrete(distribution: Any) -> bool:
    """A choice or a stepped range: values a grid of cells can hold, unlike a continuous interval."""
    return hasattr(distribution, "choices") or getattr(distribution, "step", None) is not None


def _discrete_pair(study: Study) -> tuple[str, str] | None:
    """The two swept params when the study sweeps exactly two and both are discrete (e.g. lr x batch size)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    distributions = {k: d for t in trials for k, d in t.distributions.items()}
    names = sorted(distributions)
    return (names[0], names[1]) if len(names) == 2 and all(_discrete(distributions[n]) for n in names) else None


def _sort_key(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, int | float) else (1, 0.0, str(value))


Cells = dict[tuple[Any, Any], list[float]]  # (x value, y value) -> the metric of each trial in that cell


def cells_of(study: Study, x: str, y: str, value: Getter) -> Cells:
    """The metric of each COMPLETE trial, by its (x, y) params; a trial whose value is missing counts as NaN."""
    from optuna.trial import TrialState

    cells: Cells = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if x in trial.params and y in trial.params:
            v = value(trial)
            cells.setdefault((trial.params[x], trial.params[y]), []).append(math.nan if v is None else float(v))
    return cells


def beside_metric(study: Study, metric: str) -> str | None:
    """What ``metric`` rests on, as the app said (a success rate beside its margin); None for other metrics."""
    return app_of(study).get("beside", {}).get(metric)


def heatmap(cells: Cells, x: str, y: str, title: str, path: Path, rates: Cells | None = None) -> Path:
    """The mean of each (x, y) cell, with the numbers written in; a cell whose trials measured nothing (NaN: a
    margin over too few samples) is hatched and marked "n/m", not coloured like a value. ``rates``, for a margin,
    are its success rates, written in each cell under the value: how much of the sample the value rests on."""
    import numpy as np

    plt = pyplot()
    xs = sorted({k[0] for k in cells}, key=_sort_key)
    ys = sorted({k[1] for k in cells}, key=_sort_key)
    grid = np.full((len(ys), len(xs)), np.nan)
    measured = np.zeros_like(grid, dtype=bool)
    for (vx, vy), values in cells.items():
        finite = [v for v in values if math.isfinite(v)]
        measured[ys.index(vy), xs.index(vx)] = True
        if finite:
            grid[ys.index(vy), xs.index(vx)] = float(np.mean(finite))
    fig, ax = plt.subplots(figsize=(1.1 * len(xs) + 2.5, 0.7 * len(ys) + 1.8), dpi=90)
    image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    finite = grid[np.isfinite(grid)]
    middle = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for i in range(len(ys)):
        for j in range(len(xs)):
            rate = _mean_rate(rates, xs[j], ys[i])
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3g}{rate}", ha="center", va="center", fontsize=8,
                        color="black" if grid[i, j] > middle else "white")
            elif measured[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", color="grey"))
                ax.text(j, i, f"n/m{rate}", ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.grid(False)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{title}\n(in brackets: success rate)" if rates else title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _mean_rate(rates: Cells | None, x: Any, y: Any) -> str:
    """The cell's mean success rate as a second line of its text, or nothing."""
    finite = [v for v in (rates or {}).get((x, y), []) if math.isfinite(v)]
    return f"\n({sum(finite) / len(finite):.0%})" if finite else ""


def _metric_getters(study: Study) -> dict[str, Getter]:
    """Objectives by name, plus the metrics the app shows beside them (a test accuracy, a margin: not what a metric
    rests on, which its heatmap writes into each cell) from each trial's recorded metrics."""
    getters: dict[str, Getter] = {name: _objective(i) for i, name in enumerate(objective_names(study))}
    app = app_of(study)
    for extra in app.get("shown", ()):
        if extra not in getters and extra not in app.get("beside", {}).values():
            getters[extra] = _recorded(extra)
    return getters


def _objective(index: int) -> Getter:
    return lambda trial: trial.values[index] if trial.values else None


def _recorded(metric: str) -> Getter:
    return lambda trial: (trial.user_attrs.get(METRICS_ATTR) or {}).get(metric)


@dataclass
class Drawn:
    """What :func:`study_plots` made: PNG files, interactive figures for the HTML page, and notes on what it left
    out and why."""

    files: list[Path] = field(default_factory=list)
    interactive: list[tuple[str, Any]] = field(default_factory=list)  # (title, plotly figure)
    notes: list[str] = field(default_factory=list)


MIN_TRIALS_FOR_IMPORTANCES = 8  # fANOVA on fewer trials splits the credit evenly and looks like a finding


def _axis_values(trials: list[FrozenTrial], name: str, distribution: Any) -> tuple[list[float], dict[str, Any]]:
    """A param's values as numbers on a plot axis (choices by position, log-scaled ones as log10) and the axis's
    tick settings."""
    values: list[Any] = [t.params[name] for t in trials]
    if hasattr(distribution, "choices"):
        choices = [str(c) for c in distribution.choices]
        return [float(choices.index(str(v))) for v in values], {"tickvals": list(range(len(choices))),
                                                                  "ticktext": choices}
    if getattr(distribution, "log", False):
        return [math.log10(float(v)) for v in values], {"title_suffix": " (log10)"}
    return [float(v) for v in values], {}


def parallel(study: Study, index: int, path: Path) -> tuple[Path, Any]:
    """Parallel coordinates of the swept params and one objective: lines coloured by the objective, darkest for the
    best trials (whichever the direction), which are drawn last so nothing hides them."""
    import plotly.graph_objects as go
    from optuna.trial import TrialState

    plt = pyplot()
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    maximise = study.directions[index].name == "MAXIMIZE"
    trials.sort(key=lambda t: t.values[index] if maximise else -t.values[index])  # worst first, best on top
    distributions = {k: d for t in trials for k, d in t.distributions.items()}
    names = [n for n in sorted(distributions) if all(n in t.params for t in trials)]
    target = [t.values[index] for t in trials]
    name = objective_names(study)[index]
    axes = [(n, *_axis_values(trials, n, distributions[n])) for n in names]
    dimensions = [dict(label=n + ticks.pop("title_suffix", ""), values=v, **ticks) for n, v, ticks in axes]
    dimensions.append(dict(label=name, values=target))
    figure = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line=dict(color=target, colorscale="Blues", reversescale=not maximise, showscale=True,
                  colorbar=dict(title=name))))
    figure.update_layout(title=f"Parallel coordinates: {name} ({'higher' if maximise else 'lower'} is better, darker)")
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * (len(dimensions))), 5), dpi=100)
    columns = [dim["values"] for dim in dimensions]
    lows = [min(c) for c in columns]
    spans = [(max(c) - min(c)) or 1.0 for c in columns]
    colour = plt.get_cmap("Blues" if maximise else "Blues_r")
    t_low, t_span = min(target), (max(target) - min(target)) or 1.0
    for row, value in enumerate(target):
        ys = [(c[row] - lo) / sp for c, lo, sp in zip(columns, lows, spans, strict=True)]
        ax.plot(range(len(columns)), ys, color=colour(0.25 + 0.75 * (value - t_low) / t_span), lw=1.5)
    for i, dim in enumerate(dimensions):
        ax.axvline(i, color="grey", lw=0.8)
        ticks = dim.get("ticktext")
        if ticks:  # every choice at its place on the axis
            for k, label in enumerate(ticks):
                ax.text(i + 0.03, (k - lows[i]) / spans[i], label, ha="left", va="center", fontsize=8)
        else:
            ax.text(i, -0.06, f"{lows[i]:.3g}", ha="center", va="top", fontsize=8)
            ax.text(i, 1.04, f"{lows[i] + spans[i]:.3g}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(columns)), [d["label"] for d in dimensions], fontsize=9)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    ax.set_title(f"{name}: {'higher' if maximise else 'lower'} is better, drawn darker and on top", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path, figure


def by_param(study: Study, index: int, path: Path) -> tuple[Path, Any]:
    """The objective against each swept param, one panel each, on a log axis where the param was log-scaled."""
    import plotly.graph_objects as go
    from optuna.trial import TrialState
    from plotly.subplots import make_subplots

    plt = pyplot()
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    distributions = {k: d for t in trials for k, d in t.distributions.items()}
    names = sorted(distributions)
    name = objective_names(study)[index]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 1, 3.8), dpi=100, squeeze=False)
    figure = make_subplots(rows=1, cols=len(names), shared_yaxes=True, subplot_titles=names)
    for col, (ax, param) in enumerate(zip(axes[0], names, strict=True), 1):
        having = [t for t in trials if param in t.params]
        raw = [t.params[param] for t in having]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
        categorical = hasattr(distributions[param], "choices") and not numeric
        xs = [str(v) for v in raw] if categorical else raw
        ys = [t.values[index] for t in having]
        ax.scatter(xs, ys, s=18, alpha=0.8)
        # A log-drawn interval, or numeric choices spanning two decades (a learning-rate grid): a log axis.
        spread = numeric and min(raw) > 0 and max(raw) / min(raw) >= 100
        log = getattr(distributions[param], "log", False) or spread
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(param)
        ax.grid(alpha=0.3)
        figure.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name=param,
                                    text=[f"trial {t.number}" for t in having]), row=1, col=col)
        figure.update_xaxes(type="log" if log else ("category" if categorical else "linear"), row=1, col=col)
    axes[0][0].set_ylabel(name)
    fig.suptitle(f"{name} against each swept parameter", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    figure.update_layout(title=f"{name} against each swept parameter", showlegend=False)
    return path, figure


def pareto(study: Study, path: Path) -> tuple[Path, Any]:
    """The trials in objective space with the Pareto front marked (Optuna's own plots, both directions honoured)."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    plt = pyplot()
    names = objective_names(study)
    pm.plot_pareto_front(study, target_names=names)
    plt.gcf().set_size_inches(7, 5.5)
    plt.gcf().tight_layout()
    plt.savefig(path, dpi=100)
    plt.close("all")
    return path, pv.plot_pareto_front(study, target_names=names)


def curves(study: Study, path: Path) -> tuple[Path, Any] | None:
    """Every trial's learning curve per epoch, overlaid, of the first metric the app names for curves (else the
    first objective) that the trials recorded; the best trial of the first objective drawn thick. None when no trial
    recorded such a curve."""
    import plotly.graph_objects as go
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if (t.user_attrs.get(HISTORY_ATTR) or {}).get("epochs")]
    if not trials:
        return None
    rows0 = trials[0].user_attrs[HISTORY_ATTR]["epochs"]
    wanted = [*app_of(study).get("curves", ()), *objective_names(study)]
    metric = next((m for m in wanted if m in rows0[0]), None)
    if metric is None:
        return None
    best = {t.number for t in best_trials(study)}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    figure = go.Figure()
    for t in sorted(trials, key=lambda t: t.number in best):  # the best drawn last, on top
        rows = [r for r in t.user_attrs[HISTORY_ATTR]["epochs"] if r.get(metric) is not None]
        epochs, values = [r["epoch"] for r in rows], [r[metric] for r in rows]
        label = f"trial {t.number}" + (" (best)" if t.number in best else "")
        ax.plot(epochs, values, lw=2.5 if t.number in best else 1, alpha=1 if t.number in best else 0.5,
                color="C3" if t.number in best else None, label=label if t.number in best else None)
        figure.add_trace(go.Scatter(x=epochs, y=values, mode="lines", name=label,
                                    line=dict(width=3 if t.number in best else 1)))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} of every trial per epoch (best trial thick)", fontsize=10)
    ax.grid(alpha=0.3)
    if best:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    figure.update_layout(title=f"{metric} of every trial per epoch", xaxis_title="epoch", yaxis_title=metric)
    return path, figure


def _optuna_plot(kind: str, study: Study, index: int, path: Path) -> tuple[Path, Any]:
    """Optuna's optimization history or parameter importances for one objective, as PNG and plotly figure.

    Given a target function (as each objective of several must be), Optuna's default importance evaluator
    (PED-ANOVA) ranks params by how much they lead to *low* target values, so a maximised objective is passed
    negated: the importances then say what leads to high values, as the objective wants.
    """
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm

    plt = pyplot()
    name = objective_names(study)[index]
    several = len(study.directions) > 1
    maximised = study.directions[index].name == "MAXIMIZE"
    target = (lambda t: -t.values[index]) if several and maximised and kind == "importances" else (
        (lambda t: t.values[index]) if several else None)
    plots: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "history": (pm.plot_optimization_history, pv.plot_optimization_history),
        "importances": (pm.plot_param_importances, pv.plot_param_importances),
    }
    to_png, to_html = plots[kind]
    to_png(study, target=target, target_name=name)
    plt.gcf().set_size_inches(8, 5)
    plt.gcf().tight_layout()
    plt.savefig(path, dpi=100)
    plt.close("all")
    return path, to_html(study, target=target, target_name=name)


def study_plots(study: Study, out_dir: Path, heatmaps: bool = True) -> Drawn:
    """Every figure of the study (module docstring) into ``out_dir``; ``heatmaps`` off leaves the heatmaps to a
    preset's own report."""
    from optuna.trial import TrialState

    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = Drawn()
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        drawn.notes.append("No figures: no trial completed.")
        return drawn
    names = objective_names(study)
    swept = sorted({k for t in complete for k in t.params})
    makers: list[tuple[str, Callable[[], tuple[Path, Any] | None], str | None]] = []
    for i, name in enumerate(names):
        makers.append((f"History of {name}", partial(_optuna_plot, "history", study, i,
                                                      out_dir / f"history_{name}.png"), None))
        few = len(complete) < MIN_TRIALS_FOR_IMPORTANCES
        one_value = len({t.values[i] for t in complete}) < 2
        reason = (f"{len(complete)} complete trials; importances need {MIN_TRIALS_FOR_IMPORTANCES} or more" if few
                  else f"every trial has the same {name}" if one_value else None)
        makers.append((f"Parameter importances for {name}", partial(_optuna_plot, "importances", study, i,
                                                                     out_dir / f"importances_{name}.png"), reason))
        varied = [p for p in swept if len({repr(t.params.get(p)) for t in complete}) > 1]
        reason = None if varied and len(complete) > 1 else "it needs two or more trials that differ"
        makers.append((f"Parallel coordinates of {name}", partial(parallel, study, i,
                                                                   out_dir / f"parallel_{name}.png"), reason))
        makers.append((f"{name} against each parameter", partial(by_param, study, i, out_dir / f"by_param_{name}.png"),
                       None if swept else "nothing was swept"))
    if len(names) > 1:
        makers.append(("Pareto front", partial(pareto, study, out_dir / "pareto.png"), None))
    makers.append(("Learning curves of every trial", partial(curves, study, out_dir / "curves.png"), None))
    with _quiet_optuna_plots():
        for title, make, reason in makers:
            if reason:
                drawn.notes.append(f"{title}: not drawn, {reason}.")
                continue
            try:
                made = make()
            except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances of constant values
                pyplot().close("all")
                drawn.notes.append(f"{title}: not drawn ({error}).")
                continue
            if made is not None:
                drawn.files.append(made[0])
                drawn.interactive.append((title, made[1]))
    pair = _discrete_pair(study) if heatmaps else None
    if heatmaps and pair is None and len(swept) >= 2:
        drawn.notes.append("Heatmaps: not drawn; they need exactly two swept parameters, both discrete (choices or "
                           "stepped ranges).")
    if pair:
        for metric, getter in _metric_getters(study).items():
            if any(getter(t) is not None for t in complete):
                cells = cells_of(study, pair[0], pair[1], getter)
                rate = beside_metric(study, metric)
                rates = cells_of(study, pair[0], pair[1], _recorded(rate)) if rate else None
                title = f"{metric} (mean of complete trials)"
                drawn.files.append(heatmap(cells, pair[0], pair[1], title, out_dir / f"heatmap_{metric}.png", rates))
    return drawn
