"""The sweep's MLflow run: the parent the trials' runs nest under, found again when a study resumes.

Opened by the sweeper only for apps whose :class:`~sweep.contract.StudySpec` names a tracking store; the trials
learn its id through the contract's environment and create their own runs (``sweep.tracking.TrialRun``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweep.tracking import Run, experiment_id_of

VIEW_KEY = "sweep"  # the MLflow UI's shared-view key under which a sweep's runs table is saved


class SweepRun(Run):
    """The parent run of one study's trials."""

    def open(self, study_name: str, params: dict[str, Any], tags: dict[str, str]) -> None:
        """Reopen the newest run of this study (a resumed sweep), or start one."""
        identity = {"sweep.role": "sweep", "sweep.study": study_name}

        def find() -> str | None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                return None
            query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in identity.items())
            runs = self.client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"],
                                           max_results=1)
            if not runs:
                return None
            run_id = runs[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            if "sweep.failure" in runs[0].data.tags:  # "sweep interrupted" was true of the run that stopped
                self.client.delete_tag(run_id, "sweep.failure")
            return run_id

        self.run_id = self.guard(find)
        if self.run_id is None:
            self.start(study_name, params, {**tags, **identity})

    def save_view(self, params: list[str], metrics: list[str]) -> str | None:
        """Save a runs-table view showing ``params`` and ``metrics`` as columns; return its browser URL.

        The view keeps MLflow's default order (newest first), the one in which the UI nests each sweep's trial runs
        under its parent run; sorting by a metric would flatten the tree. It uses the UI's own "share view"
        mechanism (an experiment tag read through ``?viewStateShareKey=``), and asks for the model-training layout
        rather than the GenAI overview MLflow 3 opens by default. (MLflow 3.17 applies the view's columns but not an
        expanded parent: ``runsExpanded`` in the view is ignored, so the user opens the sweep's run with its ``+``.)
        """

        def save() -> str:
            experiment_id = experiment_id_of(self.client, self.experiment)
            columns = [f"params.`{p}`" for p in params] + [f"metrics.`{m}`" for m in metrics]
            view = {"selectedColumns": columns, "searchFilter": "", "lifecycleFilter": "Active"}
            self.client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(view))
            return f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"

        path = self.guard(save)
        if not path:
            return None
        base = self.uri.rstrip("/") if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
        return f"{base}/{path}"

    def end_child(self, trial_number: int, status: str, reason: str) -> None:
        """Close the still-open run of this sweep's trial ``trial_number`` (its process died before it could)."""

        def close() -> None:
            from mlflow.entities import RunTag

            query = (f"tags.`mlflow.parentRunId` = '{self.run_id}' and tags.`optuna.trial_number` = '{trial_number}'"
                     " and attributes.status = 'RUNNING'")
            tags = [RunTag("sweep.failure", reason), RunTag("optuna.state", "FAIL")]
            experiment_id = self.client.get_run(self.id).info.experiment_id
            for child in self.client.search_runs([experiment_id], query):
                self.client.log_batch(child.info.run_id, tags=tags)
                self.client.set_terminated(child.info.run_id, status=status)

        self.guard(close)

    def log_summary(self, summary: dict[str, Any], table: str, report_dir: Path) -> None:
        """Best value(s) as metrics and best params as ``best.*`` tags, the result in one sentence as the run's
        description; the report folder as artifacts."""
        from sweep.study.results import result_sentence

        metrics = {f"trials_{state.lower()}": n for state, n in summary["states"].items()}
        tags = {"mlflow.note.content": result_sentence(summary) + " The report: Artifacts > report/report.html."}
        best = summary.get("best") or []
        if len(best) == 1:
            metrics |= {f"best_{m}": v for m, v in zip(summary["metrics"], best[0]["values"], strict=True)}
            tags |= {f"best.{k}": v for k, v in best[0]["params"].items()} | {"best.trial": best[0]["number"]}
        self.log(metrics, tags)
        self.log_text(table, "trials.md")
        for path in sorted(report_dir.iterdir()):
            self.log_file(path, None if path.name in ("optimization_results.yaml", "best.yaml") else "report")
