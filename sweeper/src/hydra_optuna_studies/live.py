"""The live report: a running sweep's ``report/report.html``, rewritten as its trials finish.

When a sweep starts, the sweeper writes a page that says so and reloads itself (:class:`LiveReport`), and names it in
its first lines, so the user can open it at once. A sweep still running after ``LIVE_AFTER_S`` gets a writer: a
process of its own (``python -m hydra_optuna_studies.live``, at low priority and one CPU thread) that reads the
study from its storage, as ``sweep-report`` does, and writes the report again when the study changed, at most every
``EVERY_S`` seconds and never more than a quarter of its time. Being a process, it never holds the sweep's
interpreter lock nor delays a launch: trials run exactly as they would without it; a sweep shorter than
``LIVE_AFTER_S`` never starts one. While the sweep runs, the page says how far it is and the best so far, and
reloads itself every ``REFRESH_S`` seconds; at the end the writer writes the final page, which does not reload (only
the pages are rewritten when no trial changed since its last page), or, without a writer, the sweeper does. A sweep
that stops before its end (Ctrl-C, SIGTERM, an error) has its writer write the page of what it ran, or a page saying
it stopped: no page reloads itself for ever.

:class:`ReportWriter` (a report that draws again only when its studies changed) also serves ``sweep-report --serve``
(:mod:`hydra_optuna_studies.serve`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.report import (
    PAGE,
    STALE_S,
    Live,
    Rendered,
    Studies,
    load_studies,
    publish,
    render_studies,
    staging,
    summaries_of,
    write_placeholder,
)
from hydra_optuna_studies.results import param_text

if TYPE_CHECKING:
    from optuna import Study

log = logging.getLogger(__name__)
LIVE_AFTER_S = 3.0  # a sweep still running after this long gets a writer of its live page
EVERY_S = 5.0  # the page is written again at most this often, and only when the study changed ...
BUSY_SHARE = 0.25  # ... and the writer writes at most this share of its time (a large study's page waits longer)
POLL_S = 1.0  # how often the writer looks at the study
REFRESH_S = 5  # how often a running sweep's page reloads itself in the browser
FINAL_WAIT_S = 900.0  # how long a finished sweep waits for its writer's final page before writing it itself ...
SAY_WAIT_S = 10.0  # ... saying so once it has waited this long
FRESH_S = STALE_S / 4  # the writer rewrites the page at least this often, so a live sweep's page never looks stale
STOP_WAIT_S = 10.0  # how long a sweep that stopped early waits for its writer's last page
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
WRITTEN = "written"  # the writer's answer once the final page is in place


def signature(studies: list[Study]) -> tuple:
    """What the report shows of the studies' trials: their numbers, states and values (cheap to read each second:
    a journal reads only what was appended, a database only the trials not finished yet)."""
    return tuple((t.number, t.state.name, tuple(t.values or ())) for study in studies
                 for t in study.get_trials(deepcopy=False))


def running(summary: dict[str, Any]) -> int:
    """Trials of the study running or waiting to run."""
    return int(summary["states"].get("RUNNING", 0) + summary["states"].get("WAITING", 0))


def running_line(summary: dict[str, Any], total: int | None = None) -> str:
    """``Running: 2 of 6 trials finished, 1 running; best so far objective_0 0.25 (trial 1: x=0.5).`` (without
    ``total``: ``2 trials finished``)."""
    now = running(summary)
    finished = summary["n_trials"] - now
    count = f"{finished} of {max(total, finished + now)} trials" if total else \
        f"{finished} trial{'' if finished == 1 else 's'}"
    return f"Running: {count} finished, {now} running; {_best_so_far(summary)}."


def _best_so_far(summary: dict[str, Any]) -> str:
    if front := summary.get("pareto_front"):
        return f"Pareto front so far: trial{'s' if len(front) > 1 else ''} {', '.join(str(t['number']) for t in front)}"
    if not summary.get("best"):
        return "no complete trial yet"
    best = summary["best"][0]
    values = ", ".join(f"{m} {v:.4g}" for m, v in zip(summary["metrics"], best["values"], strict=True))
    params = " ".join(f"{k}={param_text(v)}" for k, v in best["params"].items())
    return f"best so far {values} (trial {best['number']}{': ' + params if params else ''})"


class Throttle:
    """At most one write every ``EVERY_S`` seconds, and a pause of three times a write's length after it."""

    def __init__(self) -> None:
        self._next = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._next

    def took(self, seconds: float) -> None:
        self._next = time.monotonic() + max(EVERY_S, seconds * (1 / BUSY_SHARE - 1))


class ReportWriter:
    """Writes the report of ``studies`` into ``out`` (a comparison for several), with the :class:`Live` line
    ``status`` gives for their summaries; it draws the figures again only when the studies changed, and otherwise
    rewrites only the pages (due every ``fresh_s`` seconds, if given: a page that reloads itself from a file must
    show it is still written)."""

    def __init__(self, studies: Studies, out: Path, status: Callable[[list[dict[str, Any]]], Live | None],
                 fresh_s: float | None = None) -> None:
        self.studies, self.out, self._status, self._fresh_s = studies, out, status, fresh_s
        self._rendered: Rendered | None = None
        self._signature: tuple | None = None
        self._written = time.monotonic()

    def changed(self) -> bool:
        """The studies changed since the last write, or the page is due to be rewritten to show it is alive."""
        due = self._fresh_s is not None and time.monotonic() - self._written > self._fresh_s
        return due or signature([study for _, study in self.studies]) != self._signature

    def write(self, final: bool = False) -> float:
        """Write the report (``final``: without a live line); return the seconds it took."""
        start = time.monotonic()
        mark = signature([study for _, study in self.studies])
        summaries = summaries_of(self.studies)
        live = None if final else self._status(summaries)
        with staging(self.out) as folder:
            moved: list[str] | None = []  # nothing changed: the figures in place stay, the pages are rewritten
            if self._rendered is None or mark != self._signature:
                self._rendered, moved = render_studies(self.studies, summaries, folder), None
            publish(self._rendered, folder, self.out, live, moved)
        self._signature, self._written = mark, time.monotonic()
        return self._written - start


def refresh(writer: ReportWriter, throttle: Throttle, write: Callable[[], object]) -> None:
    """``write`` again if the throttle allows and ``writer``'s studies changed. A storage away for a moment (a SQLite
    file locked by a writer, a database restarting) fails this look, not the next."""
    if not throttle.ready():
        return
    start = time.monotonic()
    with contextlib.suppress(Exception):  # noqa: BLE001 - the final page, or the sweep's own, says what failed
        if not writer.changed():
            return
        write()
    throttle.took(time.monotonic() - start)


class LiveReport:
    """The live page of one sweep, from the sweeper's side: the page that says the sweep is starting, now; the writer
    process once the sweep has run ``LIVE_AFTER_S``; its final page at the end (:meth:`final`), or its last page if
    the sweep stops early (:meth:`close`)."""

    def __init__(self, storage: str, study_name: str, out: Path, total: int, finished: int) -> None:
        self.page = out.resolve() / PAGE
        self._storage = storage
        self._settings = {"storage": storage, "study": study_name, "out": str(out.resolve()), "total": total}
        self._title = f"Study {study_name}"
        # Jobs an in-process launcher runs change the working folder and environment: the writer gets the sweep's.
        self._cwd, self._env = os.getcwd(), {**os.environ, **_ONE_THREAD}
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self._ended = False
        write_placeholder(out, self._title, Live(f"Starting: {finished} of {total} trials finished. This page reloads "
                                                 f"itself every {REFRESH_S} s until the sweep ends.", REFRESH_S))
        self._timer = threading.Timer(LIVE_AFTER_S, self._start)
        self._timer.daemon = True
        self._timer.start()

    def _start(self) -> None:
        with self._lock:
            if self._ended:
                return
            try:  # -P: the sweep's folder is its working folder, not a place to import from
                self._child = subprocess.Popen(
                    [sys.executable, "-P", "-m", "hydra_optuna_studies.live"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self._cwd, env=self._env, text=True,
                    start_new_session=True)  # Ctrl-C is the sweep's to handle; the sweep tells its writer what to do
            except OSError:  # no process to spare: the sweep writes its report at the end, as a short one does
                return
            assert self._child.stdin is not None
            with contextlib.suppress(OSError):  # the storage travels here, never on a command line
                self._child.stdin.write(json.dumps(self._settings) + "\n")
                self._child.stdin.flush()

    def _end(self) -> subprocess.Popen | None:
        """No writer starts from now on; the one that did, if any."""
        with self._lock:
            self._ended = True
            self._timer.cancel()
            return self._child

    def final(self) -> bool:
        """The final page, from the writer: True once it is in place; False when there is no writer (a short sweep)
        or it failed: then the caller writes the report."""
        if self._ended:
            return False
        child = self._end()
        if child is None:
            return False
        answer = _ask(child, FINAL_WAIT_S)
        if answer != WRITTEN:
            log.warning("The live report's writer did not write the final page (%s): writing it here",
                        answer or "it ended early")
        return answer == WRITTEN

    def close(self) -> None:
        """After a sweep that stopped before its end: the writer's page of what it ran, or a page that says it
        stopped; either way one that no longer reloads itself. Nothing after :meth:`final`."""
        if self._ended:
            return
        child = self._end()
        if child is None or _ask(child, STOP_WAIT_S) != WRITTEN:
            storage = masked(self._storage)
            secret = " (the password as the sweep got it, from PGPASSWORD say)" if storage != self._storage else ""
            with contextlib.suppress(OSError):  # a full disk, say: the sweep's own error is the one to show
                write_placeholder(self.page.parent, self._title, Live(
                    f"The sweep stopped before its end. `sweep-report --storage {storage} --out {self.page.parent}`"
                    f"{secret} writes the report of the trials it ran."))


def _ask(child: subprocess.Popen, timeout: float) -> str:
    """Tell the writer to write its final page; its answer (empty if it ended or did not answer in ``timeout``)."""
    assert child.stdin is not None and child.stdout is not None
    answer = ""
    try:
        child.stdin.write("final\n")
        child.stdin.close()
        ready = select.select([child.stdout], [], [], min(timeout, SAY_WAIT_S))[0]
        if not ready and timeout > SAY_WAIT_S:
            log.info("Waiting for the live report's writer to write the final page (at most %.0f s more)",
                     timeout - SAY_WAIT_S)
            ready = select.select([child.stdout], [], [], timeout - SAY_WAIT_S)[0]
        if ready:
            answer = child.stdout.readline().strip()
    except OSError:  # it had ended
        pass
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    with contextlib.suppress(OSError):
        child.stdin.close()
    child.stdout.close()
    return answer


def _commands(stream: IO[str], into: queue.Queue[str]) -> None:
    """Each line the sweep sends, then "final" when it closes the pipe (it ended, or died)."""
    for line in stream:
        into.put(line.strip())
    into.put("final")


def main() -> None:
    """The writer process: its settings come as one JSON line on stdin; it writes the live page until the sweep
    sends "final" (or its end of the pipe closes), then the final page, and answers ``written``."""
    import optuna

    with contextlib.suppress(OSError):
        os.nice(10)  # the trials come first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")  # no terminal to tell: the report notes what it left out and why
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = json.loads(sys.stdin.readline())
    commands: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_commands, args=(sys.stdin, commands), daemon=True).start()
    total = int(settings["total"])
    writer: ReportWriter | None = None
    throttle = Throttle()
    while True:
        try:
            commands.get(timeout=POLL_S)
            break
        except queue.Empty:
            pass
        if writer is None:  # the storage may be locked at this very moment: try again at the next look
            with contextlib.suppress(Exception):  # noqa: BLE001
                writer = _writer(settings, total)
        if writer is not None:
            refresh(writer, throttle, writer.write)
    try:
        (writer or _writer(settings, total)).write(final=True)
    except Exception as error:  # noqa: BLE001 - the sweep writes the report itself, and shows the error
        print(f"failed: {masked(str(error).splitlines()[0] if str(error) else type(error).__name__)}", flush=True)
        raise SystemExit(1) from None
    print(WRITTEN, flush=True)


def _writer(settings: dict[str, Any], total: int) -> ReportWriter:
    """The writer of the sweep's page, its studies loaded from the storage."""
    return ReportWriter(load_studies([settings["storage"]], [settings["study"]]), Path(settings["out"]),
                        lambda summaries: Live(f"{running_line(summaries[0], total)} This page reloads itself "
                                               f"every {REFRESH_S} s until the sweep ends.", REFRESH_S), FRESH_S)

if __name__ == "__main__":
    main()
