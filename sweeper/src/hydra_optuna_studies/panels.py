"""A study's answer to its question: the tables and figures an app's :class:`ReportSpec` asks for.

An app tells the sweeper what its report should show through ``StudySpec.report`` (the fields of
:class:`ReportSpec`); the study keeps it (the ``app`` attribute), so ``sweep-report`` draws the same later.
Everything else comes from the study's storage: each COMPLETE trial's recorded config (which labels it), its final
metrics and its learning curves (``hydra_optuna_studies.reporting.record``). A FAIL trial that recorded metrics (its
objective was not measurable, its test accuracy was) counts in the pivots, marked, and in the relations; the
panels that rank trials by their objective (best per setting, curves) use COMPLETE trials only. A panel is
Markdown (tables a reader can check) plus a PNG; a panel whose data cannot support it (no trial has the metric, one
value on an axis) is left out with a note saying why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, OmegaConf

from hydra_optuna_studies.contract import CONFIG_ATTR, HISTORY_ATTR, METRICS_ATTR

if TYPE_CHECKING:
    from optuna import Study


# Keys are dotted config keys, read from each trial's recorded config, so fixed and swept settings alike can label a
# panel; several keys make one label ("sgd 0.9"). Metrics are names the trials record.
@dataclass
class PivotConfig:
    rows: str  # config key of the table's rows (and the heatmap's y axis)
    columns: str  # config key of its columns
    metrics: list[str] = field(default_factory=list)  # one table and heatmap each (mean per cell)


@dataclass
class CurvesConfig:
    by: list[str]  # one curve per value of these keys (the best trial of each, by the first objective)
    metric: str = MISSING  # a metric of the recorded history
    x: list[str] = field(default_factory=lambda: ["epoch"])  # epoch | step | seconds: one figure each


@dataclass
class LinesConfig:
    x: str  # a numeric config key: the x axis
    by: list[str]  # one line per value of these keys
    metric: str = MISSING


@dataclass
class ReportSpec:
    question: str = ""  # what the study asks: the report's first line
    pivots: list[PivotConfig] = field(default_factory=list)
    # How each metric depends on each numeric swept key: Spearman's rho, and its shape in words (relations.py).
    correlations: list[str] = field(default_factory=list)
    curves: list[CurvesConfig] = field(default_factory=list)
    lines: list[LinesConfig] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # a training and a test metric and their gap per setting of these
    gap_metrics: list[str] = field(default_factory=lambda: ["train_acc", "test_acc"])  # (training, test) metric
    # The best trial per value of these keys (e.g. [optimizer.name, train.time_budget_s]), with its objectives and
    # the metrics the study shows beside them.
    best_by: list[str] = field(default_factory=list)


@dataclass
class Trial:
    """One COMPLETE trial, or FAIL trial that recorded metrics, as the panels see it."""

    number: int
    config: dict[str, Any]
    metrics: dict[str, float]  # final metrics; NaN where the trial could not measure one
    history: dict[str, list[dict[str, float]]]  # "epochs" and "evaluations" rows
    score: float  # the first objective, signed so that larger is better; NaN for a failed trial
    failed: bool = False

    def get(self, key: str) -> Any:
        node: Any = self.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def label(self, keys: list[str]) -> str:
        """The trial's values of ``keys`` as one label, leaving out keys its config does not have."""
        return " ".join(_text(v) for v in map(self.get, keys) if v is not None) or "-"


@dataclass
class Panels:
    markdown: list[str]
    figures: list[Path]


def _text(value: Any) -> str:
    return "-".join(map(str, value)) if isinstance(value, list) else str(value)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/m"
    return f"{value:.0f}" if value.is_integer() and abs(value) >= 1 else f"{value:.3f}"


def _mean(values: Iterable[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def spec_of(study: Study) -> ReportSpec | None:
    """The report the app asked for when it opened the study, if it asked for anything."""
    from hydra_optuna_studies.results import app_of

    given = app_of(study).get("report")
    if not given:
        return None
    spec = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ReportSpec), given))
    return spec if spec != ReportSpec() else None  # type: ignore[return-value]


def trials_of(study: Study) -> list[Trial]:
    """The COMPLETE trials with a recorded config, and the FAIL ones that also recorded metrics; their metrics are
    what they recorded and their objectives."""
    from optuna.trial import TrialState

    from hydra_optuna_studies.results import objective_names

    sign = 1.0 if study.directions[0].name == "MAXIMIZE" else -1.0
    names = objective_names(study)
    found = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        failed = t.state == TrialState.FAIL
        if CONFIG_ATTR not in t.user_attrs or (failed and not t.user_attrs.get(METRICS_ATTR)):
            continue
        recorded = {**(t.user_attrs.get(METRICS_ATTR) or {}), **dict(zip(names, t.values or (), strict=False))}
        metrics = {k: math.nan if v is None else float(v) for k, v in recorded.items()}
        found.append(Trial(t.number, t.user_attrs[CONFIG_ATTR], metrics, t.user_attrs.get(HISTORY_ATTR) or {},
                           math.nan if failed else sign * t.values[0], failed))
    return found


def write_panels(study: Study, spec: ReportSpec, out: Path) -> Panels:
    """Every panel of ``spec`` for ``study``, its PNGs written into ``out``."""
    from hydra_optuna_studies.results import app_of

    trials = trials_of(study)
    complete = [t for t in trials if not t.failed]
    beside = app_of(study).get("beside", {})
    panels = Panels([f"## {spec.question}" if spec.question else "## Answer", ""], [])
    if not trials:
        panels.markdown.append("No complete trial with a recorded config: nothing to answer with yet.")
        return panels
    swept = sorted({k for t in study.trials for k in t.params})
    makers: list[Callable[[], None]] = [
        *(lambda p=p: _pivot(trials, p, beside, out, panels) for p in spec.pivots),
        *(lambda m=m: _correlations(trials, m, swept, panels) for m in spec.correlations),
        *(lambda c=c: _curves(complete, c, out, panels) for c in spec.curves),
        *(lambda g=g: _lines(complete, g, out, panels) for g in spec.lines),
    ]
    if spec.gaps:
        makers.append(lambda: _gaps(complete, spec.gaps, spec.gap_metrics, panels))
    if spec.best_by:
        makers.append(lambda: _best_by(complete, spec.best_by, _best_by_metrics(study), panels))
    for make in makers:
        make()
    return panels


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(r) + " |" for r in rows), ""]


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    def key(v: Any) -> tuple:
        return (0, float(v), "") if isinstance(v, int | float) and not isinstance(v, bool) else (1, 0.0, _text(v))

    unique = {_text(v): v for v in values}
    return sorted(unique.values(), key=key)


def _cell_key(value: Any) -> Any:
    """A config value as a hashable cell coordinate that still sorts as a number where it is one."""
    return _text(value) if isinstance(value, list | dict) else value


def _pivot(trials: list[Trial], spec: PivotConfig, beside: dict[str, str], out: Path, panels: Panels) -> None:
    """Mean metric per (rows, columns) cell: a Markdown table and a heatmap per metric (a metric's heatmap writes
    what it rests on, ``beside`` it, in each cell). A cell holding a failed trial's recorded value is marked ``†``."""
    from hydra_optuna_studies.heatmaps import Grid, heatmap
    from hydra_optuna_studies.results import FAILED_MARK

    rows = _sorted_values(_cell_key(t.get(spec.rows)) for t in trials)
    cols = _sorted_values(_cell_key(t.get(spec.columns)) for t in trials)
    for metric in spec.metrics:
        if not any(metric in t.metrics for t in trials):
            panels.markdown += [f"No trial recorded `{metric}`: no table of it.", ""]
            continue
        cells = Grid()
        rates: dict[tuple[Any, Any], list[float]] = {}  # a margin's success rates, written into its heatmap
        rate = beside.get(metric)
        for t in trials:
            at = (_cell_key(t.get(spec.columns)), _cell_key(t.get(spec.rows)))
            cells.add(at, t.metrics.get(metric, math.nan), t.failed)
            rates.setdefault(at, []).append(t.metrics.get(rate, math.nan) if rate else math.nan)
        table = [[_text(r), *(_fmt(_mean(cells.values[(c, r)])) + FAILED_MARK * ((c, r) in cells.failed)
                              if (c, r) in cells.values else "-" for c in cols)] for r in rows]
        panels.markdown += [f"**{metric}** (mean per cell; {FAILED_MARK}: includes a value recorded by a trial that "
                            "did not complete; n/m: not measurable; -: no trial)", ""]
        panels.markdown += _table([f"{spec.rows} \\ {spec.columns}", *map(_text, cols)], table)
        if len(rows) > 1 and len(cols) > 1:
            path = out / f"pivot_{metric}_{spec.rows}_{spec.columns}.png"
            panels.figures.append(heatmap(cells, spec.columns, spec.rows, f"{metric} (mean per cell)", path,
                                          rates if rate else None))
            panels.markdown += [f"![{path.stem}]({path.name})", ""]


def _correlations(trials: list[Trial], metric: str, swept: list[str], panels: Panels) -> None:
    """How ``metric`` depends on each numeric swept key: Spearman's rank correlation with a 95% bootstrap interval,
    and, since a rank correlation misses a relation that is not monotonic (a peak at a middle lr), the shape of the
    relation in words (:func:`hydra_optuna_studies.relations.describe`). Failed trials count with the metrics they
    recorded (a test accuracy measured before an objective proved not measurable)."""
    import numpy as np

    from hydra_optuna_studies.relations import describe

    rows, sentences = [], []
    for key in swept:
        pairs = [(t.get(key), t.metrics.get(metric, math.nan), t.failed) for t in trials]
        pairs = [(float(x), y, failed) for x, y, failed in pairs
                 if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(y)]
        failed = sum(f for _, _, f in pairs)
        counted = f"{len(pairs)} ({failed} failed)" if failed else str(len(pairs))
        if len(pairs) < 3 or len({x for x, _, _ in pairs}) < 2 or len({y for _, y, _ in pairs}) < 2:
            rows.append([key, "-", "-", counted, "too few distinct values to correlate"])
            continue
        x, y = np.array([(x, y) for x, y, _ in pairs]).T
        rho, low, high = _spearman_with_interval(x, y)
        if len(pairs) < _MIN_FOR_INTERVAL:
            rows.append([key, f"{rho:+.2f}", "-", counted, f"an interval needs {_MIN_FOR_INTERVAL}+ trials"])
            continue
        verdict, sentence = describe(x, y, metric, key, (low, high))
        rows.append([key, f"{rho:+.2f}", f"[{low:+.2f}, {high:+.2f}]", counted, verdict])
        sentences.append(f"- {metric} and {key}: {sentence}.")
    panels.markdown += [f"**How {metric} depends on each swept setting** (Spearman's rho with a 95% bootstrap "
                        "interval over trials; the shape from the trials grouped by the setting's value, each group "
                        "as its mean (range))", ""]
    panels.markdown += _table(["setting", "rho", "95% interval", "trials", "shape"], rows)
    if sentences:
        panels.markdown += [*sentences, ""]


_MIN_FOR_INTERVAL = 8  # fewer trials make a bootstrap interval mostly noise


def _spearman_with_interval(x: Any, y: Any, resamples: int = 999) -> tuple[float, float, float]:
    """Spearman's rho and its 95% percentile bootstrap interval over trials (resampled in pairs, seed 0).

    By hand rather than ``scipy.stats.bootstrap``: a grid has few distinct values per axis, so some resamples hold
    one value only, where rho is undefined; those resamples are skipped here instead of making the interval NaN.
    All resamples are ranked at once (rho is the correlation of the ranks), which keeps a report's correlations to
    milliseconds.
    """
    import numpy as np
    from scipy import stats

    picks = np.random.default_rng(0).integers(0, len(x), (resamples, len(x)))
    ranks = [stats.rankdata(values[picks], axis=1) for values in (x, y)]
    rx, ry = (r - r.mean(axis=1, keepdims=True) for r in ranks)
    scale = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    defined = scale > 0
    rhos = (rx * ry).sum(axis=1)[defined] / scale[defined]
    low, high = np.percentile(rhos, [2.5, 97.5]) if rhos.size else (math.nan, math.nan)
    return float(stats.spearmanr(x, y).statistic), float(low), float(high)


def _best_per(trials: list[Trial], keys: list[str]) -> dict[str, Trial]:
    """The best trial (by the first objective) for each setting of ``keys``."""
    best: dict[str, Trial] = {}
    for t in trials:
        label = t.label(keys)
        if label not in best or t.score > best[label].score:
            best[label] = t
    return best


def _curves(trials: list[Trial], spec: CurvesConfig, out: Path, panels: Panels) -> None:
    """Learning curves of the best trial of each label, one figure per x axis."""
    from hydra_optuna_studies.figures import pyplot

    best = _best_per(trials, spec.by)
    plt = pyplot()
    for x in spec.x:
        source = "epochs" if x == "epoch" else "evaluations"
        drawn = {label: [r for r in t.history.get(source, []) if spec.metric in r and x in r]
                 for label, t in sorted(best.items())}
        drawn = {label: rows for label, rows in drawn.items() if rows}
        if not drawn:
            hint = "" if source == "epochs" else " (set train.eval_every to evaluate between epochs)"
            panels.markdown += [f"No trial recorded `{spec.metric}` against {x}{hint}: no curves.", ""]
            continue
        fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
        for label, rows in drawn.items():
            ax.plot([r[x] for r in rows], [r[spec.metric] for r in rows], marker=".", label=label)
        ax.set_xlabel(x)
        ax.set_ylabel(spec.metric)
        ax.set_title(f"{spec.metric} of the best trial per {', '.join(spec.by)}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{spec.metric}_{x}.png"
        fig.savefig(path)
        plt.close(fig)
        panels.figures.append(path)
        panels.markdown += [f"![{path.stem}]({path.name})", ""]


def _lines(trials: list[Trial], spec: LinesConfig, out: Path, panels: Panels) -> None:
    """Mean metric against a numeric key, one line per label: e.g. accuracy against depth, per width."""
    from hydra_optuna_studies.figures import pyplot

    series: dict[str, dict[float, list[float]]] = {}
    for t in trials:
        x = t.get(spec.x)
        if isinstance(x, int | float) and not isinstance(x, bool):
            points = series.setdefault(t.label(spec.by), {})
            points.setdefault(float(x), []).append(t.metrics.get(spec.metric, math.nan))
    if not series:
        panels.markdown += [f"No trial has a numeric `{spec.x}`: no line plot.", ""]
        return
    xs = sorted({x for points in series.values() for x in points})
    rows = [[label, *(_fmt(_mean(points[x])) if x in points else "" for x in xs)]
            for label, points in sorted(series.items())]
    panels.markdown += [f"**{spec.metric} against {spec.x}**, per {', '.join(spec.by)}", ""]
    panels.markdown += _table([" ".join(spec.by) + f" \\ {spec.x}", *(f"{x:g}" for x in xs)], rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for label, points in sorted(series.items()):
        keys = sorted(points)
        ax.plot(keys, [_mean(points[k]) for k in keys], marker="o", label=label)
    if min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel(spec.x)
    ax.set_ylabel(spec.metric)
    ax.set_title(f"{spec.metric} against {spec.x}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=" ".join(spec.by))
    fig.tight_layout()
    path = out / f"lines_{spec.metric}_{spec.x}.png".replace("/", "_")
    fig.savefig(path)
    plt.close(fig)
    panels.figures.append(path)
    panels.markdown += [f"![{path.stem}]({path.name})", ""]


def _gaps(trials: list[Trial], keys: list[str], metrics: list[str], panels: Panels) -> None:
    """Mean training and test metric (accuracy, say), and the gap between them, per setting of ``keys``."""
    train_name, test_name = metrics
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        groups.setdefault(t.label(keys), []).append(t)
    rows = []
    for label, members in sorted(groups.items()):
        train = _mean(t.metrics.get(train_name, math.nan) for t in members)
        test = _mean(t.metrics.get(test_name, math.nan) for t in members)
        rows.append([label, _fmt(train), _fmt(test), _fmt(train - test), str(len(members))])
    panels.markdown += [f"**{train_name} vs {test_name} per {', '.join(keys)}** (gap = {train_name} - {test_name})",
                        ""]
    panels.markdown += _table([" ".join(keys), train_name, test_name, "gap", "trials"], rows)


def _best_by_metrics(study: Study) -> list[str]:
    """The objectives, then the metrics the study shows beside them."""
    from hydra_optuna_studies.results import objective_names, shown_metrics

    return list(dict.fromkeys([*objective_names(study), *shown_metrics(study)]))


def _best_by(trials: list[Trial], keys: list[str], metrics: list[str], panels: Panels) -> None:
    """The best trial (by the first objective) for each combination of ``keys``, with its ``metrics``."""
    best = _best_per(trials, keys)
    rows = [[label, str(t.number), *(_fmt(t.metrics.get(m, math.nan)) for m in metrics)]
            for label, t in sorted(best.items())]
    panels.markdown += [f"**Best trial per {', '.join(keys)}**", ""]
    panels.markdown += _table([" ".join(keys), "trial", *metrics], rows)
