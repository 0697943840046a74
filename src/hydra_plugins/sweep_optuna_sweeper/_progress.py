"""How far a sweep has come: a live bar on a terminal, one log line per batch of trials anywhere else.

The bar (trials done / total, the best so far, time left) is drawn on stderr only when stderr is a terminal, so logs
piped to a file or a CI console stay plain lines. While it is drawn, the log handlers that write to the terminal
are pointed at rich's proxies for stdout and stderr, which print each line above the bar instead of through it.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)


class SweepProgress:
    """Use as a context around the sweep's loop; call :meth:`update` after each batch of trials."""

    def __init__(self, todo: int) -> None:
        self.todo = todo
        self._started = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None
        self._pointed: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []

    def __enter__(self) -> SweepProgress:
        if sys.stderr.isatty() and self.todo > 0:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), TextColumn("{task.fields[best]}"))
            out, err = sys.stdout, sys.stderr
            self._bar = Progress(*columns, console=Console(file=err), transient=True)
            self._bar.start()  # from here sys.stdout and sys.stderr are rich's proxies
            self._task = self._bar.add_task("trials", total=self.todo, best="")
            self._point_handlers(out, sys.stdout)
            self._point_handlers(err, sys.stderr)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for handler, stream in self._pointed:
            handler.setStream(stream)
        if self._bar is not None:
            self._bar.stop()

    def update(self, told: int, best: str) -> None:
        """``told`` trials finished of :attr:`todo`; ``best`` says what the best so far is."""
        if self._bar is not None:
            self._bar.update(self._task, completed=told, best=best)
            return
        elapsed = time.perf_counter() - self._started
        eta = elapsed / told * (self.todo - told) if told else 0.0
        log.info("[%d/%d] %s, ETA %s", told, self.todo, best, time.strftime("%H:%M:%S", time.gmtime(eta)))

    def _point_handlers(self, real: IO[str], proxy: IO[str]) -> None:
        """Send the log lines that went to ``real`` through ``proxy``; remember what to restore."""
        loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
        for logger in loggers:
            for handler in getattr(logger, "handlers", []):  # a placeholder in loggerDict has none
                if type(handler) is logging.StreamHandler and handler.stream is real:
                    self._pointed.append((handler, real))
                    handler.setStream(proxy)
