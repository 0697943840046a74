"""What a sweep shows on the terminal: one line per trial it starts, a progress bar (a plain line off a terminal),
and the closing lines that say where everything is.

The bar (trials finished / the study's target, the best so far, time left) is drawn on stderr only when stderr is a
terminal, so logs piped to a file or a CI console stay plain lines. While it is drawn, the log handlers that write to
the terminal are pointed at rich's proxies for stdout and stderr, which print each line above the bar instead of
through it. Every logger level and handler it changes is put back when the sweep ends.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.storage import is_journal

log = logging.getLogger(__name__)
LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher._core",
                    "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
                    "hydra_plugins.hydra_submitit_launcher.submitit_launcher")


@contextlib.contextmanager
def quiet_launchers(verbose: bool) -> Iterator[None]:
    """Hydra's launchers echo every job's overrides, the contract's environment included, 3-4 wrapped lines a trial;
    the sweep prints the trial's number and swept values instead. ``hydra.verbose`` keeps the echo."""
    loggers = [logging.getLogger(name) for name in LAUNCHER_LOGGERS]
    levels = [logger.level for logger in loggers]
    if not verbose:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def duration(seconds: float) -> str:
    """``1:02:03``, or ``3d 04:05:06`` past a day: a time left never wraps around."""
    whole = int(max(0.0, min(seconds, 1e9)))
    days, rest = divmod(whole, 86400)
    clock = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {clock}" if days else clock


class SweepProgress:
    """Use as a context around the sweep's loop; call :meth:`update` after each trial a worker tells.

    It counts the trials that finished (in any state, by any worker) since it started, against the ``total`` the
    sweep expected then, which grows when failed trials are replaced."""

    def __init__(self, total: int, finished: int) -> None:
        self.total = total
        self._started = time.perf_counter()
        self._at_start = finished
        self._bar: Any = None
        self._task: Any = None
        self._pointed: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []

    def __enter__(self) -> SweepProgress:
        if sys.stderr.isatty() and self.total > 0:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), TextColumn("{task.fields[best]}"))
            out, err = sys.stdout, sys.stderr
            self._bar = Progress(*columns, console=Console(file=err), transient=True)
            self._bar.start()  # from here sys.stdout and sys.stderr are rich's proxies
            self._task = self._bar.add_task("trials", total=self.total, best="")
            self._point_handlers(out, sys.stdout)
            self._point_handlers(err, sys.stderr)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for handler, stream in self._pointed:
            handler.setStream(stream)
        if self._bar is not None:
            self._bar.stop()

    def update(self, finished: int, running: int, best: str) -> None:
        """``finished`` trials of the study (any state, any worker) and ``running`` now; ``best``: the best so far."""
        done = finished - self._at_start
        self.total = max(self.total, done + running)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=self.total, best=best)
            return
        elapsed = time.perf_counter() - self._started
        eta = duration((self.total - done) * elapsed / done) if done > 0 else "-"
        log.info("[%d/%d] %s, ETA %s", done, self.total, best, eta)

    def _point_handlers(self, real: IO[str], proxy: IO[str]) -> None:
        """Send the log lines that went to ``real`` through ``proxy``; remember what to restore."""
        loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
        for logger in loggers:
            for handler in getattr(logger, "handlers", []):  # a placeholder in loggerDict has none
                if type(handler) is logging.StreamHandler and handler.stream is real:
                    self._pointed.append((handler, real))
                    handler.setStream(proxy)


def browse_lines(storage: str, mlflow_uri: str | None, view_url: str | None, mlflow_lost: bool = False,
                 sweeps_url: str | None = None) -> list[str]:
    """The commands that open this sweep's results: the MLflow UI on its store (the link to the sweep's view, and
    where the store holds other sweeps, the link that shows them side by side), and optuna-dashboard on its study
    storage. Paths are absolute, so they work from any folder; a password in a URL is masked (give it with the
    tool's own environment variable). A tracking store that failed during the sweep is named as such, not offered
    as a place to look."""
    bin_dir = Path(sys.executable).parent
    lines = []
    if mlflow_uri is not None and mlflow_lost:
        lines.append(f"MLflow: {masked(mlflow_uri)} stopped answering during the sweep: its record of the sweep is "
                     "incomplete; the study holds every result (report and export work from it)")
    elif mlflow_uri is not None:
        uri = mlflow_uri
        if uri.startswith(("http://", "https://")):
            lines.append(f"MLflow: {masked(view_url or uri)}")
            if sweeps_url:
                lines.append(f"MLflow, this store's sweeps side by side: {masked(sweeps_url)}")
        else:
            if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
                uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
            lines.append(f"MLflow UI: {bin_dir / 'mlflow'} ui --backend-store-uri {masked(uri)} --port 5000")
            if view_url:
                lines.append(f"  then open {view_url}")
            if sweeps_url:
                lines.append(f"  this store's sweeps side by side: {sweeps_url}")
    spec = storage if not is_journal(storage) else str(Path(storage).resolve())
    dashboard = bin_dir / "optuna-dashboard"
    prefix = str(dashboard) if dashboard.exists() else "pip install optuna-dashboard && optuna-dashboard"
    lines.append(f"Optuna dashboard: {prefix} {masked(spec)}")
    return lines
