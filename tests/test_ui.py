"""The MLflow UI in a real browser, and a tracking server that dies mid-sweep.

The server is started with the project's own `make ui` target on a free loopback port; Chromium is Debian's
(installed by .ci/system-deps), driven by Playwright without downloading a browser.
"""

from __future__ import annotations

import math
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
from hydra_optuna_studies.sweep_run import BEST_COLOUR, OFF_COLOUR
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


def _serve(folder: Path) -> Server:
    """`make ui` against a fresh SQLite store in ``folder`` on a free loopback port."""
    port = free_port()
    process = subprocess.Popen(
        ["make", "-s", "-C", str(ROOT), "ui", f"UI_PORT={port}", f"UI_STORE=sqlite:///{folder}/server.db",
         f"UI_ARTIFACTS={folder}/artifacts"],  # the test's own folder, not the checkout's mlartifacts/
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder,
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
    return Server(url, process)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = _serve(tmp_path)
    yield running
    running.kill()


@dataclass
class Swept:
    """Two sweeps logged to one tracking server, each in its experiment: ``browse`` (one objective, every trial
    complete) and ``failing`` (the lr_bs_grid preset's two objectives, where the smallest learning rate leaves the
    DeepFool margin unmeasurable: those trials fail after their runs finished)."""

    server: Server
    folder: Path
    outputs: dict[str, str]

    def study(self, name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=fresh_storage(
            str(self.folder / "multirun" / name / "optuna.journal")))


SWEEPS = {
    "browse": ["-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid", "optimizer.lr=choice(0.02,0.1,0.5)",
               "train.epochs=2", "deepfool.samples=50", "name=browse"],
    "failing": ["-m", "+experiment=quick/lr_bs_grid", "optimizer.lr=choice(1e-4,0.01,0.5)",
                "train.batch_size=choice(8,128)", "train.epochs=1", "deepfool.samples=40", "deepfool.max_iter=1",
                "deepfool.min_share=0.6", "name=failing"],
}


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    folder = tmp_path_factory.mktemp("ui")
    running = _serve(folder)
    outputs = {}
    try:
        for name, args in SWEEPS.items():
            result = run_cli(*args, cwd=folder, env={"MLFLOW_TRACKING_URI": running.url})
            assert result.returncode == 0, result.stderr
            outputs[name] = result.stdout
        yield Swept(running, folder, outputs)
    finally:
        running.kill()


def _browser(playwright):  # noqa: ANN001, ANN202 - Playwright's own types
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-quic"],
    )


def _open_charts(page, points: int) -> None:  # noqa: ANN001 - a Playwright page
    """Switch the view to its charts page; wait until ``points`` markers are drawn."""
    page.locator("label:has(input[value=CHART])").click()
    page.get_by_text("Results by parameter").first.wait_for(timeout=30000)
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length >= {points}",
                           timeout=30000)


def test_a_sweeps_link_opens_its_trials_best_first_with_no_group_row_and_its_charts(swept: Swept) -> None:
    """The link the sweep prints opens its runs table: its own runs only, flat, sorted by the objective (best first,
    the best marked and red), the sweep's row after the trials naming its best trial (no group row showing each
    column's max as if it were a configuration), each header whole; and its charts page opens on the objectives and
    the margin against each swept parameter, then the learning curves."""
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    client = MlflowClient(swept.server.url)
    experiment = client.get_experiment_by_name("browse")
    (url,) = re.findall(r"^MLflow: (\S+)", swept.outputs["browse"], re.MULTILINE)  # the link the sweep prints
    assert url.startswith(f"{swept.server.url}/#/experiments/{experiment.experiment_id}/runs?")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 2400, "height": 1000})  # every column drawn (the grid draws
        page.goto(url, wait_until="domcontentloaded")  # only those in sight), beside MLflow's assistant panel
        page.get_by_text("trial_2").first.wait_for(timeout=60000)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-sweep.png"), full_page=True)
        headers = page.inner_text("[role=grid] .ag-header")
        cut = page.evaluate("""() => [...document.querySelectorAll('[role=grid] .ag-header-cell-text')]
            .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")
        rows = _grid_rows(page, [STATE, BEST, LR, VAL_ACC])
        dots = _colours(page)
        _open_charts(page, 9)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-charts.png"), full_page=True)
        axes = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(
            p => [...p.querySelectorAll('.xtitle, .ytitle')].map(t => t.textContent))""")
        sections = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[aria-expanded]')]
            .map(e => [e.innerText.split(/\\s*\\(/)[0].trim(), e.getAttribute('aria-expanded')]))""")
        report = _open_offline(browser, swept.folder / "multirun" / "browse" / "report" / "report.html")
        browser.close()

    for column in ("optimizer.lr", "final_val_acc", "final_test_acc", "final_deepfool_margin",
                   "final_deepfool_success_rate", "optuna.state", "sweep.best"):
        assert column in headers, column
    assert cut == []  # no header cut short
    study = swept.study("browse")
    ranked = sorted(study.trials, key=lambda t: -t.value)
    names = {t.number: f"trial_{t.number} lr={t.params['optimizer.lr']:g}" for t in study.trials}
    assert [row[RUN_NAME] for row in rows] == [*(names[t.number] for t in ranked), "browse"]  # no group row
    for row, trial in zip(rows, ranked, strict=False):  # values as the study has them, in at most 6 digits
        assert float(row[VAL_ACC]) == pytest.approx(trial.value, abs=5e-6) and len(row[VAL_ACC]) <= 8
        assert float(row[LR]) == trial.params["optimizer.lr"] and row[STATE] == trial.state.name == "COMPLETE"
    assert [row[BEST] for row in rows] == ["best", "-", "-", f"trial {study.best_trial.number}"]  # the table's "*"
    assert rows[-1][VAL_ACC] == "-"  # the sweep's own row poses as no trial: its values are best.* metrics
    assert dots[names[study.best_trial.number]] == BEST_COLOUR and len({dots[n] for n in names.values()}) == 3
    assert sections["Results by parameter"] == "true" and sections["Model metrics"] == "false"
    assert {("complete.val_acc", "optimizer.lr"), ("complete.deepfool_margin", "optimizer.lr")} <= {
        tuple(sorted(titles)) for titles in axes}  # 0.02 to 0.5: under two decades, a linear axis
    (parent,) = MlflowClient(swept.server.url).search_runs([experiment.experiment_id], "tags.`sweep.role` = 'sweep'")
    description = parent.data.tags["mlflow.note.content"]
    best = study.best_trial
    assert description.startswith(f"Best: trial {best.number} (val_acc {best.value:.4f}; optimizer.lr=")
    assert parent.data.metrics["best.val_acc"] == pytest.approx(best.value, abs=5e-6)
    assert report["requests"] == [] and report["figures"] == report["plots"] >= 4 and report["broken_images"] == 0


def test_a_trial_failed_for_an_unmeasurable_margin_is_failed_in_the_mlflow_view_and_not_charted(swept: Swept) -> None:
    """Its run closed FINISHED before the sweeper failed the trial: the table shows it failed (red status icon,
    ``FAIL``, grey), and no chart plots it; the charts draw lr on a log10 axis."""
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    study = swept.study("failing")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and complete  # lr 1e-4: too few samples crossed in one DeepFool step; 0.01 and 0.5: enough
    (url,) = re.findall(r"^MLflow: (\S+)", swept.outputs["failing"], re.MULTILINE)
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("trial_5").first.wait_for(timeout=60000)
        rows = _grid_rows(page, [STATE])
        icons = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[role=row][row-index]')]
            .filter(r => r.querySelector('[col-id=runDateAndNestInfo] .anticon'))
            .map(r => [r.querySelector('[col-id="attributes.`Run Name`"] a')?.textContent,
                       getComputedStyle(r.querySelector('[col-id=runDateAndNestInfo] .anticon')).color]))""")
        dots = _colours(page)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-failed.png"), full_page=True)
        _open_charts(page, 4 * len(complete))
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-failed-charts.png"), full_page=True)
        plotted = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(p => p.data && p.data[0].type === 'scatter' && p.data[0].mode === 'markers')
            .map(p => ({x: p.layout.xaxis.title?.text ?? p.layout.xaxis.title,
                        y: p.layout.yaxis.title?.text ?? p.layout.yaxis.title,
                        points: p.data[0].x.map((x, i) => [Number(x), p.data[0].y[i]])}))""")
        browser.close()

    client = MlflowClient(swept.server.url)
    children = client.search_runs([client.get_experiment_by_name("failing").experiment_id],
                                  "tags.`optuna.trial_number` != ''")
    assert {int(r.data.tags["optuna.trial_number"]): (r.info.status, r.data.tags["optuna.state"]) for r in children} \
        == {t.number: ({"FAIL": "FAILED", "COMPLETE": "FINISHED"}[t.state.name], t.state.name) for t in study.trials}
    listed = [row[RUN_NAME].split()[0] for row in rows if row[RUN_NAME].startswith("trial_")]
    ranked = sorted(complete, key=lambda t: -t.values[0])  # complete trials best first, failed ones after
    assert listed[: len(complete)] == [f"trial_{t.number}" for t in ranked]
    states = {row[RUN_NAME].split()[0]: row[STATE] for row in rows if row[RUN_NAME].startswith("trial_")}
    assert states == {f"trial_{t.number}": t.state.name for t in study.trials}
    for trial in study.trials:
        name = next(n for n in icons if n.split()[0] == f"trial_{trial.number}")
        red, green = (int(c) for c in re.findall(r"\d+", icons[name])[:2])
        assert (red > green) == (trial.state == TrialState.FAIL), (name, icons[name])  # MLflow's FAILED icon
        assert (dots[name] == OFF_COLOUR) == (trial.state == TrialState.FAIL)
    lr_charts = [c for c in plotted if c["x"] == "log10 optimizer.lr"]
    assert len(lr_charts) == 2  # test accuracy and margin against lr, on a log10 axis (1e-4 to 0.5)
    for chart in lr_charts:  # the complete trials' values, no failed trial's test accuracy among them
        metric = chart["y"].removeprefix("complete.")
        want = sorted((math.log10(t.params["optimizer.lr"]), t.user_attrs["metrics"][metric]) for t in complete)
        got = sorted(chart["points"])
        assert len(got) == len(want)
        for (x, y), (wx, wy) in zip(got, want, strict=True):
            assert x == pytest.approx(wx, abs=1e-5) and y == pytest.approx(wy, rel=1e-5)


def test_the_sweeps_of_two_experiments_compare_in_one_view(swept: Swept) -> None:
    """The second sweep's closing lines link to every sweep of the store side by side: both sweeps' own runs in
    one MLflow view, each naming its best trial(s), with the result as its description."""
    from playwright.sync_api import sync_playwright

    (url,) = re.findall(r"^MLflow, this store's sweeps side by side: (\S+)", swept.outputs["failing"], re.MULTILINE)
    assert "/#/compare-experiments/" in url
    assert "side by side" not in swept.outputs["browse"]  # the first sweep had none to compare with
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("failing", exact=True).first.wait_for(timeout=60000)
        page.get_by_text("browse", exact=True).first.wait_for(timeout=30000)
        rows = _grid_rows(page, [BEST, "attributes.`Description`"])
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-sweeps.png"), full_page=True)
        browser.close()

    assert [row[RUN_NAME] for row in rows] == ["failing", "browse"]  # newest first; no trial's run
    front = sorted(t.number for t in swept.study("failing").best_trials)
    best = swept.study("browse").best_trial.number
    assert [row[BEST] for row in rows] == [f"trial{'s' if len(front) > 1 else ''} {', '.join(map(str, front))}",
                                           f"trial {best}"]
    assert rows[0]["attributes.`Description`"].startswith("Pareto front of ")
    assert rows[1]["attributes.`Description`"].startswith(f"Best: trial {best} (val_acc ")


def test_a_live_page_reloads_while_it_is_rewritten_and_stops_once_nobody_rewrites_it(tmp_path: Path) -> None:
    """The page of a running sweep, opened from its file, reloads itself; one nobody rewrote for STALE_S (its sweep
    and writer killed outright, by the OOM killer say) stops reloading and says why, rather than reload for ever."""
    from hydra_optuna_studies.report import PAGE, STALE_S, Live, write_placeholder
    from playwright.sync_api import sync_playwright

    live = Live("Running: 1 of 6 trials finished.", refresh_s=1)
    write_placeholder(tmp_path / "fresh", "Study s", live)
    write_placeholder(tmp_path / "old", "Study s", live)
    old = tmp_path / "old" / PAGE
    written = re.search(r"var written=(\d+)", old.read_text()).group(1)
    old.write_text(old.read_text().replace(f"written={written}", f"written={int(written) - (STALE_S + 60) * 1000}"))
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        page = browser.new_page()
        page.goto((tmp_path / "fresh" / PAGE).as_uri())
        with page.expect_event("load", timeout=30000):  # it reloads itself
            pass
        page.goto(old.as_uri())
        said = page.locator("p.live").text_content()
        browser.close()
    assert said.startswith("Running: 1 of 6 trials finished. This page was last written 3 min ago and no longer "
                           "reloads itself")


def _colours(page) -> dict[str, str]:  # noqa: ANN001 - a Playwright page
    """Each run's colour in the table (its dot), by run name."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[col-id="attributes.`Run Name`"]')]
        .map(c => [c.querySelector('a'), c.querySelector('[data-testid=experiment-view-table-run-color] span')])
        .filter(([name, dot]) => name && dot)
        .map(([name, dot]) => [name.textContent, dot.textContent.toUpperCase()]))""")


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
