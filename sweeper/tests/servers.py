"""Real servers for the tests, started by the project's own scripts: PostgreSQL (``scripts/pg-server``), a
single-node SLURM cluster (``scripts/slurm-cluster``), MLflow tracking servers (``scripts/mlflow-server``). Nothing
is mocked; CI installs what they need (``.ci/system-deps``) and runs every test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_PASSWORD = "supersecret"  # tests grep every file a sweep leaves for it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server whose database needs a password, started by the project's scripts/pg-server."""
    base = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    base.chmod(0o755)  # the server runs as the postgres user, which must reach its folder
    script = str(ROOT / "scripts" / "pg-server")
    start = [script, "start", str(base / "db"), str(free_port()), "sweepuser", PG_PASSWORD, "optuna_db"]
    url = subprocess.run(start, check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    yield url
    subprocess.run([script, "stop", str(base / "db")], capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm() -> Iterator[dict[str, str]]:
    """A real single-node SLURM cluster on this machine (munge, slurmctld, slurmd), started by scripts/slurm-cluster;
    yields the environment its clients need (SLURM_CONF, and PATH with its sacct)."""
    base = Path(tempfile.mkdtemp(prefix="sweep-slurm-"))
    script = str(ROOT / "scripts" / "slurm-cluster")
    subprocess.run([script, "start", str(base)], check=True, capture_output=True, text=True, timeout=180)
    yield {"SLURM_CONF": str(base / "slurm.conf"), "PATH": f"{base / 'bin'}:{os.environ['PATH']}"}
    subprocess.run([script, "stop", str(base)], capture_output=True, timeout=120)
    shutil.rmtree(base, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """A new, empty database on the server of ``url`` (its user may create databases): its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


def mlflow_server(base: Path, backend_url: str) -> tuple[str, Callable[[], None]]:
    """A real MLflow tracking server on a free loopback port, started by scripts/mlflow-server with its PostgreSQL
    backend store (the password through PGPASSWORD, never on a command line): its URL and how to stop it."""
    script = str(ROOT / "scripts" / "mlflow-server")
    user_part, host_part = backend_url.split("://", 1)[1].rsplit("@", 1)
    user, password = user_part.split(":", 1)
    env = {**os.environ, "PGPASSWORD": password}
    start = [script, "start", str(base), str(free_port()), f"postgresql://{user}@{host_part}"]
    url = subprocess.run(start, check=True, capture_output=True, text=True, timeout=180, env=env).stdout.strip()
    return url, lambda: subprocess.run([script, "stop", str(base)], capture_output=True, timeout=60)


class Postgres:
    """A PostgreSQL server of one test's own (scripts/pg-server), to stop and resume mid-sweep as an outage would.
    Its folder is a new one under the system's temporary folder: the server runs as the postgres user, which must
    reach it (pytest's own temporary folders are the test user's alone)."""

    def __init__(self, password: str = PG_PASSWORD, user: str = "sweepuser") -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
        self.base.chmod(0o755)
        self.folder, self.script = self.base / "db", str(ROOT / "scripts" / "pg-server")
        start = [self.script, "start", str(self.folder), str(free_port()), user, password, "optuna_db"]
        self.url = subprocess.run(start, check=True, capture_output=True, text=True, timeout=120).stdout.strip()

    def stop(self) -> None:
        subprocess.run([self.script, "stop", str(self.folder)], check=True, capture_output=True, timeout=60)

    def resume(self) -> None:
        subprocess.run([self.script, "resume", str(self.folder)], check=True, capture_output=True, timeout=60)

    def close(self) -> None:
        """Stop it (if it runs) and remove its data."""
        subprocess.run([self.script, "stop", str(self.folder)], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)
