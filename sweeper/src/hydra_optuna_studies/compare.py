"""Several studies on one page: ``sweep-report`` with several ``--study`` (one storage) or several ``--storage``.

The page sets the studies side by side: each study's best trial (or its Pareto front's members) with its values
and params, the best configs as columns of one table (a param a study does not sweep is ``-``), and, per objective
name, one figure with every study that has it: the objective against the trial number (with each study's best so far
as a line) and against each swept parameter, on shared axes, one colour per study. A study is named by its name, and
by its storage too where two studies share a name (the same study in two storages, say).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.report import Rendered, Studies, figures_html, made_in, markdown_to_html
from hydra_optuna_studies.results import objective_names, param_text, result_sentence, state_counts

if TYPE_CHECKING:
    from optuna import Study

PANELS_PER_ROW = 4


def labels_of(studies: Studies) -> list[str]:
    """Each study's name, with its storage (password masked) where several studies share the name."""
    names = [study.study_name for _, study in studies]
    return [f"{name} ({masked(storage)})" if names.count(name) > 1 else name
            for name, (storage, _) in zip(names, studies, strict=True)]


def render_comparison(studies: Studies, summaries: list[dict[str, Any]], folder: Path) -> Rendered:
    """The comparison page of ``studies`` (``summaries``: each one's :func:`~hydra_optuna_studies.results.summarize`),
    made in ``folder``."""
    labels = labels_of(studies)
    title = f"Comparison of {len(studies)} studies"
    markdown = "\n".join([f"# {title}", "", *_studies(labels, summaries), *_best(labels, summaries),
                          *_side_by_side(labels, summaries), *_directions(labels, summaries), "## Figures", "",
                          "In report.html: each objective against the trial number and against each swept parameter, "
                          "one colour per study.", ""])
    figures = [(f"{name} of every study", objective_figure(name, labels, [study for _, study in studies]))
               for name in dict.fromkeys(m for s in summaries for m in s["metrics"])]
    body = markdown_to_html(markdown.split("\n## Figures")[0], folder) + "<h2>Figures</h2>" + figures_html(figures)
    return Rendered(title, markdown, body, made_in(folder))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows),
            ""]


def _value(value: Any) -> str:
    """A metric's value in the table: ``-`` where the study has no such metric, ``n/m`` where it was not measured."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "n/m" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _studies(labels: list[str], summaries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for label, summary in zip(labels, summaries, strict=True):
        lines += [f"- **{label}** (storage `{summary['storage']}`): {result_sentence(summary)}"]
    return [*lines, ""]


def _best_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return list(summary.get("best") or summary.get("pareto_front") or [])


def _best(labels: list[str], summaries: list[dict[str, Any]]) -> list[str]:
    """The best trial of each study (each member of a Pareto front), its values and params."""
    metrics = list(dict.fromkeys(m for s in summaries for m in s["metrics"]))
    rows = []
    for label, summary in zip(labels, summaries, strict=True):
        best = _best_rows(summary)
        if not best:
            rows.append([label, "-", *("-" for _ in metrics), state_counts(summary), "no complete trial"])
        for trial in best:
            values = dict(zip(summary["metrics"], trial["values"], strict=True))
            params = " ".join(f"{k}={param_text(v)}" for k, v in trial["params"].items())
            rows.append([label, str(trial["number"]), *(_value(values.get(m)) for m in metrics), state_counts(summary),
                         params or "-"])
    return ["## Best of each study", "", *_table(["study", "trial", *metrics, "trials", "params"], rows)]


def _side_by_side(labels: list[str], summaries: list[dict[str, Any]]) -> list[str]:
    """The best configs as columns, one row per swept param: where the studies' answers differ."""
    columns = [(f"{label} #{t['number']}", t["params"]) for label, s in zip(labels, summaries, strict=True)
               for t in _best_rows(s)]
    if not columns:
        return []
    params = sorted({p for _, chosen in columns for p in chosen})
    rows = [[param, *(param_text(chosen[param]) if param in chosen else "-" for _, chosen in columns)]
            for param in params]
    return ["## Best configs side by side", "", *_table(["param", *(name for name, _ in columns)], rows)]


def _directions(labels: list[str], summaries: list[dict[str, Any]]) -> list[str]:
    """A note for each objective the studies do not all optimise the same way."""
    ways: dict[str, dict[str, list[str]]] = {}
    for label, summary in zip(labels, summaries, strict=True):
        for metric, direction in zip(summary["metrics"], summary["directions"], strict=True):
            ways.setdefault(metric, {}).setdefault(direction, []).append(label)
    notes = [f"- `{metric}` is " + "; ".join(f"{d}d in {', '.join(who)}" for d, who in by.items())
             for metric, by in ways.items() if len(by) > 1]
    return [*notes, ""] if notes else []


def objective_figure(name: str, labels: list[str], studies: list[Study]) -> Any:
    """``name`` against the trial number and each swept parameter, every study that has it in its own colour, on
    shared axes: a parameter on a log axis where any study drew it on a log scale or its values span two decades."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    from hydra_optuna_studies.axes import is_log, numeric

    having = [(label, study, objective_names(study).index(name)) for label, study in zip(labels, studies, strict=True)
              if name in objective_names(study)]
    trials = {label: _complete(study) for label, study, _ in having}
    params = sorted({p for found in trials.values() for t in found for p in t.params})
    panels = ["trial", *params]
    columns = min(PANELS_PER_ROW, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = make_subplots(rows=rows, cols=columns, shared_yaxes=True, subplot_titles=panels,
                           horizontal_spacing=0.04, vertical_spacing=0.5 / rows)
    palette = qualitative.Plotly
    for label, study, index in having:
        colour = palette[labels.index(label) % len(palette)]
        found = trials[label]
        ys = [t.values[index] for t in found]
        figure.add_trace(go.Scatter(x=[t.number for t in found], y=ys, mode="markers", name=label, legendgroup=label,
                                    marker=dict(color=colour), text=[f"{label}: trial {t.number}" for t in found]),
                         row=1, col=1)
        maximise = study.directions[index].name == "MAXIMIZE"
        figure.add_trace(go.Scatter(x=[t.number for t in found], y=_best_so_far(ys, maximise), mode="lines",
                                    name=f"{label}: best so far", legendgroup=label, showlegend=False,
                                    line=dict(color=colour, dash="dot")), row=1, col=1)
        for k, param in enumerate(params, start=2):
            having_param = [t for t in found if param in t.params]
            xs = [t.params[param] for t in having_param]
            figure.add_trace(go.Scatter(x=xs if numeric(xs) else [str(x) for x in xs],
                                        y=[t.values[index] for t in having_param], mode="markers", name=label,
                                        legendgroup=label, showlegend=False, marker=dict(color=colour),
                                        text=[f"{label}: trial {t.number}" for t in having_param]),
                             row=(k - 1) // columns + 1, col=(k - 1) % columns + 1)
    for k, param in enumerate(params, start=2):
        values = [t.params[param] for found in trials.values() for t in found if param in t.params]
        drawn_log = any(getattr(t.distributions.get(param), "log", False) for found in trials.values() for t in found)
        kind = "category" if not numeric(values) else "log" if drawn_log or is_log(values) else "linear"
        figure.update_xaxes(type=kind, exponentformat="e", row=(k - 1) // columns + 1, col=(k - 1) % columns + 1)
    figure.update_yaxes(title_text=name, col=1)
    figure.update_layout(title=f"{name} of every study, against the trial and each parameter (one colour per study)",
                         legend_title_text="study", height=320 * rows + 160)
    return figure


def _complete(study: Study) -> list[Any]:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]


def _best_so_far(values: list[float], maximise: bool) -> list[float]:
    best: list[float] = []
    for value in values:
        best.append(value if not best else max(best[-1], value) if maximise else min(best[-1], value))
    return best
