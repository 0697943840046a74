"""A study's figures: the standard Optuna plots per objective, plus annotated heatmaps of two discrete params.

PNG files come from matplotlib (Agg, no display needed). The parallel-coordinates plot also comes as interactive
HTML from plotly (brush an axis to filter trials), with plotly's script embedded so it opens offline. Every
function writes files and returns their paths.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)
Getter = Callable[["FrozenTrial"], float | None]  # a trial's value of one metric, if it has one


def _pyplot() -> Any:
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


def _discrete_pair(study: Study) -> tuple[str, str] | None:
    """Two params with few distinct values each (e.g. lr x batch size): the heatmap's axes."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = sorted({k for t in trials for k in t.params})
    few = [n for n in names if 1 < len({repr(t.params.get(n)) for t in trials if n in t.params}) <= 12]
    return (few[0], few[1]) if len(names) == 2 and len(few) == 2 else None


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


def heatmap(cells: Cells, x: str, y: str, title: str, path: Path) -> Path:
    """The mean of each (x, y) cell, with the numbers written in; a cell whose trials measured nothing (NaN: a
    margin over too few samples) is hatched and marked "n/m", not coloured like a value."""
    import numpy as np

    plt = _pyplot()
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
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=8,
                        color="black" if grid[i, j] > middle else "white")
            elif measured[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", color="grey"))
                ax.text(j, i, "n/m", ha="center", va="center", fontsize=8, color="black")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.grid(False)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _metric_getters(study: Study) -> dict[str, Getter]:
    """Objectives by name, plus test accuracy and each measure's headline metric (the DeepFool margin, ...) from each
    trial's recorded metrics."""
    from sweep.measures import MEASURES

    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    getters: dict[str, Getter] = {name: _objective(i) for i, name in enumerate(names)}
    for extra in ("test_acc", *(measure.headline for measure in MEASURES.values())):
        if extra not in getters:
            getters[extra] = _recorded(extra)
    return getters


def _objective(index: int) -> Getter:
    return lambda trial: trial.values[index] if trial.values else None


def _recorded(metric: str) -> Getter:
    return lambda trial: (trial.user_attrs.get("metrics") or {}).get(metric)


def study_plots(study: Study, out_dir: Path, heatmaps: bool = True) -> list[Path]:
    """Optimization history, parameter importances, parallel coordinates and slices (PNG + HTML) per objective,
    and a heatmap per metric when the study sweeps two discrete params (unless ``heatmaps`` is off: a preset's own
    report draws them)."""
    import optuna.visualization as pv
    import optuna.visualization.matplotlib as pm
    from optuna.trial import TrialState

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    written: list[Path] = []
    names = study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]
    kinds: dict[str, tuple[Callable[..., Any], Callable[..., Any] | None, int]] = {  # matplotlib, plotly (HTML), trials
        "history": (pm.plot_optimization_history, None, 1),
        "importances": (pm.plot_param_importances, None, 2),
        "parallel": (pm.plot_parallel_coordinate, pv.plot_parallel_coordinate, 1),
        "slice": (pm.plot_slice, None, 1),
    }
    with _quiet_optuna_plots():
        for i, name in enumerate(names):
            target = None if len(names) == 1 else (lambda t, i=i: t.values[i])
            # Importances rank what leads to *low* targets; a maximised objective of several is negated for them.
            maximised = target is not None and study.directions[i].name == "MAXIMIZE"
            low_is_good = (lambda t, i=i: -t.values[i]) if maximised else target
            for kind, (to_png, to_html, needs) in kinds.items():
                if len(complete) < needs:
                    continue
                stem = out_dir / f"{kind}_{name}"
                try:
                    to_png(study, target=low_is_good if kind == "importances" else target, target_name=name)
                    plt.gcf().set_size_inches(8, 5)
                    plt.gcf().tight_layout()
                    plt.savefig(stem.with_suffix(".png"), dpi=90)
                    plt.close("all")
                    written.append(stem.with_suffix(".png"))
                    if to_html:
                        figure = to_html(study, target=target, target_name=name)
                        figure.write_html(stem.with_suffix(".html"), include_plotlyjs=True)
                        written.append(stem.with_suffix(".html"))
                except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances of constant values
                    plt.close("all")
                    log.warning("Skipped the %s plot of %s: %s", kind, name, error)
    pair = _discrete_pair(study) if heatmaps else None
    if pair:
        for metric, getter in _metric_getters(study).items():
            if any(getter(t) is not None for t in complete):
                cells = cells_of(study, pair[0], pair[1], getter)
                title = f"{metric} (mean of complete trials)"
                written.append(heatmap(cells, pair[0], pair[1], title, out_dir / f"heatmap_{metric}.png"))
    return written
