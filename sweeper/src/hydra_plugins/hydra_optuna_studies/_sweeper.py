"""The Optuna sweeper: plan the sweep, open (or join) the study, keep every slot busy, tell Optuna what came back.

It sweeps any Hydra app whose task returns a float or a sequence of floats. Everything it says to a job goes
through the contract in :mod:`hydra_optuna_studies.contract` (environment variables set with ``hydra.job.env_set``),
never into the app's config; an app that tags its task with :func:`~hydra_optuna_studies.contract.describes_study`
adds checks of its config, objective names and directions, what its tables show, and an MLflow parent run. The study
lives in a persistent storage from the first trial: rerunning the same command resumes it, and any number of workers
with the same storage and study name (this command's ``workers``, other commands, other hosts) share it.

Each step has its module: ``_plan`` (every check, before anything is written), ``_study`` (open or join the study),
``_claims`` (the next trial, under the study's lock), ``_liveness`` (heartbeats, other workers' orphans), ``_loop``
(slots, failures, signals), ``_view`` (MLflow), ``_terminal`` (what the terminal shows), ``_workers`` (local worker
processes), ``_compose`` (each job's config).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from hydra.core.config_loader import ConfigLoader
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_optuna_studies.contract import (
    ENV_SECRETS,
    FAIL_REASON_ATTR,
    STUDY_HOOK,
    TrialLink,
    masked,
    with_secrets,
)
from hydra_optuna_studies.errors import SweepError
from hydra_optuna_studies.live import LiveReport
from hydra_optuna_studies.patience import ENV_PATIENCE, StorageUnavailable
from hydra_optuna_studies.report import RESULTS, write_report
from hydra_optuna_studies.results import (
    best_trials,
    counted,
    format_table,
    result_sentence,
    state_counts,
    summarize,
    ties,
)
from hydra_optuna_studies.search_space import override_text
from hydra_optuna_studies.storage import StudyLock, open_storage
from hydra_optuna_studies.sweep_run import SweepRun
from hydra_optuna_studies.tracking import check_store, quiet_tracking

from ._claims import Claims, todo_of
from ._compose import ReusingConfigLoader, scrubbed, secrets_in
from ._liveness import Heartbeat
from ._loop import Outcome, Terminated, TrialLoop, batches, sigterm_unwinds
from ._plan import Plan, make_plan, settings_of
from ._study import match_study_space, open_study
from ._tell import keep_pending, outcome, tell_pending
from ._tell import tell as record
from ._terminal import SweepProgress, browse_lines, quiet_launchers
from ._view import close_sweep_run, open_sweep_run, runs_view
from ._workers import is_spawned_worker, run_workers

log = logging.getLogger(__name__)


class OptunaStudiesSweeper:
    def __init__(self, options: dict[str, Any]) -> None:
        self.settings = settings_of(options)
        self.live: LiveReport | None = None

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

    def sweep(self, arguments: list[str]) -> list[list[JobReturn]]:
        """Run the study; return the jobs' results in trial order, in batches of ``n_jobs``, as Hydra's batched
        sweepers do."""
        with self._process_state():
            plan = make_plan(self.settings, self.config, arguments, self.loader, self.describe, self.sweep_dir)
            if not plan.space.params and plan.hook is None:
                log.info("Nothing to sweep: running the job once, with no study")
                self._save_config()
                return [list(self.launcher.launch([plan.space.fixed], initial_job_idx=0))]
            if plan.spec.tracking_uri:
                check_store(plan.spec.tracking_uri)
            study = self._open(plan)
            if self.settings.workers > 1 and not is_spawned_worker():
                return self._supervise(plan, study)
            return self._run(plan, study)

    @contextlib.contextmanager
    def _process_state(self) -> Iterator[None]:
        """Whatever the sweep changes in its process (Optuna's log level, the launchers' and MLflow's loggers, the
        environment its jobs inherit, the SIGTERM handler) is put back when it ends."""
        import optuna

        verbosity = optuna.logging.get_verbosity()
        saved = {key: os.environ.get(key) for key in (ENV_SECRETS, ENV_PATIENCE)}
        if not self.config.hydra.verbose:  # the sweep prints its own progress; Optuna's INFO lines repeat it
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        found = secrets_in(self.config)
        if found:  # jobs inherit the real values; everything saved holds them masked
            os.environ[ENV_SECRETS] = with_secrets(os.environ, found)
        os.environ[ENV_PATIENCE] = str(self.settings.storage_patience)  # this process's storage calls, and jobs'
        try:
            with quiet_launchers(bool(self.config.hydra.verbose)), quiet_tracking():
                yield
        except Terminated:
            raise SweepError("terminated (SIGTERM): the trials in flight were recorded FAIL; rerun the same command "
                             "to resume") from None
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise SweepError(f"no space left on the device ({error.filename or self.sweep_dir}): free some and rerun "
                             "the same command to resume; finished trials are kept") from None
        finally:
            if self.live is not None:  # a sweep that stopped early: its page must not say it runs
                self.live.close()
                self.live = None
            optuna.logging.set_verbosity(verbosity)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _open(self, plan: Plan) -> Any:
        study = open_study(plan)
        match_study_space(study, plan, self.settings.keep_study_space)
        self._save_config()
        storage = open_storage(plan.storage, "hydra.sweeper.storage")
        tell_pending(study, storage, storage.get_study_id_from_name(plan.study_name), self.sweep_dir)
        return study

    def _tracking(self, plan: Plan, study: Any, lock: StudyLock) -> SweepRun | None:
        """The study's MLflow run (for apps that ask for one) and the link to its view."""
        parent = open_sweep_run(plan, study, lock)
        with lock.held():  # workers starting together would race on the experiment tag that holds the view
            self.view_url = parent.save_view(runs_view(plan)) if parent else None
        return parent

    def _progress(self, plan: Plan, study: Any, shown: bool = True) -> SweepProgress:
        """Say what is left to run; the progress bar that counts it down and the report's page, live while the sweep
        runs (:mod:`hydra_optuna_studies.live`), named now so it can be opened at once (a started worker has
        neither)."""
        todo = todo_of(study, plan)
        log.info("Study %r in %s: %d trial(s) to run, %s %s", plan.study_name, masked(plan.storage), todo,
                 "/".join(plan.directions), "/".join(plan.metrics or ["the task's return value"]))
        if shown:
            finished = progress_counts(study)[0]
            self.live = LiveReport(plan.storage, plan.study_name, self.sweep_dir / "report", finished + todo, finished)
            log.info("Report: %s (rewritten as trials finish)", self.live.page)
        return SweepProgress(todo if shown else 0, progress_counts(study)[0])

    def _supervise(self, plan: Plan, study: Any) -> list[list[JobReturn]]:
        """``workers`` local worker processes run the trials; this one shows their progress and reports."""
        parent = self._tracking(plan, study, StudyLock(plan.storage, plan.study_name))
        with self._progress(plan, study) as progress, sigterm_unwinds():
            run_workers(self.settings.workers, lambda: progress.update(*progress_counts(study), best_text(study, plan)))
        self._finish(study, plan, parent)
        return []

    def _run(self, plan: Plan, study: Any) -> list[list[JobReturn]]:
        storage = open_storage(plan.storage, "hydra.sweeper.storage")
        study_id = storage.get_study_id_from_name(plan.study_name)
        heartbeat = Heartbeat(storage, study_id, self.settings.heartbeat_interval)
        lock = StudyLock(plan.storage, plan.study_name)
        parent = self._tracking(plan, study, lock)
        claims = Claims(study, plan, storage, lock, heartbeat,
                        lambda n, why: self._mark(parent, n, "FAIL", why, "KILLED"))
        tally = Outcome(self.settings.max_failure_rate)
        claims.settle()
        with self._progress(plan, study, shown=not is_spawned_worker()) as progress:

            def tell(trial: Any, ret: JobReturn) -> str | None:
                told = outcome(trial.number, ret, len(plan.directions))
                try:
                    record(study, storage, study_id, told)
                except StorageUnavailable as away:
                    kept = keep_pending(self.sweep_dir, told)
                    raise StorageUnavailable(f"{away}; trial {trial.number}'s result is kept in {kept}, and recorded "
                                             "when the same command runs again") from None
                self._mark(parent, trial.number, told.state, told.reason)
                progress.update(*progress_counts(study), best_text(study, plan))
                return told.reason if told.state == "FAIL" else None

            def abandon(reason: str) -> None:
                for number in abandon_running(study, storage, study_id, heartbeat.running, reason):
                    self._mark(parent, number, "FAIL", reason, "KILLED")
                if parent and not others_running(study):
                    parent.end("KILLED", reason=f"sweep {reason}")

            loop = TrialLoop(self.launcher, self.settings.n_jobs, tally, claims.claim,
                             lambda trial: self._job_overrides(trial, plan, parent), tell, abandon)
            try:
                loop.run()
            finally:
                heartbeat.stop()
        if not is_spawned_worker():
            self._finish(study, plan, parent)
        tally.raise_if_failed()
        return batches(loop.returns, self.settings.n_jobs)

    @staticmethod
    def _mark(parent: SweepRun | None, number: int, state: str, reason: str | None, status: str | None = None) -> None:
        if parent is not None:
            parent.mark_trial(number, state, reason, status)

    def _save_config(self) -> None:
        """``multirun.yaml`` in the sweep folder, as Hydra's own sweepers write it: once every check has passed."""
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(scrubbed(self.config), self.sweep_dir / "multirun.yaml")

    def _job_overrides(self, trial: Any, plan: Plan, parent: SweepRun | None) -> list[str]:
        """The job's overrides: fixed ones, the trial's values, and the contract's environment."""
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
        env = {**link.env(), ENV_PATIENCE: str(self.settings.storage_patience)}
        return overrides + [f"++hydra.job.env_set.{k}={override_text(v)}" for k, v in env.items()]

    def _finish(self, study: Any, plan: Plan, parent: SweepRun | None) -> None:
        summary = summarize(study, masked(plan.storage))
        report_dir = self.sweep_dir / "report"
        if not (self.live and self.live.final()):  # the live report's writer writes the final page, if it runs
            write_report(study, summary, report_dir, plan.storage)
        results = self.sweep_dir / RESULTS
        shutil.copyfile(report_dir / RESULTS, results)  # the report's copy: one YAML dump, not two
        table = format_table(summary)
        trials = counted(summary["n_trials"], "trial")
        print(f"\nStudy {plan.study_name!r}: {trials} ({state_counts(summary)})\n{table}\n", flush=True)
        print(result_sentence(summary))
        if note := ties(summary):
            print(note)
        print(f"Results: {results}\nReport: {report_dir / 'report.html'}")
        if parent:
            close_sweep_run(parent, summary, table, report_dir, last=not others_running(study))
        lost = parent is not None and not parent.enabled
        sweeps = parent.sweeps_url() if parent and not lost else None
        for line in browse_lines(plan.storage, parent.uri if parent else None, self.view_url, lost, sweeps):
            print(line)


def abandon_running(study: Any, storage: Any, study_id: int, numbers: set[int], reason: str) -> list[int]:
    """Fail this worker's trials in flight, for ``reason`` ("interrupted", "terminated"); return those failed."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    failed = []
    for number in sorted(numbers):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # told just before the signal came
        failed.append(number)
    return failed


def others_running(study: Any) -> bool:
    """Whether any trial of the study still runs or waits (another worker's): then this worker is not the last."""
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


def progress_counts(study: Any) -> tuple[int, int]:
    """(finished, running) trials of the study: what the progress bar counts."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return sum(s.is_finished() for s in states), sum(s.name == "RUNNING" for s in states)


def best_text(study: Any, plan: Plan) -> str:
    """The best so far, for the progress bar or line."""
    best = best_trials(study)
    if len(best) == 1:
        values = ", ".join(f"{m} {v:.4g}" for m, v in zip(plan.names, best[0].values, strict=True))
        return f"best {values} (trial {best[0].number})"
    if best:
        return f"Pareto front of {len(best)} trial{'s' if len(best) > 1 else ''}"
    return "no complete trial yet"
