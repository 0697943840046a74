"""Claims: the next trial for a free slot, decided under the study's lock so that every worker together runs each
grid point once, or ``n_trials`` trials, however many workers there are and whenever they join.

A claim first fails the orphans of dead workers (which enqueues their params again, once), then takes, in order: a
WAITING trial (such a retry, or a trial someone enqueued); the next grid point no trial holds yet (enqueued and
popped at once, so no other worker can take it); or a new trial from the sampler, while the study holds fewer than
``n_trials``. When none is left but other trials still run, the slot waits: one of them may yet turn out orphaned.

Trials count towards ``n_trials`` (and a grid point counts as taken) while they are complete, pruned, running or
waiting, and once they failed during this worker's sweep: a trial that failed before the worker started is replaced
(that is what rerunning a command does), one that failed meanwhile is not, but for the one retry of an orphan. So a
sweep in which every trial fails ends, and the next run of the command tries again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hydra_optuna_studies.contract import RETRY_OF_ATTR
from hydra_optuna_studies.storage import StudyLock

from ._liveness import Heartbeat, fail_orphans
from ._plan import Plan

WAIT = "wait"  # no trial now, but others still run: claim again shortly
DONE = "done"  # the study needs no more trials from anyone


def point_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def params_of(trial: Any) -> dict[str, Any]:
    """A trial's point: the params it was enqueued with (before it has suggested them) and those it has."""
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


class Claims:
    def __init__(self, study: Any, plan: Plan, storage: Any, lock: StudyLock, heartbeat: Heartbeat,
                 on_orphan: Callable[[int, str], None]) -> None:
        self._study, self._plan, self._storage, self._lock = study, plan, storage, lock
        self._heartbeat, self._on_orphan = heartbeat, on_orphan
        self._study_id = storage.get_study_id_from_name(plan.study_name)
        self._since = len(study.get_trials(deepcopy=False))  # trials numbered from here on are this sweep's
        self._grid: Iterator[dict[str, Any]] = iter(plan.space.points()) if plan.grid else iter(())
        self._pending: dict[str, Any] | None = None  # the grid point the cursor stands on

    def claim(self) -> Any:
        """An ``optuna.Trial`` this worker now runs (already beating), or WAIT, or DONE."""
        from optuna.trial import TrialState

        with self._lock.held():
            self.fail_orphans()
            trials = self._study.get_trials(deepcopy=False)
            states = [t.state for t in trials]
            retried = {t.user_attrs.get(RETRY_OF_ATTR) for t in trials}
            counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                        TrialState.WAITING)
                       or (t.state == TrialState.FAIL and t.number >= self._since and t.number not in retried)]
            if TrialState.WAITING in states or (len(counted) < self._plan.n_trials and self._has_next(counted)):
                trial = self._study.ask()
                self._heartbeat.watch(trial)
                return trial
            return WAIT if TrialState.RUNNING in states else DONE

    def fail_orphans(self) -> list[int]:
        """Fail (and retry once) the trials of dead workers; the caller holds the study's lock."""
        return fail_orphans(self._study, self._storage, self._study_id, self._heartbeat.running, self._on_orphan)

    def settle(self) -> None:
        """Fail the orphans a sweep finds when it starts, so that what it says is left to run counts their retries."""
        with self._lock.held():
            self.fail_orphans()

    def _has_next(self, holding: list[Any]) -> bool:
        """Whether there is a trial to ask for: the sampler's next, or the next grid point none of the ``holding``
        trials holds (then enqueued, so that the ask that follows pops it)."""
        if not self._plan.grid:
            return True
        taken = {point_key(params_of(t)) for t in holding}
        while True:
            if self._pending is None:
                self._pending = next(self._grid, None)
                if self._pending is None:
                    return False
            if point_key(self._pending) not in taken:
                self._study.enqueue_trial(self._pending)
                self._pending = None
                return True
            self._pending = None


def todo_of(study: Any, plan: Plan) -> int:
    """How many more trials the study needs, as far as can be told now: what the progress bar counts down."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    if not plan.grid:
        return max(0, plan.n_trials - len(counted))
    taken = {point_key(params_of(t)) for t in counted}
    limit = plan.n_trials - len(counted)
    missing = (p for p in plan.space.points() if point_key(p) not in taken)
    return sum(1 for _ in itertools.islice(missing, max(0, limit)))
