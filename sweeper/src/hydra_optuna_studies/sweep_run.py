"""The sweep's MLflow run: the parent the trials' runs nest under, one per study whatever the number of workers.

Opened by the sweeper only for apps whose :class:`~hydra_optuna_studies.contract.StudySpec` names a tracking store;
its id is kept with the study, so every worker and every resumed sweep finds it. The trials learn it through the
contract's environment and create their own runs; the sweeper tags each with the state the study gave it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_optuna_studies.contract import STATE_TAG, STUDY_TAG, TRIAL_TAG
from hydra_optuna_studies.tracking import Run, experiment_id_of

VIEW_KEY = "sweep"  # the MLflow UI's shared-view key under which a sweep's runs table is saved
BEST_TAG = "sweep.best"  # on the best trial's run ("best") or the Pareto front's ("Pareto front")


@dataclass(frozen=True)
class RunsView:
    """The sweep's landing page in the MLflow UI: its runs table and its charts.

    MLflow nests child runs under their parent only while the table is in its default order (newest first), and a
    shared view cannot open a parent expanded (``runsExpanded`` is one of the keys the UI drops from shared views).
    So the view groups the runs by the study's name (a tag on the sweep's run and on each trial's run): groups open
    expanded, with the trials sorted by the first objective and the sweep's run (which carries its best trial's
    final metrics and the result as its description) beside the best trial. The charts' page opens on the
    objectives and the margin against each swept parameter, then the learning curves; the charts MLflow makes for
    every other metric are folded away.
    """

    params: list[str]  # the swept parameters: columns, and the charts' x axes
    columns: list[str]  # metric columns, the sort key first
    ascending: bool  # the first objective is minimised
    charted: list[str]  # metrics charted against each swept parameter
    curves: list[str]  # per-epoch metrics drawn as learning curves

    def state(self) -> dict[str, Any]:
        """The view in the form the MLflow UI saves it (its ``ExperimentPageUIState`` and search facets)."""
        values = [f"params.`{p}`" for p in self.params] + [f"metrics.`{m}`" for m in self.columns]
        marks = [f"tags.`{STATE_TAG}`", f"tags.`{BEST_TAG}`"]  # the state: MLflow draws pruned and failed alike
        first = ["0", "attributes.`Run Name`", *marks, *values, "attributes.`Description`"]  # "0": the checkboxes
        return {
            "searchFilter": "",
            "lifecycleFilter": "Active",
            "orderByKey": f"metrics.`{self.columns[0]}`",
            "orderByAsc": self.ascending,
            "selectedColumns": ["attributes.`Description`", *marks, *values],
            "columnOrder": first,  # the swept values and the results beside the run's name, then the description
            "columnWidths": {"attributes.`Run Name`": 170, "attributes.`Description`": 520}
                            | dict.fromkeys(marks, 110) | dict.fromkeys(values, 120),
            "groupBy": {"aggregateFunction": "min" if self.ascending else "max",
                        "groupByKeys": [{"mode": "tag", "groupByData": STUDY_TAG}]},
            "runsHiddenMode": "SHOW_ALL",  # charts show every trial, not MLflow's default first ten
            "useGroupedValuesInCharts": False,  # ... each trial's own values, not the group's aggregate
            "compareRunCharts": self._charts(),
            "compareRunSections": [
                _section("sweep-vs-params", "Objectives vs swept parameters"),
                _section("sweep-curves", "Learning curves"),
                _section("sweep-other", "Model metrics", shown=False),  # where MLflow adds every other metric
            ],
            "isAccordionReordered": True,
        }

    def _charts(self) -> list[dict[str, Any]]:
        scatter = [
            _chart("SCATTER", "sweep-vs-params", f"{metric} vs {param}", xaxis={"key": param, "type": "PARAM"},
                   yaxis={"key": metric, "type": "METRIC"})
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


def _chart(kind: str, section: str, name: str, **settings: Any) -> dict[str, Any]:
    return {"type": kind, "metricSectionId": section, "displayName": name, "runsCountToCompare": 1000,
            "deleted": False, "isGenerated": False, **settings}


def _section(uuid: str, name: str, shown: bool = True) -> dict[str, Any]:
    return {"uuid": uuid, "name": name, "display": shown, "isReordered": True, "deleted": False,
            "isGenerated": False}


class SweepRun(Run):
    """The parent run of one study's trials."""

    def open(self, study_name: str, params: dict[str, Any], tags: dict[str, str], known: str | None) -> None:
        """Reopen the study's run (``known``, the id the study keeps; else the newest run tagged with the study, as
        sweeps of earlier versions left it), or start one."""
        identity = {"sweep.role": "sweep", STUDY_TAG: study_name}

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
            self.start(study_name, params, {**tags, **identity})

    def save_view(self, view: RunsView) -> str | None:
        """Save ``view`` as the experiment's runs-table view; return the browser URL that opens it.

        It uses the UI's own "share view" mechanism (an experiment tag read through ``?viewStateShareKey=``), and
        asks for the model-training layout rather than the GenAI overview MLflow 3 opens by default.
        """

        def save() -> str:
            experiment_id = experiment_id_of(self.client, self.experiment)
            self.client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}",
                                           json.dumps(view.state()))
            return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"

        path = self.guard(save)
        if not path:
            return None
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
        return f"{base}/{path}"

    def mark_trial(self, number: int, state: str, reason: str | None = None, status: str | None = None) -> None:
        """Give trial ``number``'s run the state the study gave the trial: the ``optuna.state`` tag, and a FAILED
        (FAIL) or KILLED (PRUNED, or ``status``: a trial stopped from outside) status with the reason where it did
        not complete. The trial may have closed its run FINISHED before the sweeper decided (a value it returned
        that is not a number, say): the study's word is the last."""

        def mark() -> None:
            from mlflow.entities import RunTag

            query = f"tags.`mlflow.parentRunId` = '{self.run_id}' and tags.`{TRIAL_TAG}` = '{number}'"
            experiment_id = self.client.get_run(self.id).info.experiment_id
            tags = [RunTag(STATE_TAG, state)] + ([RunTag("sweep.failure", reason[:5000])] if reason else [])
            for child in self.client.search_runs([experiment_id], query):
                self.client.log_batch(child.info.run_id, tags=tags)
                closed = status or {"FAIL": "FAILED", "PRUNED": "KILLED"}.get(state)
                if closed and child.info.status != closed:
                    self.client.set_terminated(child.info.run_id, status=closed)

        self.guard(mark)

    def log_summary(self, summary: dict[str, Any], table: str, report_dir: Path) -> None:
        """Best value(s) as metrics and best params as ``best.*`` tags, the result in one sentence as the run's
        description; the report folder as artifacts, the configs to rerun (``best.yaml`` or ``pareto-<i>.yaml``) at
        the top. With one objective the run also carries its best trial's final metrics under the trials' names, so
        the view's columns read the result off the sweep's own row; with several, the Pareto front's trial numbers."""
        from hydra_optuna_studies.results import result_sentence

        metrics = {f"trials_{state.lower()}": n for state, n in summary["states"].items()}
        tags = {"mlflow.note.content": result_sentence(summary) + " The report: Artifacts > report/report.html."}
        best = summary.get("best") or []
        front = summary.get("pareto_front") or []
        if len(best) == 1:
            metrics |= {f"best_{m}": v for m, v in zip(summary["metrics"], best[0]["values"], strict=True)}
            final = {**dict(zip(summary["metrics"], best[0]["values"], strict=True)), **best[0]["metrics"]}
            metrics |= {f"final_{k}": v for k, v in final.items() if isinstance(v, float | int) and math.isfinite(v)}
            tags |= {f"best.{k}": v for k, v in best[0]["params"].items()} | {"best.trial": best[0]["number"]}
        if front:
            metrics["pareto_size"] = len(front)
            tags["pareto.trials"] = ", ".join(str(t["number"]) for t in front)
        self.log(metrics, tags)
        self._mark_best({t["number"]: "best" for t in best} | {t["number"]: "Pareto front" for t in front})
        self.log_text(table, "trials.md")
        for path in sorted(report_dir.iterdir()):
            self.log_file(path, None if path.suffix == ".yaml" else "report")

    def _mark_best(self, marks: dict[int, str]) -> None:
        """Tag the best trial's run (or the Pareto front's) ``sweep.best``, a column of the view, and untag runs a
        resumed sweep has since beaten: the terminal table's ``*`` in MLflow."""

        def mark() -> None:
            experiment_id = self.client.get_run(self.id).info.experiment_id
            children = self.client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{self.run_id}'",
                                               max_results=50000)
            for child in children:
                number = child.data.tags.get(TRIAL_TAG)
                label = marks.get(int(number)) if number is not None else None
                if label:
                    self.client.set_tag(child.info.run_id, BEST_TAG, label)
                elif BEST_TAG in child.data.tags:
                    self.client.delete_tag(child.info.run_id, BEST_TAG)

        self.guard(mark)


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax, which has no escapes: a study named "bob's" is
    quoted with double quotes."""
    return f'"{value}"' if "'" in value else f"'{value}'"
