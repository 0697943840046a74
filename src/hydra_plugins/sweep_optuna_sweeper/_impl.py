"""The Optuna sweeper: ask Optuna for trials, hand them to Hydra's launcher, tell Optuna what came back.

It sweeps any Hydra app whose task returns a float or a sequence of floats. Everything it says to a job goes
through the contract in :mod:`sweep.contract` (environment variables set with ``hydra.job.env_set``), never into
the app's config; an app that tags its task with :func:`sweep.contract.describes_study` adds a config check,
objective names and directions, and an MLflow parent run. Everything the user can get wrong (grammar, sampler,
pruner, directions, the app's own config) is checked before the study is opened, so a bad command leaves storage
untouched. The study lives in a persistent storage from the first trial: rerunning the same command resumes it,
and jobs in other processes reach it to report for pruning.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from hydra.core.config_loader import ConfigLoader
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from sweep.contract import (
    CONFIG_ATTR,
    ENV_STORAGE_URL,
    FAIL_REASON_ATTR,
    HEARTBEAT_ATTR,
    PRUNER_ATTR,
    STUDY_HOOK,
    WORKER_ATTR,
    StudySpec,
    TrialLink,
    masked,
)
from sweep.errors import ConfigError, SweepError, check, check_choice
from sweep.study.registry import MULTI_OBJECTIVE, build_pruner, build_sampler
from sweep.study.results import (
    best_trials,
    format_table,
    result_sentence,
    state_counts,
    summarize,
    ties,
    write_yaml,
)
from sweep.study.search_space import SearchSpace, override_text, parse_search_space
from sweep.study.storage import is_journal, open_storage
from sweep.study.sweep_run import RunsView, SweepRun
from sweep.tracking import check_store

from ._compose import ReusingConfigLoader, scrubbed
from ._progress import SweepProgress

log = logging.getLogger(__name__)
DEFAULT_N_TRIALS = 20
DIRECTIONS = ("minimize", "maximize")
Hook = Callable[[DictConfig, Any], Any]  # custom_search_space: (config, optuna.Trial) -> None | {key: value}


@dataclass
class Plan:
    """Everything a sweep needs, checked before any storage is touched."""

    space: SearchSpace
    metrics: list[str] | None  # objective names, when the app names them
    directions: list[str]
    study_name: str
    storage: str
    grid: list[dict[str, Any]] | None
    n_trials: int
    spec: StudySpec
    hook: Hook | None

    @property
    def names(self) -> list[str]:
        """The objectives' names: the app's, else ``objective_0``, ... as Optuna's tools call them."""
        return self.metrics or [f"objective_{i}" for i in range(len(self.directions))]


class OptunaSweeperImpl:
    def __init__(
        self,
        sampler: Any = "tpe",
        seed: int | None = None,
        sampler_options: Mapping[str, Any] | None = None,
        pruner: str = "none",
        pruner_options: Mapping[str, Any] | None = None,
        direction: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        n_trials: int | None = None,
        n_jobs: int = 1,
        max_failure_rate: float = 1.0,
        params: Mapping[str, Any] | None = None,
        custom_search_space: str | None = None,
        keep_study_space: bool = False,
        heartbeat_interval: float = 30.0,
    ) -> None:
        node = _plain(sampler) if isinstance(sampler, Mapping) else {"name": sampler}
        self.sampler_name = str(node.pop("name"))
        self.sampler_options = {**node, **_plain(sampler_options or {})}
        if seed is not None and self.sampler_options.get("seed") is None:
            self.sampler_options["seed"] = seed
        self.pruner_name = pruner
        self.pruner_options = _plain(pruner_options or {})
        self.direction = _plain(direction) if isinstance(direction, ListConfig) else direction
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = _plain(params or {})
        self.custom_search_space = custom_search_space
        self.keep_study_space = keep_study_space
        self.heartbeat_interval = heartbeat_interval

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.describe = getattr(task_function, STUDY_HOOK, None)
        # Launchers compose each trial's config through this loader: see _compose for why it reuses compositions.
        self.loader = ReusingConfigLoader(hydra_context.config_loader)
        context = HydraContext(cast(ConfigLoader, self.loader), hydra_context.callbacks)  # duck-typed: it delegates
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()

    # ----------------------------------------------------------------------------------------------- plan
    def plan(self, arguments: list[str]) -> Plan:
        """Check the whole command and work out the study; raises a one-line error on any bad input."""
        build_sampler(self.sampler_name, self.sampler_options)  # refuses unknown names and options now
        build_pruner(self.pruner_name, self.pruner_options)
        check(self.n_jobs >= 1, "hydra.sweeper.n_jobs", f"must be >= 1, got {self.n_jobs}")
        n_trials_ok = self.n_trials is None or self.n_trials >= 1
        check(n_trials_ok, "hydra.sweeper.n_trials", f"must be >= 1, got {self.n_trials}")
        beat_ok = self.heartbeat_interval > 0
        check(beat_ok, "hydra.sweeper.heartbeat_interval", f"must be > 0 seconds, got {self.heartbeat_interval}")
        rate_ok = 0.0 <= self.max_failure_rate <= 1.0
        check(rate_ok, "hydra.sweeper.max_failure_rate", f"must be in [0, 1], got {self.max_failure_rate}")
        space = parse_search_space(self.params, arguments)
        self._compose_every_value(space)
        spec = self.describe(_without_hydra(self.config)) if self.describe else StudySpec()
        directions = self._directions(spec)
        metrics = spec.metrics
        self._check_pruning(spec, directions)
        check(
            len(directions) == 1 or self.sampler_name in MULTI_OBJECTIVE,
            "hydra.sweeper.sampler",
            f"{self.sampler_name} is single-objective; for {len(directions)} objectives use nsgaii, tpe, gp or random",
        )
        if spec.tracking_uri:
            check_store(spec.tracking_uri)
        for key in space.grid_only:
            check(self.sampler_name == "grid", f"hydra.sweeper.params.{key}",
                  f"values that differ by case (a list of {{when, values}}) need sampler=grid, not {self.sampler_name}")
        grid = space.grid() if self.sampler_name == "grid" else None
        study_name = self.study_name or spec.name or str(self.config.hydra.job.name)
        n_trials = self.n_trials or (len(grid) if grid is not None else DEFAULT_N_TRIALS)
        return Plan(
            space=space,
            metrics=metrics,
            directions=directions,
            study_name=study_name,
            storage=self.storage or str(self.sweep_dir / "optuna.journal"),
            grid=grid,
            n_trials=n_trials,
            spec=spec,
            hook=self._hook(),
        )

    def _compose_every_value(self, space: SearchSpace) -> None:
        """Compose a job's config once for each swept value (a range's or interval's ends), so a key the config
        lacks or a group option that does not exist stops the sweep before any study, folder or run exists.

        A conditional parameter is composed with the values of the keys it depends on that make it apply. Value
        assignments reuse one composition (_compose), so this costs milliseconds but for group choices."""
        for key, param in space.params.items():
            context = [f"{k}={_text(v, space.params[k].textual)}" for k, v in _activating(space, key).items()]
            for value in _probe_values(param.distribution):
                swept = f"{key}={_text(value, param.textual)}"
                self.loader.load_sweep_config(self.config, [*space.fixed, *context, swept])

    def _directions(self, spec: StudySpec) -> list[str]:
        """One direction per objective: as configured, else as the app says, else minimize (the official default)."""
        if self.direction is None:
            given = list(spec.directions or ["minimize"] * len(spec.metrics or [None]))
        else:
            given = [self.direction] if isinstance(self.direction, str) else list(self.direction)
        for d in given:
            check_choice(d, "hydra.sweeper.direction", DIRECTIONS)
        if spec.metrics is not None:
            check(
                len(given) == len(spec.metrics),
                "hydra.sweeper.direction",
                f"{len(given)} direction(s) {given} for {len(spec.metrics)} objective(s) {spec.metrics}; "
                "give one per objective",
            )
        return given

    def _check_pruning(self, spec: StudySpec, directions: list[str]) -> None:
        if self.pruner_name == "none":
            return
        check(len(directions) == 1, "hydra.sweeper.pruner", "pruning needs a single objective")
        if spec.metrics and spec.reported is not None:
            check(
                spec.metrics[0] in spec.reported,
                "hydra.sweeper.pruner",
                f"pruning needs the objective reported every step; {spec.metrics[0]} is not "
                f"(reported: {', '.join(spec.reported)})",
            )

    def _hook(self) -> Hook | None:
        if not self.custom_search_space:
            return None
        from hydra.utils import get_method

        try:
            return get_method(self.custom_search_space)
        except Exception as error:  # noqa: BLE001 - any import failure is the same to the user
            message = str(error).splitlines()[0]
            raise ConfigError("hydra.sweeper.custom_search_space", f"cannot import it: {message}") from None

    # ---------------------------------------------------------------------------------------------- study
    def open_study(self, plan: Plan) -> Any:
        import optuna

        if not self.config.hydra.verbose:  # the sweep prints its own progress; Optuna's INFO lines repeat it
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(plan.storage, "hydra.sweeper.storage")
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=plan.study_name,
                directions=cast(list[Literal["minimize", "maximize"]], plan.directions),
                sampler=build_sampler(self.sampler_name, self.sampler_options),
                pruner=build_pruner(self.pruner_name, self.pruner_options),
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
        if plan.metrics and study.metric_names is None:
            with warnings.catch_warnings():  # set_metric_names is marked experimental since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(plan.metrics)
        study.set_user_attr(PRUNER_ATTR, {"name": self.pruner_name, "options": self.pruner_options})
        return study

    def _match_study_space(self, study: Any, plan: Plan) -> None:
        """A resumed study sampled a swept key from another space (``choice(0.01, 0.05)``, now ``choice(0.01, 0.3)``):
        refuse before any trial, naming both, unless ``keep_study_space`` says to go on with the study's space."""
        from optuna.distributions import check_distribution_compatibility

        known: dict[str, Any] = {}
        for trial in study.get_trials(deepcopy=False):
            known.update(trial.distributions)
        for key, param in plan.space.params.items():
            if key not in known:
                continue
            try:
                check_distribution_compatibility(known[key], param.distribution)
            except ValueError:
                if not self.keep_study_space:
                    raise ConfigError(key, f"study {plan.study_name!r} sampled it from {_describe(known[key])}, this "
                                      f"command from {_describe(param.distribution)}; name a new "
                                      "hydra.sweeper.study_name, or set hydra.sweeper.keep_study_space=true to go on "
                                      "with the study's") from None
                param.distribution = known[key]
        if self.keep_study_space and plan.grid is not None:
            plan.grid = plan.space.grid()

    def _fail_orphans(self, study: Any, plan: Plan, parent: SweepRun | None) -> None:
        """Fail the RUNNING trials whose sweep is gone (killed, crashed, its machine or container lost).

        Without this, a resumed grid would count such a trial as taken and never rerun its point. A trial is
        orphaned when its heartbeat has been silent for three of its intervals, whatever host or container ran it;
        on this host, at once when its process is gone or its pid is this very process's (a container's PID 1
        again). Trials of a live sweep, here or elsewhere, keep beating and are left alone.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        host, now = socket.gethostname(), time.time()
        storage = open_storage(plan.storage, "hydra.sweeper.storage")  # the study's own (cached) storage object
        study_id = storage.get_study_id_from_name(plan.study_name)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            reason = _orphaned(trial, host, now)
            if reason is None:
                continue
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:  # the storage API, as optuna.storages.fail_stale_trials uses it
                storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue  # finished meanwhile
            log.warning("Trial %d marked FAIL: %s", trial.number, reason)
            if parent:
                parent.end_child(trial.number, "KILLED", reason)

    def _todo(self, study: Any, plan: Plan) -> int:
        """How many trials this run launches: the grid points or trial count still missing from the study."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
        if plan.grid is None:
            return max(0, plan.n_trials - len(done))
        taken = done + [t for t in trials if t.state == TrialState.WAITING]
        seen = {_point_key(t.params or t.system_attrs.get("fixed_params", {})) for t in taken}
        missing = [p for p in plan.grid if _point_key(p) not in seen]
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        todo = min(plan.n_trials, len(missing) + waiting)
        for point in missing[: max(0, todo - waiting)]:
            study.enqueue_trial(point)
        return todo

    # ---------------------------------------------------------------------------------------------- sweep
    def sweep(self, arguments: list[str]) -> list[Any]:
        """Run the study; return the launcher's results batch by batch, as Hydra's basic sweeper does."""
        plan = self.plan(arguments)
        if not plan.space.params and plan.hook is None:
            log.info("Nothing to sweep: running the job once, with no study")
            self._save_config()
            return [self.launcher.launch([plan.space.fixed], initial_job_idx=0)]
        study = self.open_study(plan)
        self._match_study_space(study, plan)
        self._save_config()
        parent = self._parent_run(plan)
        self._fail_orphans(study, plan, parent)
        todo = self._todo(study, plan)
        self.view_url = parent.save_view(self._view(plan)) if parent else None
        if masked(plan.storage) != plan.storage:  # jobs inherit the real URL; env_set (saved to disk) gets it masked
            os.environ[ENV_STORAGE_URL] = plan.storage
        log.info("Study %r in %s: %d trial(s) to run, %s %s", plan.study_name, masked(plan.storage), todo,
                 "/".join(plan.directions), "/".join(plan.metrics or ["the task's return value"]))
        outcome = Outcome()
        batches: list[Any] = []
        running: list[Any] = []
        worker = f"{socket.gethostname()}:{os.getpid()}"
        storage = open_storage(plan.storage, "hydra.sweeper.storage")
        heartbeat = Heartbeat(storage, plan.study_name, self.heartbeat_interval)
        if not self.config.hydra.verbose:
            _quiet_launchers()
        try:
            with SweepProgress(todo) as progress:
                while outcome.told < todo:
                    running = [study.ask() for _ in range(min(self.n_jobs, todo - outcome.told))]
                    heartbeat.watch(running)
                    overrides = [self._job_overrides(trial, plan, parent, worker) for trial in running]
                    for trial in running:  # the trial and what was swept for it: the rest is in its folder and run
                        log.info("Trial %d: %s", trial.number, " ".join(f"{k}={override_text(v)}"
                                                                        for k, v in trial.params.items()))
                    returns = self.launcher.launch(overrides, initial_job_idx=running[0].number)
                    for trial, ret in zip(running, returns, strict=True):
                        outcome.add(self._tell(study, trial, ret, len(plan.directions)))
                    running = []
                    batches.append(returns)
                    progress.update(outcome.told, self._best_text(study, plan))
                    if outcome.failure_rate > self.max_failure_rate:
                        break
        except BaseException:
            heartbeat.stop()
            for trial in running:
                trial.set_user_attr(FAIL_REASON_ATTR, "interrupted")
                study.tell(trial, state=_state("FAIL"))
            if parent:
                parent.end("KILLED", reason="sweep interrupted")
            raise
        heartbeat.stop()
        self._finish(study, plan, parent)
        outcome.raise_if_failed(self.max_failure_rate)
        return batches

    def _save_config(self) -> None:
        """``multirun.yaml`` in the sweep folder, as Hydra's own sweepers write it: once every check has passed."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(scrubbed(self.config), self.sweep_dir / "multirun.yaml")

    def _job_overrides(self, trial: Any, plan: Plan, parent: SweepRun | None, worker: str) -> list[str]:
        """The job's overrides: fixed ones, the trial's values, and the contract's environment."""
        trial.set_user_attr(WORKER_ATTR, worker)
        point = plan.space.sample(trial)
        overrides = plan.space.overrides(point)
        if plan.hook is not None:
            derived = plan.hook(self.config, trial) or {}
            extra = {k: v for k, v in trial.params.items() if k not in point}  # suggested by the hook itself
            overrides += [f"{k}={override_text(v)}" for k, v in {**extra, **derived}.items()]
        link = TrialLink(
            storage=plan.storage,
            study_name=plan.study_name,
            trial_number=trial.number,
            parent_run_id=parent.run_id if parent else None,
            experiment=parent.experiment if parent else None,
        )
        return overrides + [f"++hydra.job.env_set.{k}={override_text(v)}" for k, v in link.env().items()]

    def _tell(self, study: Any, trial: Any, ret: Any, n_objectives: int) -> str | None:
        """Record one job's outcome: COMPLETE with its values, PRUNED, or FAIL. Returns the failure's reason.

        The job's full config goes into the trial's user attributes, so the storage alone can export a rerunnable
        config (``sweep-export``) and draw every report (``sweep-report``).
        """
        import optuna

        if ret.cfg is not None:
            trial.set_user_attr(CONFIG_ATTR, OmegaConf.to_container(ret.cfg, resolve=True))
        try:
            values = _objective_values(_job_result(ret), n_objectives)
        except optuna.TrialPruned as pruned:
            study.tell(trial, state=_state("PRUNED"))
            log.info("Trial %d pruned: %s", trial.number, pruned)
            return None
        except Exception as error:  # noqa: BLE001 - any failure of one trial is recorded, and the sweep goes on
            reason = f"{type(error).__name__}: {error}"
            trial.set_user_attr(FAIL_REASON_ATTR, reason[:2000])
            study.tell(trial, state=_state("FAIL"))
            log.warning("Trial %d failed: %s", trial.number, reason)
            return reason
        study.tell(trial, values)
        return None

    @staticmethod
    def _best_text(study: Any, plan: Plan) -> str:
        """The best so far, for the progress bar or line."""
        best = best_trials(study)
        if len(best) == 1:
            values = ", ".join(f"{m} {v:.4g}" for m, v in zip(plan.names, best[0].values, strict=True))
            return f"best {values} (trial {best[0].number})"
        return f"Pareto front of {len(best)} trial(s)" if best else "no complete trial yet"

    # --------------------------------------------------------------------------------------------- mlflow
    def _parent_run(self, plan: Plan) -> SweepRun | None:
        """The sweep's MLflow run, for apps that ask for one: reopened when the study resumes."""
        if not plan.spec.tracking_uri:
            return None
        run = SweepRun(True, plan.spec.tracking_uri, plan.spec.experiment or plan.study_name)
        params = {
            "sampler": self.sampler_name,
            "pruner": self.pruner_name,
            "directions": plan.directions,
            "metrics": plan.metrics,
            **{f"space.{k}": repr(v) for k, v in plan.space.distributions.items()},
            **{f"fixed.{i}": o for i, o in enumerate(plan.space.fixed)},
        }
        tags = {"sweep.storage": masked(plan.storage), "sweep.sampler": self.sampler_name,
                "sweep.pruner": self.pruner_name}
        run.open(plan.study_name, params, tags)
        return run if run.run_id else None

    @staticmethod
    def _view(plan: Plan) -> RunsView:
        """The sweep's MLflow view. Columns: each objective's final value (the sweep's own row: its best), then test
        accuracy and each measure's headline and what it rests on. Charts: the objectives and the measures'
        headlines against each swept parameter; the per-epoch objectives' and the losses' learning curves."""
        from sweep.measures import MEASURES
        from sweep.objectives import EPOCH_METRICS
        from sweep.study.results import shown_metrics

        metrics = plan.names
        columns = [f"final_{m}" for m in [*metrics, *(m for m in shown_metrics() if m not in metrics)]]
        headlines = [m.headline for m in MEASURES.values() if m.headline not in metrics]
        curves = [m for m in EPOCH_METRICS if m in metrics or m in ("train_loss", "val_loss")]
        return RunsView(params=list(plan.space.params), columns=columns, ascending=plan.directions[0] == "minimize",
                        charted=[f"final_{m}" for m in [*metrics, *headlines]], curves=curves)

    def _finish(self, study: Any, plan: Plan, parent: SweepRun | None) -> None:
        from sweep.study.report import write_report

        summary = summarize(study, masked(plan.storage))
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        results = self.sweep_dir / "optimization_results.yaml"
        write_yaml(summary, results)
        report_dir = self.sweep_dir / "report"
        write_report(study, summary, report_dir, plan.storage)
        table = format_table(summary)
        print(f"\nStudy {plan.study_name!r}: {summary['n_trials']} trials ({state_counts(summary)})\n{table}\n",
              flush=True)
        print(result_sentence(summary))
        if note := ties(summary):
            print(note)
        print(f"Results: {results}\nReport: {report_dir / 'report.md'}")
        if parent:
            parent.log_summary(summary, table, report_dir)
            parent.end("FINISHED")
        for line in _browse_lines(plan.storage, parent, self.view_url):
            print(line)


def _quiet_launchers() -> None:
    """Hydra's launchers echo every job's overrides, the contract's environment included, 3-4 wrapped lines a trial;
    the sweep prints the trial's number and swept values instead. ``hydra.verbose`` brings the echo back."""
    for name in ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
                 "hydra_plugins.hydra_submitit_launcher.submitit_launcher"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _browse_lines(storage: str, parent: SweepRun | None, view_url: str | None) -> list[str]:
    """The commands that open this sweep's results: the MLflow UI on its store (and the link to the sweep's view),
    and optuna-dashboard on its study storage. Paths are absolute, so they work from any folder; a password in a
    URL is masked (give it with the tool's own environment variable)."""
    bin_dir = Path(sys.executable).parent
    lines = []
    if parent is not None:
        uri = parent.uri
        if uri.startswith(("http://", "https://")):
            lines.append(f"MLflow: {view_url or masked(uri)}")
        else:
            if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
                uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
            lines.append(f"MLflow UI: {bin_dir / 'mlflow'} ui --backend-store-uri {masked(uri)} --port 5000")
            if view_url:
                lines.append(f"  then open {view_url}")
    spec = storage if not is_journal(storage) else str(Path(storage).resolve())
    dashboard = bin_dir / "optuna-dashboard"
    prefix = str(dashboard) if dashboard.exists() else "pip install optuna-dashboard && optuna-dashboard"
    lines.append(f"Optuna dashboard: {prefix} {masked(spec)}")
    return lines


class Heartbeat:
    """Refreshes the heartbeat of the trials this sweep is running, from a thread, every ``interval`` seconds, so that
    any sweep of the study, on any host, can tell them from orphans (``_orphaned``). It works the same on every
    storage (Optuna's own heartbeats exist for databases only, and only under ``study.optimize``)."""

    def __init__(self, storage: Any, study_name: str, interval: float) -> None:
        self._storage, self._interval = storage, interval
        self._study_id = storage.get_study_id_from_name(study_name)
        self._trials: dict[int, int] = {}  # trial number -> trial id, of the batch now running
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeat", daemon=True)
        self._thread.start()

    def watch(self, trials: list[Any]) -> None:
        """Beat for ``trials`` (the batch about to launch) from now on, and for no other."""
        ids = {t.number: self._storage.get_trial_id_from_study_id_trial_number(self._study_id, t.number)
               for t in trials}
        with self._lock:
            self._trials = ids
        self._beat()

    def _beat(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        with self._lock:
            ids = list(self._trials.values())
        for trial_id in ids:
            try:
                beat = {"at": time.time(), "every": self._interval}
                self._storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, beat)
            except UpdateFinishedTrialError:
                pass  # told while we beat

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._beat()
            except Exception as error:  # noqa: BLE001 - a storage hiccup must not end the sweep; the next beat retries
                log.warning("Heartbeat not recorded (%s: %s)", type(error).__name__, error)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval + 5)


def _orphaned(trial: Any, host: str, now: float) -> str | None:
    """Why ``trial`` (RUNNING) has no live sweep behind it, or None while it has one."""
    owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
    if owner == host and pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
        return f"its sweep process {pid} on {host} ended while it ran"
    beat = trial.user_attrs.get(HEARTBEAT_ATTR) or {}
    last = beat.get("at") or trial.datetime_start.timestamp()
    silent = now - last
    if silent > 3 * float(beat.get("every") or 30.0):
        return f"no heartbeat from its sweep ({owner or 'unknown'}:{pid or '?'}) for {silent:.0f} s"
    return None


class Outcome:
    """What this run's trials came to: counts, and the reasons of those that failed."""

    def __init__(self) -> None:
        self.told = 0
        self.failures: list[str] = []

    def add(self, failure: str | None) -> None:
        self.told += 1
        if failure is not None:
            self.failures.append(failure)

    @property
    def failure_rate(self) -> float:
        return len(self.failures) / self.told if self.told else 0.0

    def raise_if_failed(self, max_failure_rate: float) -> None:
        """A sweep whose failures passed ``max_failure_rate``, or in which every trial failed, ends in an error."""
        if not self.failures or (self.failure_rate <= max_failure_rate and len(self.failures) < self.told):
            return
        reasons = "; ".join(f"{n}x {r}" if n > 1 else r for r, n in Counter(self.failures).most_common(3))
        if len(self.failures) == self.told:
            raise SweepError(f"every trial failed ({self.told}): {reasons}")
        raise SweepError(f"hydra.sweeper.max_failure_rate: {len(self.failures)} of {self.told} trials failed, "
                         f"more than {max_failure_rate:.0%}: {reasons}")


def _job_result(ret: Any) -> Any:
    """The task's return value, or its exception raised. ``JobReturn.return_value`` would do the same but first
    write "Error executing job with overrides" to stderr, for every failed and every pruned trial; the sweeper logs
    one line of its own instead. ``_return_value`` is a dataclass field of hydra-core 1.3 (pinned below 1.4 in
    pyproject.toml; tests/test_foreign_apps.py fails loudly if it moves)."""
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.FAILED:
        raise ret._return_value
    return ret.return_value


def _objective_values(value: Any, n_objectives: int) -> list[float]:
    """The job's return value as ``n_objectives`` finite floats; re-raises the job's own exception."""
    if isinstance(value, list | tuple | ListConfig):
        values = [float(v) for v in value]
    elif value is None:
        raise TypeError("the task returned None; a swept task returns a float, or one float per objective")
    else:
        values = [float(value)]
    if len(values) != n_objectives:
        raise ValueError(f"the task returned {len(values)} value(s) for {n_objectives} objective(s)")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"the task returned a non-finite objective {values}")
    return values


def _text(value: Any, textual: bool) -> str:
    return str(value) if textual else override_text(value)


def _probe_values(distribution: Any) -> list[Any]:
    """The values that show whether a job config can take a swept key: every choice, or a range's two ends."""
    return list(distribution.choices) if hasattr(distribution, "choices") else [distribution.low, distribution.high]


def _activating(space: SearchSpace, key: str) -> dict[str, Any]:
    """Values of the keys ``key`` depends on (and theirs) under which it is sampled."""
    values: dict[str, Any] = {}
    for parent, allowed in space.params[key].when.items():
        values |= _activating(space, parent) | {parent: allowed[0]}
    return values


def _describe(distribution: Any) -> str:
    """A distribution as a user wrote it, near enough: ``choice(0.01, 0.05)``, ``interval(0.0, 1.0, log)``."""
    if hasattr(distribution, "choices"):
        return f"choice({', '.join(map(str, distribution.choices))})"
    step = f", step={distribution.step}" if distribution.step else ""
    return f"interval({distribution.low}, {distribution.high}{step}{', log' if distribution.log else ''})"


def _point_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else dict(node)


def _without_hydra(config: DictConfig) -> DictConfig:
    trial = cast(DictConfig, OmegaConf.create(OmegaConf.to_container(config, resolve=False)))
    with open_dict(trial):
        trial.pop("hydra", None)
    return trial


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]
