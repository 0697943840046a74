"""The report while a sweep runs: written whole or not at all, live as trials finish, served over HTTP.

The sweeps are real ones of a foreign app (``apps/gated``: trial n ends once the test writes a number above n into a
file), so each test holds its sweep at a known point by a condition, never a sleep; the writers are real
``sweep-report`` processes; the server is fetched over real HTTP.
"""

from __future__ import annotations

import multiprocessing
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.report import MARKDOWN, PAGE, Rendered, folder_lock, listed_files, publish, staging

from sweeper.tests.helpers import APPS, fresh_storage, wait_until
from sweeper.tests.servers import PG_PASSWORD, fresh_database

GATED = str(APPS / "gated" / "gated.py")
TOOL = str(Path(sys.executable).parent / "sweep-report")
PLOTLY_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STARTED: list[subprocess.Popen] = []  # the sweeps and servers a test started: none outlives its test


@pytest.fixture(autouse=True)
def _reaped() -> Iterator[None]:
    """Kill what a test started and left running (it failed before its end): a gated sweep would wait for ever."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def comparable(page: str) -> str:
    """A report page as two writes of the same study must match: each plotly figure's element id (a random UUID,
    drawn anew by every write) replaced by one placeholder. Nothing else in a page varies: no timestamp, and the
    trials' durations are the study's."""
    return PLOTLY_ID.sub("<id>", page)


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.Popen, Path]:
    """A real sweep of the gated app over 6 points, held before its first trial ends."""
    release = tmp_path / "release"
    release.write_text("0")
    sweep = subprocess.Popen([sys.executable, "-W", "error", GATED, "-m", f"hydra.sweep.dir={tmp_path}/sweep",
                              "point=range(0,6)", f"release={release}", *overrides], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(sweep)
    return sweep, release


def _complete_rows(page: str) -> int:
    return page.count("<td>COMPLETE</td>")


def _storage_line(markdown: str) -> str:
    """The storage as the report names it (and as the sweep was given it)."""
    return re.search(r"Storage: `([^`]+)`", markdown).group(1)


# --- written whole -------------------------------------------------------------------------------------------------
def test_a_report_goes_into_place_whole_and_takes_away_the_files_it_no_longer_writes(tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "mine.txt").write_text("the user's own file")
    for names in (["pareto-1.yaml", "pareto-2.yaml", "pareto-3.yaml"], ["pareto-1.yaml", "pareto-2.yaml"]):
        with staging(out) as folder:
            for name in names:
                (folder / name).write_text(name)
            publish(Rendered("Study s", "# Study s\n", "<h1>Study s</h1>", names), folder, out, None)
        assert not list(tmp_path.glob(".report.*"))  # the private folder is gone
    assert sorted(p.name for p in out.iterdir()) == sorted(["mine.txt", "pareto-1.yaml", "pareto-2.yaml", MARKDOWN,
                                                           PAGE])
    assert listed_files(out) == ["pareto-1.yaml", "pareto-2.yaml", MARKDOWN, PAGE]


def _publish(out: Path, name: str, names: list[str], times: int) -> None:
    """Publish a report of study ``name`` with the files ``names`` (each holding ``name``) ``times`` times."""
    body = f"<h1>Study {name}</h1>" + "<p>a figure</p>" * 50_000  # about the size of a page with plotly inlined
    for _ in range(times):
        with staging(out) as folder:
            for file in names:
                (folder / file).write_text(name)
            publish(Rendered(f"Study {name}", f"# Study `{name}`\n", body, names), folder, out, None)


def test_publishers_at_the_same_moment_leave_one_whole_report_at_every_instant(tmp_path: Path) -> None:
    """Four processes publish two different reports into one folder, 40 times each: a reader without the lock (a
    browser) only ever reads a whole page, and one with it finds the page, report.md and every file of one report."""
    out = tmp_path / "report"
    out.mkdir()
    fork = multiprocessing.get_context("fork")
    reports = {"a": ["a-1.yaml", "a-2.yaml"], "b": ["b-1.yaml"]}
    writers = [fork.Process(target=_publish, args=(out, name, names, 40)) for name, names in [*reports.items()] * 2]
    for writer in writers:
        writer.start()
    problems, checks = [], 0
    while any(writer.is_alive() for writer in writers):
        if (out / PAGE).exists() and not _text(out / PAGE).endswith("</body></html>\n"):
            problems.append("a cut page")
        with folder_lock(out):
            page = _text(out / PAGE)
            if not page:
                continue
            name = re.search(r"<title>Study (\w+)</title>", page).group(1)
            present = {p.name for p in out.iterdir()}
            if present != {*reports[name], MARKDOWN, PAGE} or set(listed_files(out)) != present:
                problems.append(f"{name}'s page with files {sorted(present)}")
            if not _text(out / MARKDOWN).startswith(f"# Study `{name}`") or any(
                    _text(out / file) != name for file in reports[name]):
                problems.append(f"{name}'s page with another report's files")
            checks += 1
    assert [writer.exitcode for writer in writers] == [0] * len(writers)
    assert not problems, problems[:5]
    assert checks > 10 and not list(tmp_path.glob(".report.*"))


def _study(journal: Path, name: str, n: int) -> str:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2 + t.suggest_int("y", 0, 3), n_trials=n)
    return str(journal)


@pytest.mark.slow
def test_writers_at_the_same_moment_never_show_half_a_page_nor_a_mix_of_two_reports(tmp_path: Path) -> None:
    """Six ``sweep-report`` processes write two different studies' reports into one folder at once (as several
    workers finishing one sweep do) while a reader reloads the page: every read is a whole page, and the folder ends
    as one report, whoever wrote last."""
    small, large = _study(tmp_path / "a.journal", "small", 3), _study(tmp_path / "b.journal", "large", 12)
    out = tmp_path / "report"
    reads: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            if (out / PAGE).exists():  # from then on, every read must be a whole page: never empty, never cut
                reads.append(_text(out / PAGE))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [subprocess.Popen([TOOL, "--storage", journal, "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for journal in [small, large] * 3]
    results = [w.communicate(timeout=300) + (w.returncode,) for w in writers]
    done.set()
    reader.join()
    assert all(code == 0 for _, _, code in results), results
    assert reads and all(text.endswith("</body></html>\n") for text in reads)
    page, markdown = (out / PAGE).read_text(), (out / MARKDOWN).read_text()
    name = re.search(r"<title>Study (\w+)</title>", page).group(1)
    assert markdown.startswith(f"# Study `{name}`")
    assert sorted(listed_files(out)) == sorted(p.name for p in out.iterdir())  # nothing stale, nothing missing
    assert (out / "importances_objective_0.png").exists() == (name == "large")  # 3 trials draw no importances
    assert not list(tmp_path.glob(".report.*"))


# --- live ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_page_shows_the_sweep_as_it_runs_and_ends_as_sweep_reports_page(tmp_path: Path) -> None:
    sweep, release = _sweep(tmp_path)
    page = tmp_path / "sweep" / "report" / PAGE
    wait_until(lambda: "Starting: 0 of 6 trials finished" in _text(page), 180)  # there at once, before any trial ends
    release.write_text("2")
    wait_until(lambda: "Running: 2 of 6 trials finished, 1 running; best so far objective_0" in _text(page), 180)
    live = page.read_text()
    assert _complete_rows(live) == 2 and "location.reload()},5000)" in live
    release.write_text("6")
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err
    said = (out + err).splitlines()
    first = next(i for i, line in enumerate(said) if line.endswith(f"Report: {page} (rewritten as trials finish)"))
    assert first < next(i for i, line in enumerate(said) if "Trial 0:" in line)  # named before any trial, ...
    assert f"Report: {page}" in out.splitlines()[-5:]  # ... and among the closing lines
    final, markdown = page.read_text(), (page.parent / MARKDOWN).read_text()
    assert _complete_rows(final) == 6 and "Running:" not in final + markdown and "location.reload" not in final
    again = tmp_path / "again"
    tool = subprocess.run([TOOL, "--storage", _storage_line(markdown), "--out", str(again)], capture_output=True,
                          text=True, timeout=300)
    assert tool.returncode == 0, tool.stderr
    assert comparable(final) == comparable((again / PAGE).read_text())
    assert markdown == (again / MARKDOWN).read_text()
    assert sorted(p.name for p in page.parent.iterdir()) == sorted(p.name for p in again.iterdir())


@pytest.mark.slow
def test_a_sweep_stopped_early_leaves_a_page_that_no_longer_reloads(tmp_path: Path) -> None:
    sweep, release = _sweep(tmp_path)
    page = tmp_path / "sweep" / "report" / PAGE
    release.write_text("1")
    wait_until(lambda: "Running: 1 of 6 trials finished" in _text(page), 180)
    sweep.send_signal(signal.SIGTERM)
    sweep.communicate(timeout=120)
    assert sweep.returncode != 0
    stopped = page.read_text()
    assert "location.reload" not in stopped and "Running:" not in stopped
    assert _complete_rows(stopped) == 1 and stopped.count("<td>FAIL</td>") == 1  # trial 1: terminated


# --- served -------------------------------------------------------------------------------------------------------
def _serve(*args: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([TOOL, "--serve", *args, "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    STARTED.append(server)
    line = server.stdout.readline()
    found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    assert found, line + server.stderr.read()
    return server, line


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def _stop(server: subprocess.Popen) -> tuple[str, str]:
    server.send_signal(signal.SIGINT)
    out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    return out, err


@pytest.mark.slow
def test_serve_shows_a_running_sweep_and_follows_it_to_its_end(tmp_path: Path) -> None:
    sweep, release = _sweep(tmp_path)
    journal = tmp_path / "sweep" / "optuna.journal"
    wait_until(lambda: journal.is_file() and fresh_storage(str(journal)).get_all_studies(), 180)
    release.write_text("1")
    wait_until(lambda: any(t.state.is_finished() for t in optuna.load_study(
        study_name="gated", storage=fresh_storage(str(journal))).trials), 180)
    server, line = _serve(str(journal), "--out", str(tmp_path / "sweep"))  # a folder with more than the report
    url = re.search(r"(http://\S+)", line).group(1)
    first = _get(url)
    assert "Running: 1 trial finished, 1 running" in first and _complete_rows(first) == 1
    version = _get(url + "version")
    assert f"shown='{version}'" in first  # the page reloads when the server wrote a newer report
    release.write_text("6")
    assert sweep.wait(timeout=300) == 0
    wait_until(lambda: _complete_rows(_get(url)) == 6, 180)
    last = _get(url)
    assert "Running:" not in last and int(_get(url + "version")) > int(version)
    assert _get(url + "best.yaml").startswith("#")  # the report's other files are served beside it, ...
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(url + "optuna.journal")  # ... the folder's others are not
    out, _ = _stop(server)
    assert out.rstrip().endswith("Stopped.")
    sweep.stdout.close()
    sweep.stderr.close()


@pytest.mark.slow
def test_serve_never_shows_the_storage_password(tmp_path: Path, postgres: str) -> None:
    url = fresh_database(postgres, "served")
    study = optuna.create_study(study_name="served", storage=url)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    server, line = _serve(url, "--study", "served")
    page = _get(re.search(r"(http://\S+)", line).group(1))
    out, err = _stop(server)
    assert "served" in line and "sweepuser:***@" in line
    assert PG_PASSWORD not in line + out + err + page and "sweepuser:***@" in page
