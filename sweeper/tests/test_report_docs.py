"""The report page's examples (docs/sweeper/report.md) run as written, on studies at the paths they name."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest

from sweeper.tests.servers import ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _examples() -> list[list[str]]:
    page = (ROOT / "docs" / "sweeper" / "report.md").read_text()
    block = page.split("```\n", 2)[1]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.startswith("sweep-report")]


def _study(storage: str | optuna.storages.BaseStorage, name: str) -> None:
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=4)


def test_the_examples_of_the_report_page_run(tmp_path: Path) -> None:
    for journal in ("multirun/my_app/optuna.journal", "runs/a/optuna.journal", "runs/b/optuna.journal"):
        (tmp_path / journal).parent.mkdir(parents=True)
        backend = optuna.storages.journal.JournalFileBackend(str(tmp_path / journal))
        _study(optuna.storages.JournalStorage(backend), journal.split("/")[1])
    for name in ("a", "b"):
        _study(f"sqlite:///{tmp_path}/studies.db", name)
    examples = _examples()
    assert len(examples) == 4 and examples[-1][1] == "--serve"
    for command in examples[:-1]:
        done = subprocess.run([BIN / command[0], *command[1:]], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (command, done.stderr)
        assert (tmp_path / command[command.index("--out") + 1] / "report.html").is_file()
    serve = examples[-1]
    server = subprocess.Popen([BIN / serve[0], *serve[1:], "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    url = server.stdout.readline().split(" at ", 1)[1].split()[0]
    with urllib.request.urlopen(url, timeout=30) as response:
        assert "Study my_app" in response.read().decode()
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=60) == 0
    server.stdout.close()
    server.stderr.close()
