"""The MLflow UI in a real browser, and a tracking server that dies mid-sweep.

The server is started with the project's own `make ui` target on a free loopback port; Chromium is Debian's
(installed by .ci/system-deps), driven by Playwright without downloading a browser.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import ROOT, free_port, fresh_storage, run_cli

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
RUN_NAME, STATE, BEST = "attributes.`Run Name`", "tags.`optuna.state`", "tags.`sweep.best`"  # MLflow's column ids
LR, VAL_ACC = "params.`optimizer.lr`", "metrics.`final_val_acc`"


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """`make ui` against a fresh SQLite store on a free loopback port."""
    port = free_port()
    process = subprocess.Popen(
        ["make", "-s", "-C", str(ROOT), "ui", f"UI_PORT={port}", f"UI_STORE=sqlite:///{tmp_path}/server.db"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"mlflow server did not start: {process.stdout.read().decode()[-2000:]}")
    running = Server(url, process)
    yield running
    running.kill()


def test_sweep_appears_in_the_mlflow_ui(tmp_path: Path, server: Server) -> None:
    """The link the sweep prints opens its runs table: the trials under the sweep's row without a click, sorted by
    the objective, with the swept values, objective and margin columns readable; and its charts page opens on the
    objectives and the margin against each swept parameter."""
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    result = run_cli("-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1,0.5)",
                     "train.epochs=2", "deepfool.samples=50", "name=browse", cwd=tmp_path,
                     env={"MLFLOW_TRACKING_URI": server.url})
    assert result.returncode == 0, result.stderr
    experiment = MlflowClient(server.url).get_experiment_by_name("browse")
    (url,) = re.findall(r"^MLflow: (\S+)", result.stdout, re.MULTILINE)  # the link the sweep prints
    assert url.startswith(f"{server.url}/#/experiments/{experiment.experiment_id}/runs?")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("trial_2").first.wait_for(timeout=60000)  # no click: the sweep's group opens expanded
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-sweep.png"), full_page=True)
        headers = page.inner_text("[role=grid] .ag-header")
        rows = _grid_rows(page, [STATE, BEST, LR, VAL_ACC])
        page.locator("label:has(input[value=CHART])").click()  # the charts page of the same view
        page.get_by_text("Objectives vs swept parameters").first.wait_for(timeout=30000)
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length >= 9",
                               timeout=30000)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-charts.png"), full_page=True)
        axes = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(
            p => [...p.querySelectorAll('.xtitle, .ytitle')].map(t => t.textContent))""")
        sections = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[aria-expanded]')]
            .map(e => [e.innerText.split(/\\s*\\(/)[0].trim(), e.getAttribute('aria-expanded')]))""")
        report = _open_offline(browser, tmp_path / "multirun" / "browse" / "report" / "report.html")
        browser.close()

    for column in ("optimizer.lr", "final_val_acc", "final_test_acc", "final_deepfool_margin",
                   "final_deepfool_success_rate", "optuna.state", "sweep.best"):
        assert column in headers, column
    study = optuna.load_study(study_name="browse", storage=fresh_storage(
        str(tmp_path / "multirun" / "browse" / "optuna.journal")))
    trials = {f"trial_{t.number}": t for t in study.trials}
    shown = [row for row in rows if row[RUN_NAME] in trials]
    assert [row[RUN_NAME] for row in shown] == [f"trial_{t.number}" for t in
                                                sorted(study.trials, key=lambda t: -t.value)]  # best first
    for row in shown:  # values as the study has them, in at most 6 significant digits
        trial = trials[row[RUN_NAME]]
        assert float(row[VAL_ACC]) == pytest.approx(trial.value, abs=5e-6) and len(row[VAL_ACC]) <= 8
        assert float(row[LR]) == trial.params["optimizer.lr"] and row[STATE] == trial.state.name == "COMPLETE"
    assert [row[BEST] for row in shown] == ["best", "-", "-"]  # the terminal table's "*"
    names = [row[RUN_NAME] for row in rows]  # the sweep's own row sits in the group, beside the best trial
    assert abs(names.index("browse") - names.index(f"trial_{study.best_trial.number}")) == 1
    group = rows[0][VAL_ACC]  # the group's row: the best value of the column
    assert group.endswith("(max)") and float(group.split()[0]) == pytest.approx(study.best_value, abs=5e-6)
    assert sections["Objectives vs swept parameters"] == "true" and sections["Model metrics"] == "false"
    assert {("final_val_acc", "optimizer.lr"), ("final_deepfool_margin", "optimizer.lr")} <= {
        tuple(sorted(titles)) for titles in axes}
    (parent,) = MlflowClient(server.url).search_runs([experiment.experiment_id], "tags.`sweep.role` = 'sweep'")
    description = parent.data.tags["mlflow.note.content"]
    best = study.best_trial
    assert description.startswith(f"Best: trial {best.number} (val_acc {best.value:.4f}; optimizer.lr=")
    assert report["requests"] == [] and report["figures"] == report["plots"] >= 4 and report["broken_images"] == 0


def _grid_rows(page, columns: list[str]) -> list[dict[str, str]]:
    """The runs table's rows in their on-screen order: the run's name and the text in each of ``columns`` (MLflow's
    column ids, as ``params.`optimizer.lr```)."""
    return page.evaluate("""([columns, name]) => {
        const cell = (index, id) => document.querySelector(`[row-index="${index}"] [col-id="${CSS.escape(id)}"]`);
        const indexes = [...new Set([...document.querySelectorAll('[role=row][row-index]')]
                                    .map(row => Number(row.getAttribute('row-index'))))].sort((a, b) => a - b);
        const text = (i, id) => cell(i, id)?.innerText.trim().split('\\n').pop();  // a name follows its colour
        return indexes.map(i => Object.fromEntries([name, ...columns].map(id => [id, text(i, id)])));
    }""", [columns, RUN_NAME])


def _open_offline(browser, page_path: Path) -> dict:
    """Open the report page with every network request refused and recorded; count its figures as drawn."""
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 1000})

    def refuse(route) -> None:
        if not route.request.url.startswith(("file://", "data:")):
            requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", refuse)
    page.goto(page_path.as_uri(), wait_until="load")
    page.wait_for_function("document.querySelectorAll('.figure .js-plotly-plot .main-svg').length > 0", timeout=30000)
    found = page.evaluate("""() => ({
        figures: document.querySelectorAll('.figure[data-title]').length,
        plots: new Set([...document.querySelectorAll('.figure[data-title] .js-plotly-plot')]
                       .filter(p => p.querySelector('.main-svg'))).size,
        broken_images: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
    })""")
    page.screenshot(path=str(ARTIFACTS / "report-html.png"), full_page=True)
    page.close()
    return {"requests": requests, **found}


def test_tracking_server_dying_mid_sweep_loses_no_optuna_result(tmp_path: Path, server: Server) -> None:
    import sys

    grid = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.01,0.02,0.05,0.1)",
            "train.epochs=15", "deepfool.enabled=false", "name=dies"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.url}
    process = subprocess.Popen([str(Path(sys.executable).parent / "sweep"), *grid], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = tmp_path / "multirun" / "dies" / "optuna.journal"
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists():
            study = optuna.load_study(study_name="dies", storage=fresh_storage(str(journal)))
            if any(t.state == TrialState.COMPLETE for t in study.trials):
                break
        time.sleep(0.2)
    server.kill()  # the tracking server goes away mid-sweep
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    study = optuna.load_study(study_name="dies", storage=fresh_storage(str(journal)))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert output.count("MLflow logging to ") == 1  # said once, in one line
    assert "stopped answering during the sweep" in output  # the closing lines point at no dead server
