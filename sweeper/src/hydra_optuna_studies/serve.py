"""``sweep-report --serve``: the report of any storage over HTTP, rewritten while the study changes.

    sweep-report --serve multirun/quickstart/optuna.journal                 # http://127.0.0.1:8000/
    sweep-report --serve postgresql://user@host/db --study s --port 8001   # password: PGPASSWORD

The report is written into a folder (``--out``, else a temporary one) by :class:`~hydra_optuna_studies.live.
ReportWriter`, which looks at the study every second and draws it again when it changed, throttled as a sweep's live
page is; Python's own ``http.server`` serves that folder, on 127.0.0.1 unless ``--host`` says otherwise. The page
asks the server every few seconds whether a newer report was written and reloads itself only then, so a study still
running (or resumed later) shows each change, and a finished one stays still. Ctrl-C stops the server.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tempfile
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hydra_optuna_studies.contract import masked
from hydra_optuna_studies.live import POLL_S, ReportWriter, Throttle, refresh, running, running_line
from hydra_optuna_studies.report import PAGE, Live, Studies, listed_files

VERSION = "/version"  # the number of the report written last: the page reloads when it changes
POLL_MS = 2000  # how often the page asks
_RELOAD = ("<script>(function(){{var shown='{version}';setInterval(function(){{fetch('" + VERSION + "',"
           "{{cache:'no-store'}}).then(function(r){{return r.text()}}).then(function(v){{if(v!==shown)"
           "location.reload()}}).catch(function(){{}})}},{every})}})();</script>")


class Served:
    """The report folder and the number of the report written last (the served page's version)."""

    def __init__(self, studies: Studies, folder: Path) -> None:
        self.folder = folder
        self.version = 0
        self.writer = ReportWriter(studies, folder, status)

    def write(self) -> float:
        seconds = self.writer.write()
        self.version += 1
        return seconds


def status(summaries: list[dict[str, Any]]) -> Live | None:
    """The line of a served page while any study has trials running or waiting; None once none has."""
    if not any(running(s) for s in summaries):
        return None
    lines = [running_line(s) if len(summaries) == 1 else f"{s['study_name']}: {running_line(s)}" for s in summaries]
    return Live(" ".join(lines) + " This page reloads itself when the study changes.")


class Handler(SimpleHTTPRequestHandler):
    """The report's files (those its page lists); the page with the script that reloads it; ``/version``. Requests
    are not logged."""

    served: Served

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == VERSION:
            self._send(str(self.served.version).encode(), "text/plain")
        elif path in ("/", f"/{PAGE}"):
            version = self.served.version  # read before the page: a newer page only reloads once more
            page = (self.served.folder / PAGE).read_text()
            script = _RELOAD.format(version=version, every=POLL_MS)
            self._send(page.replace("</body>", script + "</body>", 1).encode(), "text/html; charset=utf-8")
        elif path.lstrip("/") in listed_files(self.served.folder):
            super().do_GET()
        else:  # the report's files only: --out may be a folder that holds more (a study's database, say)
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass


def serve(studies: Studies, host: str, port: int, out: Path | None) -> None:
    """Serve the report of ``studies`` (a comparison for several) until Ctrl-C; print its address first."""
    with contextlib.ExitStack() as stack:
        folder = out if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory())) / "report"
        served = Served(studies, folder)
        throttle = Throttle()
        throttle.took(served.write())
        handler = type("ReportHandler", (Handler,), {"served": served})
        try:
            server = ThreadingHTTPServer((host, port), functools.partial(handler, directory=str(folder)))
        except OSError as error:
            print(f"error: --host/--port: cannot listen on {host}:{port} ({error.strerror}); pick another port with "
                  "--port (0: any free one), or a host of this machine with --host", file=sys.stderr)
            raise SystemExit(2) from None
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(served, throttle, stop), name="report-watcher")
        watcher.start()
        names = ", ".join(f"{s.study_name!r} in {masked(storage)}" for storage, s in studies)
        print(f"Serving the report of {names} at http://{host}:{server.server_address[1]}/  (Ctrl-C stops)",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            server.server_close()
            watcher.join()
        print("Stopped.", flush=True)


def _watch(served: Served, throttle: Throttle, stop: threading.Event) -> None:
    """Write the report again whenever the studies changed, as often as the throttle allows."""
    while not stop.wait(POLL_S):
        refresh(served.writer, throttle, served.write)
