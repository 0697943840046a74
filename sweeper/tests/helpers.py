"""Helpers of the sweeper's tests: foreign Hydra apps (``apps/``) run as users run them, studies read from disk."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

APPS = Path(__file__).parent / "apps"


def fresh_storage(spec: str):  # noqa: ANN201 - an Optuna storage; optuna is imported lazily
    """A new reader of an Optuna storage (not the process's shared one): what is on disk now."""
    import optuna

    if spec.endswith(".journal"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(spec))
    return optuna.storages.RDBStorage(spec)


def run_app(app: str, *args: str, cwd: Path, timeout: int = 300, python: str = sys.executable,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -W error apps/<app>/<app>.py [--flags] -m hydra.sweep.dir=<cwd>/sweep ...`` from ``cwd``, as
    hydra-optuna-sweeper's own harness runs its examples (every warning an error)."""
    flags = [a for a in args if a.startswith("--")]
    overrides = [a for a in args if not a.startswith("--")]
    command = [python, "-W", "error", str(APPS / app / f"{app}.py"), *flags, "-m", f"hydra.sweep.dir={cwd}/sweep",
               *overrides]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def wait_until(condition: Callable[[], object], seconds: float = 120) -> None:
    """Poll ``condition`` until it holds: tests wait for what happens, not for a time that a loaded machine misses."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {getattr(condition, '__name__', 'a condition')}")
