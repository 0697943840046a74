"""The Optuna sweeper: ask Optuna for trials, hand them to Hydra's launcher, tell Optuna what came back.

Everything the user can get wrong (grammar, sampler, pruner, directions, storage, the trial config itself)
is checked before the study is opened, so a bad command leaves storage untouched. The study lives in a
persistent storage from the first trial: rerunning the same command resumes it, and trials in other processes
(the joblib or submitit launchers) reach it to report for pruning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from sweep.config import EPOCH_METRICS, default_direction, parse_config
from sweep.errors import ConfigError, check, check_choice
from sweep.pruning import PRUNER_ATTR, PRUNERS, build_pruner
from sweep.results import format_table, summarize, write_yaml
from sweep.search_space import SearchSpace, override_text, parse_search_space
from sweep.storage import open_storage
from sweep.tracking import Run, tracking_uri

from ._compose import ReusingConfigLoader

log = logging.getLogger(__name__)
WORKER_ATTR = "worker"  # trial user attribute: "host:pid" of the sweep process that asked for the trial

SAMPLERS = {
    "grid": "RandomSampler",  # grid points are enqueued; the sampler never draws
    "random": "RandomSampler",
    "tpe": "TPESampler",
    "gp": "GPSampler",
    "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler",
    "qmc": "QMCSampler",
}
DEFAULT_N_TRIALS = 20


@dataclass
class Plan:
    """Everything a sweep needs, checked before any storage is touched."""

    space: SearchSpace
    metrics: list[str]
    directions: list[str]
    study_name: str
    storage: str
    experiment: str
    grid: list[dict[str, Any]] | None
    n_trials: int
    mlflow: Any  # the trial's MlflowConfig


class OptunaSweeperImpl:
    def __init__(
        self,
        sampler: str = "tpe",
        seed: int | None = None,
        sampler_options: dict | None = None,
        pruner: str = "none",
        pruner_options: dict | None = None,
        direction: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int | None = None,
        n_jobs: int = 1,
        params: dict | None = None,
    ) -> None:
        self.sampler_name = sampler
        self.seed = seed
        self.sampler_options = dict(sampler_options or {})
        self.pruner_name = pruner
        self.pruner_options = dict(pruner_options or {})
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.params = {str(k): str(v) for k, v in (params or {}).items()}

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        # Launchers compose each trial's config through this loader: see _compose for why it reuses compositions.
        context = HydraContext(ReusingConfigLoader(hydra_context.config_loader), hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    # ----------------------------------------------------------------------------------------------- plan
    def plan(self, arguments: list[str]) -> Plan:
        """Check the whole command and work out the study; raises a one-line error on any bad input."""
        check_choice(self.sampler_name, "hydra.sweeper.sampler", tuple(SAMPLERS))
        check_choice(self.pruner_name, "hydra.sweeper.pruner", tuple(PRUNERS))
        check(self.n_jobs >= 1, "hydra.sweeper.n_jobs", f"must be >= 1, got {self.n_jobs}")
        n_trials_ok = self.n_trials is None or self.n_trials >= 1
        check(n_trials_ok, "hydra.sweeper.n_trials", f"must be >= 1, got {self.n_trials}")
        space = parse_search_space(self.params, arguments)
        trial = parse_config(_without_hydra(self.config))  # the fixed part of every trial
        metrics = trial.objective
        directions = self._directions(metrics)
        if self.pruner_name != "none":
            check(len(metrics) == 1, "hydra.sweeper.pruner", "pruning needs a single objective")
            check(
                metrics[0] in EPOCH_METRICS,
                "hydra.sweeper.pruner",
                f"pruning reports the objective every epoch; {metrics[0]} is not an epoch metric "
                f"(allowed: {', '.join(EPOCH_METRICS)})",
            )
        check(
            len(metrics) == 1 or self.sampler_name in ("grid", "random", "tpe", "gp", "nsga2", "qmc"),
            "hydra.sweeper.sampler",
            f"{self.sampler_name} is single-objective; for {len(metrics)} objectives use nsga2, tpe, gp or random",
        )
        grid = space.grid() if self.sampler_name == "grid" else None
        check(bool(space.distributions), "hydra.sweeper.params", "nothing to sweep: add choice(...), range(...) "
              "or interval(...) overrides on the command line or in hydra.sweeper.params")
        study_name = self.study_name or trial.name
        n_trials = self.n_trials or (len(grid) if grid is not None else DEFAULT_N_TRIALS)
        return Plan(
            space=space,
            metrics=metrics,
            directions=directions,
            study_name=study_name,
            storage=self.storage or str(self.sweep_dir / "optuna.journal"),
            experiment=trial.mlflow.experiment or study_name,
            grid=grid,
            n_trials=n_trials,
            mlflow=trial.mlflow,
        )

    def _directions(self, metrics: list[str]) -> list[str]:
        if self.direction is None:
            return [default_direction(m) for m in metrics]
        given = [self.direction] if isinstance(self.direction, str) else list(self.direction)
        for d in given:
            check_choice(d, "hydra.sweeper.direction", ("minimize", "maximize"))
        check(
            len(given) == len(metrics),
            "hydra.sweeper.direction",
            f"{len(given)} direction(s) {given} for {len(metrics)} objective(s) {metrics}; give one per objective",
        )
        return given

    def _sampler(self):
        import optuna

        cls = getattr(optuna.samplers, SAMPLERS[self.sampler_name])
        options = dict(self.sampler_options)
        if self.seed is not None:
            options["seed"] = self.seed
        try:
            return cls(**options)
        except TypeError as error:
            raise ConfigError("hydra.sweeper.sampler_options", str(error)) from None

    # ---------------------------------------------------------------------------------------------- study
    def open_study(self, plan: Plan):
        import optuna

        storage = open_storage(plan.storage, "hydra.sweeper.storage")
        sampler, pruner = self._sampler(), build_pruner(self.pruner_name, self.pruner_options)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=plan.study_name,
                directions=plan.directions,
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        except Exception as error:  # noqa: BLE001 - a database that refuses us is a user-facing problem
            raise ConfigError("hydra.sweeper.storage", f"cannot open study {plan.study_name!r}: {error}") from None
        existing = [d.name.lower() for d in study.directions]
        check(
            existing == plan.directions,
            "hydra.sweeper.direction",
            f"study {plan.study_name!r} already exists with directions {existing}, not {plan.directions}",
        )
        if study.metric_names is None:
            with warnings.catch_warnings():  # set_metric_names is marked experimental since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(plan.metrics)
        study.set_user_attr(PRUNER_ATTR, {"name": self.pruner_name, "options": self.pruner_options})
        return study

    def _fail_orphans(self, study, parent: Run | None) -> None:
        """Fail the trials left RUNNING by a sweep process of this machine that is gone (killed, crashed).

        Without this, a resumed grid would count such a trial as taken and never rerun its point. Trials of a
        live process (another sweep working on the same study) and of other machines are left alone.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
            if owner != host or not pid.isdigit() or _alive(int(pid)):
                continue
            reason = f"its sweep process {pid} on {host} ended while it ran"
            try:  # the storage API, as optuna.storages.fail_stale_trials uses it
                study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
                study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # finished meanwhile
            log.warning("Trial %d marked FAIL: %s", trial.number, reason)
            if parent:
                parent.end_child(trial.number, "KILLED", reason)

    def _todo(self, study, plan: Plan) -> int:
        """How many trials this run launches: the grid points or trial count still missing from the study."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
        if plan.grid is None:
            return max(0, plan.n_trials - len(done))
        taken = done + [t for t in trials if t.state == TrialState.WAITING]
        seen = {self._point_key(t.params or t.system_attrs.get("fixed_params", {})) for t in taken}
        missing = [p for p in plan.grid if self._point_key(p) not in seen]
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        todo = min(plan.n_trials, len(missing) + waiting)
        for point in missing[: max(0, todo - waiting)]:
            study.enqueue_trial(point)
        return todo

    @staticmethod
    def _point_key(params: dict[str, Any]) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in params.items()))

    # ---------------------------------------------------------------------------------------------- sweep
    def sweep(self, arguments: list[str]) -> None:
        plan = self.plan(arguments)
        study = self.open_study(plan)
        parent = self._parent_run(plan, study)
        self._fail_orphans(study, parent)
        todo = self._todo(study, plan)
        columns = [f"{prefix}_{m}" for m in plan.metrics for prefix in ("final", "best")]  # trials', sweep's
        self.view_url = parent.save_view(list(plan.space.distributions), columns) if parent else None
        log.info(
            "Study %r in %s: %d trial(s) to run, %s %s", plan.study_name, plan.storage, todo,
            "/".join(plan.directions), "/".join(plan.metrics),
        )
        started, launched = time.perf_counter(), 0
        worker = f"{socket.gethostname()}:{os.getpid()}"
        try:
            while launched < todo:
                batch = [study.ask(plan.space.distributions) for _ in range(min(self.n_jobs, todo - launched))]
                for trial in batch:
                    trial.set_user_attr(WORKER_ATTR, worker)
                overrides = [self._job_overrides(trial, plan, parent) for trial in batch]
                self._running = batch
                returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
                self._running = []
                for trial, ret in zip(batch, returns, strict=True):
                    self._tell(study, trial, ret, len(plan.metrics))
                launched += len(batch)
                self._progress(study, plan, launched, todo, started)
        except BaseException:
            for trial in getattr(self, "_running", []):
                trial.set_user_attr("fail_reason", "interrupted")
                study.tell(trial, state=_state("FAIL"))
            if parent:
                parent.end("KILLED", reason="sweep interrupted")
            raise
        self._finish(study, plan, parent)

    def _job_overrides(self, trial, plan: Plan, parent: Run | None) -> list[str]:
        swept = [
            f"{key}={value if key in plan.space.textual else override_text(value)}"
            for key, value in trial.params.items()
        ]
        link = [
            f"optuna.storage={override_text(plan.storage)}",
            f"optuna.study_name={override_text(plan.study_name)}",
            f"optuna.trial_number={trial.number}",
            f"mlflow.experiment={override_text(plan.experiment)}",
        ]
        if parent and parent.run_id:
            link.append(f"mlflow.parent_run_id={parent.run_id}")
        return [*plan.space.fixed, *swept, *link]

    def _tell(self, study, trial, ret, n_objectives: int) -> None:
        """Record one job's outcome: COMPLETE with its values, PRUNED, or FAIL with the reason.

        The job's full config and final metrics go into the trial's user attributes, so the storage alone can
        export a rerunnable config and draw every report (``sweep-export``, ``sweep-report``).
        """
        import optuna

        if ret.cfg is not None:
            trial.set_user_attr("config", OmegaConf.to_container(ret.cfg, resolve=True))
        metrics_file = Path(str(ret.hydra_cfg.hydra.runtime.output_dir)) / "metrics.json" if ret.hydra_cfg else None
        if metrics_file and metrics_file.is_file():
            trial.set_user_attr("metrics", json.loads(metrics_file.read_text()))
        try:
            value = ret.return_value
            values = [float(v) for v in (value if isinstance(value, list | tuple) else [value])]
            if len(values) != n_objectives:
                raise ValueError(f"trial returned {len(values)} value(s) for {n_objectives} objective(s)")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"trial returned a non-finite objective {values}")
        except optuna.TrialPruned as pruned:
            study.tell(trial, state=_state("PRUNED"))
            log.info("Trial %d pruned: %s", trial.number, pruned)
            return
        except Exception as error:  # noqa: BLE001 - any failure of one trial is recorded, and the sweep goes on
            reason = f"{type(error).__name__}: {error}"
            trial.set_user_attr("fail_reason", reason[:2000])
            study.tell(trial, state=_state("FAIL"))
            log.warning("Trial %d failed: %s", trial.number, reason)
            return
        study.tell(trial, values)

    def _progress(self, study, plan: Plan, launched: int, todo: int, started: float) -> None:
        from sweep.results import best_trials

        elapsed = time.perf_counter() - started
        eta = elapsed / launched * (todo - launched)
        best = best_trials(study)
        best_text = "no complete trial yet"
        if len(best) == 1:
            values = ", ".join(f"{m} {v:.4g}" for m, v in zip(plan.metrics, best[0].values, strict=True))
            best_text = f"best {values} (trial {best[0].number})"
        elif best:
            best_text = f"Pareto front of {len(best)} trial(s)"
        log.info("[%d/%d] %s, ETA %s", launched, todo, best_text, time.strftime("%H:%M:%S", time.gmtime(eta)))

    # --------------------------------------------------------------------------------------------- mlflow
    def _parent_run(self, plan: Plan, study) -> Run | None:
        """The sweep's MLflow run: reopened when the study resumes, so all trials nest under one run."""
        run = Run(plan.mlflow, plan.experiment)
        if not run.enabled:
            return None
        tags = {"sweep.role": "sweep", "sweep.study": plan.study_name, "sweep.storage": plan.storage,
                "sweep.sampler": self.sampler_name, "sweep.pruner": self.pruner_name}
        if run.reopen({"sweep.role": "sweep", "sweep.study": plan.study_name}):
            return run
        params = {
            "sampler": self.sampler_name,
            "pruner": self.pruner_name,
            "directions": plan.directions,
            "metrics": plan.metrics,
            **{f"space.{k}": repr(v) for k, v in plan.space.distributions.items()},
            **{f"fixed.{i}": o for i, o in enumerate(plan.space.fixed)},
        }
        run.start(plan.study_name, params, tags)
        return run if run.run_id else None

    def _finish(self, study, plan: Plan, parent: Run | None) -> None:
        from sweep.report import write_report

        summary = summarize(study, plan.storage)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        results = self.sweep_dir / "optimization_results.yaml"
        write_yaml(summary, results)
        report_dir = self.sweep_dir / "report"
        write_report(study, summary, report_dir)
        table = format_table(summary)
        print(f"\nStudy {plan.study_name!r}: {summary['states']}\n{table}\n", flush=True)
        if "pareto_front" in summary:
            print(f"Pareto front: trials {[t['number'] for t in summary['pareto_front']]}")
        elif summary["best"]:
            best = summary["best"][0]
            print(f"Best trial {best['number']}: {dict(zip(plan.metrics, best['values'], strict=True))} "
                  f"with {best['params']}")
        print(f"Results: {results}\nReport: {report_dir / 'report.md'}")
        if self.view_url:
            local = not tracking_uri(plan.mlflow.tracking_uri).startswith(("http://", "https://"))
            print(f"MLflow: {self.view_url}" + ("  (start the UI with `make ui`)" if local else ""))
        if parent:
            from sweep.report import log_sweep_summary

            log_sweep_summary(parent, study, summary, report_dir)
            parent.end("FINISHED")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _without_hydra(config: DictConfig) -> DictConfig:
    trial = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    with open_dict(trial):
        trial.pop("hydra", None)
    return trial


def _state(name: str):
    from optuna.trial import TrialState

    return TrialState[name]
