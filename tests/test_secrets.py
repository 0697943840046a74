"""A password in any URL form the drivers accept appears nowhere a sweep writes: its terminal, every file under its
folders, the study's records and the MLflow store (its rows and its artifacts). Real PostgreSQL servers, whose user's
password holds '/' and '+' as generated passwords do; the whole of each database is dumped and searched."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from sweeper.tests.servers import Postgres, fresh_database
from tests.conftest import SWEEP

pytestmark = pytest.mark.slow
PASSWORD = "Ab/Cd+Ef9"
FORMS = (PASSWORD, quote(PASSWORD, safe=""), PASSWORD.replace("+", " "))  # as given, percent-encoded, as a form
PG_DUMP = next(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))


@pytest.fixture(scope="module")
def server() -> Iterator[Postgres]:
    pg = Postgres(password=PASSWORD)
    yield pg
    pg.close()


def _leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def _dump(server: Postgres, database: str) -> str:
    """Every row of ``database`` (the password comes in through the environment, as libpq reads it)."""
    plain = server.url.replace(f":{PASSWORD}@", "@").rsplit("/", 1)[0] + f"/{database}"
    dumped = subprocess.run([str(PG_DUMP), "--data-only", plain], capture_output=True, text=True, check=True,
                            env={**os.environ, "PGPASSWORD": PASSWORD})
    return dumped.stdout


def _files_holding(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and _leaks(p.read_bytes().decode("latin-1"))]


def _with(url: str, database: str, form: str) -> str:
    """``url`` to ``database`` with the password given in ``form``."""
    base = url.rsplit("/", 1)[0]
    encoded = base.replace(f":{PASSWORD}@", f":{quote(PASSWORD, safe='')}@")
    return {"userinfo": f"{base}/{database}", "encoded": f"{encoded}/{database}",
            "query": f"{base.replace(f':{PASSWORD}@', '@')}/{database}?password={quote(PASSWORD, safe='')}"}[form]


@pytest.mark.parametrize(
    ("storage_form", "tracking"),
    [("userinfo", "config"), ("query", "environment"), ("encoded", "config")],
)
def test_no_password_in_any_form_is_printed_logged_or_stored(server: Postgres, tmp_path: Path, storage_form: str,
                                                             tracking: str) -> None:
    name = f"s_{storage_form}_{tracking}"
    encoded = server.url.replace(f":{PASSWORD}@", f":{quote(PASSWORD, safe='')}@")
    optuna_db = _with(fresh_database(encoded, f"optuna_{name}"), f"optuna_{name}", storage_form)
    mlflow_db = _with(fresh_database(encoded, f"mlflow_{name}"), f"mlflow_{name}", "userinfo")
    args = [SWEEP, "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", f"name={name}",
            f"hydra.sweeper.storage='{optuna_db}'", "optimizer.lr=choice(0.05,0.1)", "train.epochs=1",
            "deepfool.samples=20", "data.train_subset=200"]
    env = {**os.environ}
    if tracking == "config":
        args.append(f"mlflow.tracking_uri='{mlflow_db}'")
        env.pop("MLFLOW_TRACKING_URI", None)
    else:
        env["MLFLOW_TRACKING_URI"] = mlflow_db
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "***" in result.stdout  # the storage is named, masked
    assert not _leaks(result.stdout + result.stderr)
    assert _files_holding(tmp_path) == []
    study_rows, mlflow_rows = _dump(server, f"optuna_{name}"), _dump(server, f"mlflow_{name}")
    assert "COMPLETE" in study_rows and "trial_0" in mlflow_rows  # the dumps hold the sweep, and no password
    assert not _leaks(study_rows) and not _leaks(mlflow_rows)


def test_a_typo_in_a_storage_override_is_one_line_without_the_password(server: Postgres, tmp_path: Path) -> None:
    url = server.url.rsplit("/", 1)[0] + "/optuna_db?sslmode=disable"
    result = subprocess.run([SWEEP, "-m", "hydra/sweeper=optuna", f"hydra.sweeper.storage={url}",
                             "optimizer.lr=choice(0.1,0.2)"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "***" in result.stderr, result.stderr
    assert not _leaks(result.stdout + result.stderr)


def test_an_mlflow_server_url_with_userinfo_is_used_and_masked(server: Postgres, tmp_path: Path) -> None:
    """``MLFLOW_TRACKING_URI=http://user:pw@host:port`` (MLflow's client sends it as basic auth): the sweep's check of
    the server reaches it (the userinfo is not taken for part of the host), and the password appears nowhere."""
    from sweeper.tests.servers import mlflow_server

    encoded = server.url.replace(f":{PASSWORD}@", f":{quote(PASSWORD, safe='')}@")
    backend = fresh_database(encoded, "mlflow_userinfo").replace(quote(PASSWORD, safe=""), PASSWORD)
    url, stop = mlflow_server(tmp_path / "mlflow-server", backend)  # the password reaches it as PGPASSWORD
    (tmp_path / "run").mkdir()
    try:
        authed = url.replace("http://", f"http://sweep:{quote(PASSWORD, safe='')}@")
        env = {**os.environ, "MLFLOW_TRACKING_URI": authed}
        result = subprocess.run([SWEEP, "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "name=userinfo",
                                 "optimizer.lr=choice(0.05,0.1)", "train.epochs=1", "deepfool.samples=20",
                                 "data.train_subset=200"], cwd=tmp_path / "run", env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "does not answer" not in result.stderr and "MLflow logging to " not in result.stdout + result.stderr
        assert "http://sweep:***@" in result.stdout  # named, masked
        output = (result.stdout + result.stderr).splitlines()
        assert not _leaks("\n".join(output)), [line for line in output if _leaks(line)]
        assert _files_holding(tmp_path / "run") == []
        assert "trial_0" in _dump(server, "mlflow_userinfo")
    finally:
        stop()
