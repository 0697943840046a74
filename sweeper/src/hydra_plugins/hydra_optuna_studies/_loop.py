"""The loop that keeps every slot busy: a slot claims a trial, launches it as a batch of one, tells the study what
came back and claims the next, without waiting for the other slots (Hydra's ``Launcher.launch`` returns only when
its whole batch is done, so a batch of ``n_jobs`` would idle every slot behind the slowest trial).

How the slots run follows the launcher. An in-process launcher (Hydra's basic one) changes process-wide state around
each job (HydraConfig, the working directory, logging), so its trials run one after another in this thread, and the
data a trial loads stay loaded for the next. A launcher that runs jobs elsewhere (this package's pool, joblib's
processes, SLURM through submitit) gets one thread per slot, each calling ``launch`` with its own trial. A launcher
that gains from many jobs at once (it sets ``SWEEP_BATCHES = True``: a stacked launcher trains them as one model)
gets up to ``n_jobs`` at a time, or, where ``n_jobs`` is 1, up to the launcher's own ``batch``.

Ctrl-C and SIGTERM (``docker stop``, ``scancel``) stop the loop the same way: the trials in flight are recorded FAIL
("interrupted" or "terminated"), the launcher's worker processes are shut down, and the signal's exception goes on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from hydra_optuna_studies.contract import LAUNCHER_BATCH, LAUNCHER_BATCHES
from hydra_optuna_studies.errors import SweepError
from hydra_optuna_studies.results import param_text
from hydra_optuna_studies.search_space import override_text

from ._claims import DONE, WAIT
from ._tell import LostJob

log = logging.getLogger(__name__)
WAIT_S = 1.0  # how long a slot with nothing to claim waits before it looks again
CLAIM_WAIT_S = 10.0  # how long Ctrl-C waits for a claim under way (one stuck on a storage outage is not waited for)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it unwinds the sweep as Ctrl-C does (a BaseException: a job's
    ``except Exception`` must not swallow it)."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While the sweep runs, SIGTERM raises :class:`Terminated` in the main thread; the old handler comes back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Outcome:
    """What this worker's trials came to: counts, and the reasons of those that failed."""

    max_failure_rate: float | None
    told: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, failure: str | None) -> None:
        self.told += 1
        if failure is not None:
            self.failures.append(failure)

    @property
    def exceeded(self) -> bool:
        """Whether the share of failures passed ``max_failure_rate`` (None: never)."""
        rate = self.max_failure_rate
        return rate is not None and self.told > 0 and len(self.failures) / self.told > rate

    def raise_if_failed(self) -> None:
        """A sweep whose failures passed ``max_failure_rate`` ends in an error; with none set, so does one in which
        every trial failed (nothing was learned). ``max_failure_rate: 1.0`` never does (hydra-optuna-sweeper)."""
        if not self.failures:
            return
        reasons = "; ".join(f"{n}x {r}" if n > 1 else r for r, n in Counter(self.failures).most_common(3))
        if self.max_failure_rate is None and len(self.failures) == self.told:
            raise SweepError(f"every trial failed ({self.told}): {reasons}")
        if self.exceeded:
            raise SweepError(f"hydra.sweeper.max_failure_rate: {len(self.failures)} of {self.told} trials failed, "
                             f"more than {self.max_failure_rate:.0%}: {reasons}")


class TrialLoop:
    """Runs trials until the study needs no more (or failures pass the limit); see the module's docstring.

    ``claim()`` gives a trial, WAIT or DONE; ``overrides(trial)`` the job's overrides; ``tell(trial, ret)`` records
    the job's outcome and returns the failure's reason (None when it did not fail); ``abandon(reason)`` fails the
    trials in flight when the sweep is interrupted.
    """

    def __init__(self, launcher: Any, n_jobs: int, outcome: Outcome, claim: Callable[[], Any],
                 overrides: Callable[[Any], list[str]], tell: Callable[[Any, JobReturn], str | None],
                 abandon: Callable[[str], None]) -> None:
        self._launcher, self._n_jobs, self.outcome = launcher, n_jobs, outcome
        self._claim, self._overrides, self._tell, self._abandon = claim, overrides, tell, abandon
        self._stopping = threading.Event()  # claim no more trials
        self._claiming = threading.Lock()  # a claim, from its check of _stopping until its trial beats, or abandon()
        self._interrupted = threading.Event()  # Ctrl-C or SIGTERM: the trials in flight were recorded already
        self._errors: list[BaseException] = []
        self.returns: list[tuple[int, JobReturn]] = []  # (trial number, what its job returned)

    def run(self) -> None:
        try:
            with sigterm_unwinds():
                if getattr(self._launcher, LAUNCHER_BATCHES, False):
                    while self._batch():
                        pass
                elif self._n_jobs == 1 or _in_process(self._launcher):
                    while self._step():
                        pass
                else:
                    self._threads()
        except BaseException as error:
            self._stopping.set()
            if isinstance(error, KeyboardInterrupt | Terminated):
                self._interrupted.set()
                with self._claims_settled():
                    self._abandon("terminated" if isinstance(error, Terminated) else "interrupted")
                _stop_worker_processes()
            raise
        if self._errors:
            raise self._errors[0]

    @contextlib.contextmanager
    def _claims_settled(self) -> Iterator[None]:
        """Hold the claim lock, so that a claim under way is in flight (and abandoned) first: waited for at most
        ``CLAIM_WAIT_S``, and not past a second Ctrl-C, which must not skip recording the trials in flight."""
        held = self._claiming.acquire(blocking=False)
        if not held:
            log.info("Stopping: waiting for a claim under way (at most %.0f s)", CLAIM_WAIT_S)
            with contextlib.suppress(KeyboardInterrupt, Terminated):
                held = self._claiming.acquire(timeout=CLAIM_WAIT_S)
        try:
            yield
        finally:
            if held:
                self._claiming.release()

    # ------------------------------------------------------------------------------------------------ slots
    def _step(self) -> bool:
        """One claim and, if there was a trial, its job; False once this slot is done. A trial claimed is launched
        (or, past Ctrl-C, recorded by ``abandon``): a claim checks ``_stopping`` first, not after, so that no trial
        it took is left RUNNING."""
        with self._claiming:
            if self._stopping.is_set():
                return False
            claim = self._claim()
        if claim is DONE:
            return False
        if claim is WAIT:
            time.sleep(WAIT_S)
            return True
        returns = self._launch([claim])
        if self._interrupted.is_set():
            return False  # the trial was recorded by whoever stopped the loop
        self._told(claim, returns[0])  # also when another slot stopped the loop: a finished result is kept
        return not self._stopping.is_set()

    def _batch(self) -> bool:
        """Up to n_jobs claims launched together; False once the study needs no more."""
        trials: list[Any] = []
        size = self._n_jobs if self._n_jobs > 1 else getattr(self._launcher, LAUNCHER_BATCH, 1)
        while len(trials) < size:
            claim = self._claim()
            if claim is DONE or claim is WAIT:
                break
            trials.append(claim)
        if not trials:
            if claim is WAIT:
                time.sleep(WAIT_S)
            return claim is WAIT
        for trial, ret in zip(trials, self._launch(trials), strict=True):
            self._told(trial, ret)
        return not self._stopping.is_set()

    def _threads(self) -> None:
        """One thread per slot; this thread waits in short joins, so that Ctrl-C and SIGTERM reach it at once."""
        threads = [threading.Thread(target=self._slot, name=f"sweep-slot-{i}", daemon=True)
                   for i in range(self._n_jobs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)

    def _slot(self) -> None:
        try:
            while self._step():
                pass
        except BaseException as error:  # noqa: BLE001 - a storage that failed for good: stop every slot, say why
            self._errors.append(error)
            self._stopping.set()

    # ------------------------------------------------------------------------------------------------ jobs
    def _launch(self, trials: list[Any]) -> list[JobReturn]:
        overrides = [self._overrides(trial) for trial in trials]
        for trial in trials:  # the trial and what was swept for it: the rest is in its folder and run
            log.info("Trial %d: %s", trial.number, " ".join(f"{k}={_text(v)}" for k, v in trial.params.items()))
        if self._interrupted.is_set():  # Ctrl-C came while this slot claimed: its trial is recorded, nothing runs
            return [_failed_return(KeyboardInterrupt()) for _ in trials]
        try:
            return list(self._launcher.launch(overrides, initial_job_idx=trials[0].number))
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise  # a full disk stops the sweep (in one line); no trial is to blame
            return [_failed_return(LostJob(f"its job could not start ({error})")) for _ in trials]
        except Exception as error:  # noqa: BLE001 - the launch failed as a whole
            if not _process_died(error):
                return [_failed_return(error) for _ in trials]  # around the task (its config, say): as it is
            lost = LostJob(f"its job's process died ({type(error).__name__}: {_first_line(error)}), killed or out "
                           "of memory; a job of another slot may have taken it down with it")
            return [_failed_return(lost) for _ in trials]

    def _told(self, trial: Any, ret: JobReturn) -> None:
        self.outcome.add(self._tell(trial, ret))
        _drop_frames(ret._return_value)
        self.returns.append((trial.number, ret))
        if self.outcome.exceeded:
            self._stopping.set()


def _text(value: Any) -> str:
    """A swept value in a trial's line: a sampled float to 6 significant digits, as the tables show it."""
    return param_text(value) if isinstance(value, float) else override_text(value)


def _process_died(error: Exception) -> bool:
    """Whether the launcher says the job's process (or its node) went away: loky's broken pool (the pool, joblib),
    submitit's uncompleted job (SLURM: killed, preempted, node lost; named, not imported: submitit is optional)."""
    return isinstance(error, BrokenExecutor) or type(error).__name__ == "UncompletedJobError"


def _drop_frames(value: Any) -> None:
    """A told failure's error, and those it came from, without their tracebacks: the frames an error passed
    through hold what the trial had (its model on the GPU, for a stack every trial's), and the sweep keeps every
    job's return until it ends. Its reason is recorded already."""
    seen: set[int] = set()
    while isinstance(value, BaseException) and id(value) not in seen:
        seen.add(id(value))
        value.__traceback__ = None
        value = value.__cause__ or value.__context__


def _failed_return(error: BaseException) -> JobReturn:
    ret = JobReturn()
    ret.status, ret._return_value = JobStatus.FAILED, error
    return ret


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    exit_codes = next((line for line in lines if "exit code" in line.lower()), "")
    return " ".join(dict.fromkeys(filter(None, [lines[0] if lines else "", exit_codes])))


def _in_process(launcher: Any) -> bool:
    """Whether ``launcher`` runs its jobs in this process (Hydra's basic launcher)."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher)


def _stop_worker_processes() -> None:
    """Shut the job processes down now, if this sweep started any (loky's, under the pool or joblib's launcher): left
    alone, loky keeps them for 300 s."""
    loky = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(loky, "_executor", None)  # the one pool every joblib.Parallel of this process reuses
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


def batches(returns: list[tuple[int, JobReturn]], size: int) -> list[list[JobReturn]]:
    """The jobs' returns in trial order, in batches of ``size``: what ``Sweeper.sweep`` returns, as Hydra's batched
    sweepers do, however the trials were launched."""
    ordered = [ret for _, ret in sorted(returns, key=lambda item: item[0])]
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]
