"""A study's figures, right for one objective or several: each as a PNG (matplotlib, Agg) and, for the report's
HTML page, an interactive plotly figure.

Per objective: optimization history, parameter importances (computed so that higher is better where the objective
is maximised) and parallel coordinates (the best trials dark and drawn on top). Per objective and per metric the
app shows beside them: the metric against each swept parameter, coloured by another (:mod:`.by_param`). For the
study: the Pareto front of several objectives (:mod:`.pareto`), the validation curves of every trial overlaid, and a
heatmap per metric when the study sweeps exactly two discrete parameters (:mod:`.heatmaps`; choices or stepped
ranges, never continuous intervals). Parameters are put on axes by :mod:`.axes`: in their own units, log-scaled ones
on log axes. A figure the data cannot support (one trial, one value) is left out with a note saying why.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.axes import param_axis
from hydra_optuna_studies.by_param import by_param
from hydra_optuna_studies.contract import HISTORY_ATTR, METRICS_ATTR
from hydra_optuna_studies.heatmaps import Getter, cells_of, discrete_pair, heatmap, measured_trials
from hydra_optuna_studies.pareto import pareto
from hydra_optuna_studies.results import app_of, best_trials, objective_names

if TYPE_CHECKING:
    from optuna import Study

log = logging.getLogger(__name__)


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


def beside_metric(study: Study, metric: str) -> str | None:
    """What ``metric`` rests on, as the app said (a success rate beside its margin); None for other metrics."""
    return app_of(study).get("beside", {}).get(metric)


def _metric_getters(study: Study) -> dict[str, Getter]:
    """Objectives by name, plus the metrics the app shows beside them (a test accuracy, a margin: not what a metric
    rests on, which its heatmap writes into each cell) from each trial's recorded metrics."""
    getters: dict[str, Getter] = {name: _objective(i, name) for i, name in enumerate(objective_names(study))}
    app = app_of(study)
    for extra in app.get("shown", ()):
        if extra not in getters and extra not in app.get("beside", {}).values():
            getters[extra] = _recorded(extra)
    return getters


def _objective(index: int, name: str) -> Getter:
    """The objective's value; for a trial without values (failed), what it recorded under the objective's name."""
    recorded = _recorded(name)
    return lambda trial: trial.values[index] if trial.values else recorded(trial)


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
    axes = [param_axis(n, [t.params[n] for t in trials], distributions[n]) for n in names]
    dimensions: list[dict[str, Any]] = [
        dict(label=a.title, values=a.positions, **({"tickvals": a.tickvals, "ticktext": a.ticktext}
                                                     if a.tickvals is not None else {})) for a in axes]
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
        if "tickvals" in dim:  # each tick at its place on the axis, in the param's units
            for tick, label in zip(dim["tickvals"], dim["ticktext"], strict=True):
                if lows[i] <= tick <= lows[i] + spans[i]:
                    ax.text(i + 0.03, (tick - lows[i]) / spans[i], label, ha="left", va="center", fontsize=8)
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
    preset's own report. The heatmaps and the metrics against each parameter draw the failed trials' recorded
    values too (marked), so a study whose every trial failed after measuring something still gets them; the
    figures of objectives' values (history, importances, parallel coordinates, Pareto front) need complete trials."""
    from optuna.trial import TrialState

    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = Drawn()
    measured = measured_trials(study)
    if not measured:
        drawn.notes.append("No figures: no trial completed or recorded a metric.")
        return drawn
    complete = [t for t in measured if t.state == TrialState.COMPLETE]
    no_complete = None if complete else "no trial completed"
    names = objective_names(study)
    swept = sorted({k for t in measured for k in t.params})
    makers: list[tuple[str, Callable[[], tuple[Path, Any] | None], str | None]] = []
    if len(names) > 1:
        makers.append(("Pareto front", partial(pareto, study, out_dir / "pareto.png"), no_complete))
    for metric, getter in _metric_getters(study).items():
        makers.append((f"{metric} against each parameter", partial(by_param, study, metric, getter,
                                                                    out_dir / f"by_param_{metric}.png"),
                       None if swept else "nothing was swept"))
    for i, name in enumerate(names):
        makers.append((f"History of {name}", partial(_optuna_plot, "history", study, i,
                                                      out_dir / f"history_{name}.png"), no_complete))
        few = len(complete) < MIN_TRIALS_FOR_IMPORTANCES
        one_value = len({t.values[i] for t in complete}) < 2
        reason = (f"{len(complete)} complete trials; importances need {MIN_TRIALS_FOR_IMPORTANCES} or more" if few
                  else f"every trial has the same {name}" if one_value else None)
        makers.append((f"Parameter importances for {name}", partial(_optuna_plot, "importances", study, i,
                                                                     out_dir / f"importances_{name}.png"), reason))
        varied = [p for p in swept if len({repr(t.params.get(p)) for t in complete}) > 1]
        reason = no_complete or (None if varied and len(complete) > 1 else "it needs two or more trials that differ")
        makers.append((f"Parallel coordinates of {name}", partial(parallel, study, i,
                                                                   out_dir / f"parallel_{name}.png"), reason))
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
    pair = discrete_pair(study) if heatmaps else None
    if heatmaps and pair is None and len(swept) >= 2:
        drawn.notes.append("Heatmaps: not drawn; they need exactly two swept parameters, both discrete (choices or "
                           "stepped ranges).")
    if pair:
        for metric, getter in _metric_getters(study).items():
            if any(getter(t) is not None for t in measured):
                cells = cells_of(study, pair[0], pair[1], getter)
                rate = beside_metric(study, metric)
                rates = cells_of(study, pair[0], pair[1], _recorded(rate)).values if rate else None
                title = f"{metric} (mean per cell)"
                drawn.files.append(heatmap(cells, pair[0], pair[1], title, out_dir / f"heatmap_{metric}.png", rates))
    return drawn
