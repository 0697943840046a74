"""The sweep's MLflow run: the parent the trials' runs nest under, one per study whatever the number of workers.

Opened by the sweeper only for apps whose :class:`~hydra_optuna_studies.contract.StudySpec` names a tracking store;
its id is kept with the study, so every worker and every resumed sweep finds it. The trials learn it through the
contract's environment and create their own runs; the sweeper tags each with the state the study gave it.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hydra_optuna_studies.contract import FINAL_PREFIX, STATE_TAG, STUDY_TAG, TRIAL_TAG, masked
from hydra_optuna_studies.results import param_text
from hydra_optuna_studies.tracking import Run, experiment_id_of

log = logging.getLogger(__name__)

VIEW_PREFIX = "sweep."  # + the study's name: the MLflow UI's shared-view key under which its sweep's view is saved
SWEEPS_KEY = "sweeps"  # the shared-view key of the view of an experiment's sweeps' own runs, side by side
VIEW_TAG = f"mlflow.sharedViewState.{SWEEPS_KEY}"  # the experiment tag that holds that view
BEST_TAG = "sweep.best"  # on the best trial's run ("best") or the Pareto front's ("Pareto front")
ROLE_TAG = "sweep.role"  # "sweep" on a sweep's own run
COMPLETE_PREFIX = "complete."  # metrics the sweeper copies from final_<metric> onto a COMPLETE trial's run: charted
LOG_PREFIX = "log10 "  # a param the sweeper adds to a trial's run: the log10 of a param read on a log axis
COLOUR_TAG = "mlflow.runColor"  # the MLflow UI draws a run in this colour (table dot, charts, legend)
BEST_COLOUR = "#D62728"  # the best trial, or each member of the Pareto front: red, which no other trial gets
OFF_COLOUR = "#C7C7C7"  # a trial that failed or was pruned
SWEEP_COLOUR = "#4D4D4D"  # the sweep's own run (MLflow's colour for it, from its id, could be the best's red)
# matplotlib's tab20 without its reds and greys: 16 colours, told apart in order (the dark ones first)
PALETTE = ("#1F77B4", "#FF7F0E", "#2CA02C", "#9467BD", "#8C564B", "#E377C2", "#BCBD22", "#17BECF",
           "#AEC7E8", "#FFBB78", "#98DF8A", "#C5B0D5", "#C49C94", "#F7B6D2", "#DBDB8D", "#9EDAE5")
STATUS = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED"}  # a trial's state -> its run's status


def short_names(params: list[str]) -> dict[str, str]:
    """Each param's last dotted part (``optimizer.lr`` -> ``lr``) where no other param ends the same: what run names
    and chart titles say."""
    last = [p.rsplit(".", 1)[-1] for p in params]
    return {p: tail if last.count(tail) == 1 else p for p, tail in zip(params, last, strict=True)}


def log_axis(distribution: Any) -> bool:
    """Whether a param is read on a log axis (drawn on a log scale, or numeric choices spanning two decades), as
    the report's figures decide (:func:`hydra_optuna_studies.axes.is_log`)."""
    from hydra_optuna_studies.axes import is_log

    return is_log(list(getattr(distribution, "choices", ())), distribution)


@dataclass(frozen=True)
class RunsView:
    """One sweep's landing page in the MLflow UI: its runs table and its charts.

    The table holds the sweep's runs only (a search on the study's tag), flat: the complete trials sorted by the
    first objective, best first, then those that failed, were pruned or still run. No group row: MLflow's group row
    aggregates every column, params included, into a row that reads like a configuration no trial had. The sweep's
    own run carries the best trial's results under ``best.*`` names, so it sorts after the trials, its description
    saying the result. A shared view cannot open a parent run expanded or pin a row (the UI drops
    ``runsExpanded``, ``runsPinned`` and ``runsHidden`` from shared views), and sorting by a metric flattens
    MLflow's parent/child tree anyway.

    The charts plot ``complete.<metric>``, which only complete trials carry: a failed trial is in the table (red
    icon, ``FAIL``) but not among the points. A param read on a log axis is charted as its ``log10 <param>``
    companion (MLflow's scatter charts have linear axes only). The charts MLflow makes for every other metric are
    folded away.
    """

    study: str
    params: list[str]  # the swept parameters: columns, and the charts' x axes
    columns: list[str]  # metric columns (final_<metric>), the first objective's first
    ascending: bool  # the first objective is minimised
    charted: list[str]  # metrics charted against each swept parameter (complete trials only)
    curves: list[str]  # per-epoch metrics drawn as learning curves
    log_params: list[str] = field(default_factory=list)  # swept params charted as log10
    value_chars: dict[str, int] = field(default_factory=dict)  # the longest value a param's column shows

    @property
    def key(self) -> str:
        """The shared-view key: one per study, so two sweeps logging to one experiment keep a view each."""
        return VIEW_PREFIX + re.sub(r"[^\w.-]", "_", self.study)

    def state(self) -> dict[str, Any]:
        """The view in the form the MLflow UI saves it (its ``ExperimentPageUIState`` and search facets)."""
        values = [f"params.`{p}`" for p in self.params] + [f"metrics.`{m}`" for m in self.columns]
        marks = [f"tags.`{STATE_TAG}`", f"tags.`{BEST_TAG}`"]  # the state: MLflow draws pruned and failed alike
        first = ["0", "attributes.`Run Name`", *marks, *values, "attributes.`Description`"]  # "0": the checkboxes
        widths = {f"params.`{p}`": _width(max(len(p), self.value_chars.get(p, 8))) for p in self.params}
        short = short_names(self.params)  # a run's name: trial_<n> and its swept values at 6 digits at most
        name = 9 + sum(len(short[p]) + 2 + min(self.value_chars.get(p, 8), 10) for p in self.params)
        return {
            "searchFilter": f"tags.`{STUDY_TAG}` = {_quoted(self.study)}",
            "lifecycleFilter": "Active",
            "orderByKey": f"metrics.`{COMPLETE_PREFIX}{self.columns[0].removeprefix(FINAL_PREFIX)}`",
            "orderByAsc": self.ascending,  # complete trials by the first objective, best first; the rest after
            "selectedColumns": ["attributes.`Description`", *marks, *values],
            "columnOrder": first,  # the swept values and the results beside the run's name, then the description
            "columnWidths": {"attributes.`Run Name`": _width(min(name, 60)), "attributes.`Description`": 1000}
                            | {m: _width(len(m.split("`")[1])) for m in marks}
                            | widths | {f"metrics.`{m}`": _width(len(m)) for m in self.columns},
            "groupBy": None,
            "runsHiddenMode": "SHOW_ALL",  # charts show every trial, not MLflow's default first ten
            "compareRunCharts": self._charts(),
            "compareRunSections": [
                _section("sweep-vs-params", "Results by parameter"),
                _section("sweep-curves", "Learning curves"),
                _section("sweep-other", "Model metrics", shown=False),  # where MLflow adds every other metric
            ],
            "isAccordionReordered": True,
        }

    def sweeps_state(self) -> dict[str, Any]:
        """The view of every sweep's own run (newest first): its name, the best trial(s) (``sweep.best``), the
        result as a sentence, then the best values and params in this sweep's terms and counts of trials per
        state."""
        columns = [*(f"metrics.`best.{m.removeprefix(FINAL_PREFIX)}`" for m in self.columns),
                   *(f"tags.`best.{p}`" for p in self.params),
                   *(f"metrics.`trials_{state}`" for state in ("complete", "fail", "pruned"))]
        best = f"tags.`{BEST_TAG}`"
        return {
            "searchFilter": f"tags.`{ROLE_TAG}` = 'sweep'",
            "lifecycleFilter": "Active",
            "orderByKey": "attributes.start_time",
            "orderByAsc": False,
            "selectedColumns": ["attributes.`Description`", best, *columns],
            "columnOrder": ["0", "attributes.`Run Name`", best, "attributes.`Description`", *columns],
            "columnWidths": {c: _width(len(c.split("`")[1])) for c in [best, *columns]}
                            | {"attributes.`Description`": 900},
            "groupBy": None,
            "runsHiddenMode": "SHOW_ALL",
        }

    def _charts(self) -> list[dict[str, Any]]:
        def x(param: str) -> str:
            return LOG_PREFIX + param if param in self.log_params else param

        scatter = [  # MLflow titles a scatter chart "<x> vs. <y>", whatever its displayName
            _chart("SCATTER", "sweep-vs-params", f"{x(param)} vs. {COMPLETE_PREFIX}{metric}",
                   xaxis={"key": x(param), "type": "PARAM"}, yaxis={"key": COMPLETE_PREFIX + metric, "type": "METRIC"})
            for metric in self.charted for param in self.params
        ]
        curves = [
            _chart("LINE", "sweep-curves", metric, metricKey=metric, selectedMetricKeys=[metric], xAxisKey="step",
                   scaleType="linear", xAxisScaleType="linear", lineSmoothness=0, useGlobalXaxisKey=True,
                   useGlobalLineSmoothing=True, yAxisKey="metric", yAxisExpressions=[], selectedXAxisMetricKey="",
                   ignoreOutliers=False, range={})
            for metric in self.curves
        ]
        return [{**chart, "uuid": f"sweep-chart-{i}"} for i, chart in enumerate([*scatter, *curves])]


def _width(chars: int) -> int:
    """A column's width in pixels for ``chars`` characters of its header or values, beside its sort and menu
    icons."""
    return 40 + 8 * chars


def _chart(kind: str, section: str, name: str, **settings: Any) -> dict[str, Any]:
    return {"type": kind, "metricSectionId": section, "displayName": name, "runsCountToCompare": 1000,
            "deleted": False, "isGenerated": False, **settings}


def _section(uuid: str, name: str, shown: bool = True) -> dict[str, Any]:
    """A charts section: two charts a row (MLflow's three leave titles and legends cut short)."""
    return {"uuid": uuid, "name": name, "display": shown, "isReordered": True, "deleted": False,
            "isGenerated": False, "columns": 2, "cardHeight": 400}


class SweepRun(Run):
    """The parent run of one study's trials."""

    view: RunsView | None = None  # the sweep's view (set by save_view): what each trial's run is given for it

    def open(self, study_name: str, params: dict[str, Any], tags: dict[str, str], known: str | None) -> None:
        """Reopen the study's run (``known``, the id the study keeps; else the newest run tagged with the study, as
        sweeps of earlier versions left it), or start one."""
        identity = {ROLE_TAG: "sweep", STUDY_TAG: study_name}

        def find() -> str | None:
            if known is None:
                found = self.client.get_experiment_by_name(self.experiment)
                query = " and ".join(f"tags.`{k}` = {_quoted(v)}" for k, v in identity.items())
                runs = self.client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"],
                                               max_results=1) if found else []
                if not runs:
                    return None
                return str(runs[0].info.run_id)
            run = self.client.get_run(known)
            if run.info.status != "RUNNING":
                self.client.update_run(known, status="RUNNING")
            if "sweep.failure" in run.data.tags:  # "sweep interrupted" was true of the run that stopped
                self.client.delete_tag(known, "sweep.failure")
            return known

        self.run_id = self.guard(find)
        if self.run_id is None:
            self.start(study_name, params, {**tags, **identity, COLOUR_TAG: SWEEP_COLOUR})

    def save_view(self, view: RunsView) -> str | None:
        """Save ``view`` as the study's view of the experiment's runs table; return the browser URL that opens it.

        It uses the UI's own "share view" mechanism (an experiment tag read through ``?viewStateShareKey=``), and
        asks for the model-training layout rather than the GenAI overview MLflow 3 opens by default.
        """
        self.view = view

        def save() -> str:
            experiment_id = experiment_id_of(self.client, self.experiment)
            self.client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{view.key}",
                                           json.dumps(view.state()))
            return (f"#/experiments/{experiment_id}/runs?viewStateShareKey={quote(view.key)}"
                    "&workflowType=machine_learning")

        path = self.guard(save)
        return self._browser(path) if path else None

    def sweeps_url(self) -> str | None:
        """The browser URL of this store's sweeps side by side, or None while this sweep is the store's only one:
        each sweep's own run, its result as the description, its best trial's values and params (``best.<metric>``,
        ``best.<param>``), its counts of trials. The view (:data:`SWEEPS_KEY`) is saved on this sweep's experiment
        only (other experiments of a shared store are not the sweep's to change, nor, on a server, always the
        user's); the URL opens this experiment's runs page, or MLflow's compare-experiments page over the
        experiments whose own sweeps saved the view.

        It comes after the sweep's run is fully logged: a failure here (no permission to tag the experiment, say)
        costs this link only, told in one warning line; the store is not marked failed."""
        view = self.view
        if view is None or not self.enabled or self.run_id is None:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # MLflow's own, as Run.guard ignores them
                own = self.client.get_run(self.run_id).info.experiment_id
                self.client.set_experiment_tag(own, VIEW_TAG, json.dumps(view.sweeps_state()))
                shown = [e.experiment_id for e in self.client.search_experiments(filter_string=f"tags.`{VIEW_TAG}` "
                                                                                 "LIKE '%'", max_results=1000)]
                sweeps = self.client.search_runs(shown, f"tags.`{ROLE_TAG}` = 'sweep'", max_results=2)
        except Exception as error:  # noqa: BLE001 - the sweep and its record are done; only the link is lost
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")  # no SQL dump
            log.warning("MLflow: the view of this store's sweeps side by side was not saved on %s (%s: %s); the "
                        "sweep's runs are logged", masked(self.uri), type(error).__name__, masked(first[:300]))
            return None
        return self._browser(sweeps_path(shown)) if len(sweeps) > 1 else None

    def _browser(self, path: str) -> str:
        """``path`` (a route of the UI) on the tracking server, or on the ``mlflow ui`` the closing lines start."""
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
        return f"{base}/{path}"

    def mark_trial(self, number: int, state: str, reason: str | None = None, status: str | None = None) -> None:
        """Give trial ``number``'s run the state the study gave the trial (see :meth:`_settle`); ``status``: KILLED
        for a trial stopped from outside. The trial may have closed its run FINISHED before the sweeper decided (its
        objective could not be measured, say): the study's word is the last."""

        def mark() -> None:
            for child in self._children(f"tags.`{TRIAL_TAG}` = '{number}'"):
                self._settle(child, state, reason, status, child.data.tags.get(BEST_TAG))

        self.guard(mark)

    def _children(self, query: str | None = None) -> list[Any]:
        """The trials' runs (those matching ``query``)."""
        experiment_id = self.client.get_run(self.id).info.experiment_id
        nested = f"tags.`mlflow.parentRunId` = '{self.run_id}'" + (f" and {query}" if query else "")
        return list(self.client.search_runs([experiment_id], nested, max_results=50000))

    def _settle(self, child: Any, state: str, reason: str | None, status: str | None, best: str | None) -> None:
        """Make a trial's run say what the study says of the trial: the ``optuna.state`` tag and the run's status
        (FAILED for FAIL, KILLED for PRUNED), the reason it did not complete, the ``sweep.best`` mark; a colour (red
        for the best, grey for a trial that did not complete, else its own) and its swept values in its name, for
        the charts' legends and tooltips; for the view's charts, ``log10`` companions of log-read params and, on a
        complete trial only, ``complete.<metric>`` copies of the charted ``final_<metric>`` values. Only what
        differs is written."""
        from mlflow.entities import Metric, Param, RunTag

        number = int(child.data.tags.get(TRIAL_TAG, "0"))
        tags = {STATE_TAG: state, COLOUR_TAG: _colour(number, state, best), "mlflow.runName": self._name(child)}
        tags |= ({"sweep.failure": reason[:5000]} if reason else {}) | ({BEST_TAG: best} if best else {})
        changed = [RunTag(k, v) for k, v in tags.items() if child.data.tags.get(k) != v]
        params = [Param(k, v) for k, v in self._companions(child).items()]
        metrics = [Metric(k, v, int(time.time() * 1000), 0)
                   for k, v in (self._complete_values(child) if state == "COMPLETE" else {}).items()]
        if changed or params or metrics:
            self.client.log_batch(child.info.run_id, metrics=metrics, params=params, tags=changed)
        if not best and BEST_TAG in child.data.tags:  # a resumed sweep has since found a better trial
            self.client.delete_tag(child.info.run_id, BEST_TAG)
        if closed := _closed(state, child.info.status, status):
            self.client.set_terminated(child.info.run_id, status=closed)

    def _name(self, child: Any) -> str:
        """A run named only by its trial's number (``trial_3``) followed by its swept values (``trial_3 lr=0.01
        batch_size=8``); a name the app made of its own (``mlflow.run_name``) is kept."""
        name = str(child.info.run_name or "")
        if name != f"trial_{child.data.tags.get(TRIAL_TAG)}":
            return name
        swept = [p for p in (self.view.params if self.view else []) if p in child.data.params]
        short = short_names(swept)
        values = " ".join(f"{short[p]}={_value_text(child.data.params[p])}" for p in swept)
        return f"{name} {values}" if values else name

    def _companions(self, child: Any) -> dict[str, str]:
        """``log10 <param>`` for each log-read param the run has (positive) and lacks the companion of."""
        found = {}
        for param in self.view.log_params if self.view else []:
            value = _number(child.data.params.get(param))
            if value is not None and value > 0 and LOG_PREFIX + param not in child.data.params:
                found[LOG_PREFIX + param] = f"{math.log10(value):.6g}"
        return found

    def _complete_values(self, child: Any) -> dict[str, float]:
        """``complete.<metric>`` for each charted metric the run recorded (finite) and does not carry yet."""
        found = {}
        for metric in self.view.charted if self.view else []:
            value = child.data.metrics.get(FINAL_PREFIX + metric)
            if value is not None and math.isfinite(value) and COMPLETE_PREFIX + metric not in child.data.metrics:
                found[COMPLETE_PREFIX + metric] = value
        return found

    def log_summary(self, summary: dict[str, Any], table: str, report_dir: Path) -> None:
        """The result on the sweep's run: counts of trials per state; with one objective, the best trial's values
        and recorded metrics as ``best.<metric>`` metrics and its params as ``best.<param>`` tags (names no trial's
        run has: the sweep's row never poses as a trial); with several, the Pareto front's trial numbers. The result
        in one sentence as the run's description; the report folder as artifacts, the configs to rerun
        (``best.yaml`` or ``pareto-<i>.yaml``) at the top. Then every trial's run is settled as the study ends."""
        from hydra_optuna_studies.results import result_sentence

        metrics = {f"trials_{state.lower()}": n for state, n in summary["states"].items()}
        tags = {"mlflow.note.content": result_sentence(summary) + " The report: Artifacts > report/report.html."}
        best = summary.get("best") or []
        front = summary.get("pareto_front") or []
        if len(best) == 1:
            found = {**best[0]["metrics"], **dict(zip(summary["metrics"], best[0]["values"], strict=True))}
            metrics |= {f"best.{k}": v for k, v in found.items() if isinstance(v, float | int) and math.isfinite(v)}
            tags |= {f"best.{k}": param_text(v) for k, v in best[0]["params"].items()}
            tags["best.trial"] = best[0]["number"]
        if front:
            metrics["pareto_size"] = len(front)
            tags["pareto.trials"] = ", ".join(str(t["number"]) for t in front)
        if best or front:  # the sweep's row in either view names its best trial(s)
            numbers = [str(t["number"]) for t in best or front]
            tags[BEST_TAG] = f"trial{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"
        self.log(metrics, tags)
        self._settle_all(summary)
        self.log_text(table, "trials.md")
        for path in sorted(report_dir.iterdir()):
            self.log_file(path, None if path.suffix == ".yaml" else "report")

    def _settle_all(self, summary: dict[str, Any]) -> None:
        """Every finished trial's run as the study has it at the end (:meth:`_settle`), also those no worker marked
        (a result told by a later sweep, a worker gone between telling and marking); the best trial's (or the
        Pareto front's) mark and colour, taken off runs a resumed sweep has since beaten: the terminal table's ``*``
        in MLflow."""
        rows = {t["number"]: t for t in summary["trials"]}
        marks = {t["number"]: "best" for t in summary.get("best") or []}
        marks |= {t["number"]: "Pareto front" for t in summary.get("pareto_front") or []}

        def settle() -> None:
            for child in self._children():
                number = child.data.tags.get(TRIAL_TAG, "")
                row = rows.get(int(number)) if number.isdigit() else None
                if row is not None and row["state"] in STATUS:
                    self._settle(child, row["state"], row.get("fail_reason"), None, marks.get(row["number"]))

        self.guard(settle)


def sweeps_path(experiment_ids: list[str]) -> str:
    """The UI's route to the sweeps' view (:data:`SWEEPS_KEY`): one experiment's runs page, or the page comparing
    several (in the UI's own order, the ids sorted as text; it reads the view from the first). No search terms in
    the URL: the UI skips a shared view when the URL has them."""
    view = f"viewStateShareKey={SWEEPS_KEY}&workflowType=machine_learning"
    if len(experiment_ids) == 1:
        return f"#/experiments/{experiment_ids[0]}/runs?{view}"
    return f"#/compare-experiments/s?experiments={quote(json.dumps(sorted(experiment_ids)))}&{view}"


def _colour(number: int, state: str, best: str | None) -> str:
    if best:
        return BEST_COLOUR
    return PALETTE[number % len(PALETTE)] if state == "COMPLETE" else OFF_COLOUR


def _closed(state: str, current: str, status: str | None) -> str | None:
    """The status to close a trial's run with, or None to leave it: ``status`` if given, else the state's; a run of
    a trial that did not complete stays FAILED or KILLED, whichever it was closed with (KILLED: interrupted)."""
    wanted = status or STATUS.get(state)
    if wanted is None or current == wanted:
        return None
    if status is None and state != "COMPLETE" and current in ("FAILED", "KILLED"):
        return None
    return wanted


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _value_text(text: str) -> str:
    """A param's value as MLflow holds it (text) the way the tables show it: a float to 6 significant digits."""
    number = _number(text)
    return text if number is None or text.lstrip("-").isdigit() else param_text(number)


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax, which has no escapes: a study named "bob's" is
    quoted with double quotes."""
    return f'"{value}"' if "'" in value else f"'{value}'"
