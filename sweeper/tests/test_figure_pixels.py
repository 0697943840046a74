"""The figures read right where a reader reads them: rendered pixels, not figure objects.

The interactive figures are drawn by plotly.js in headless Chromium (Debian's, driven by Playwright without
downloading a browser) at 1600x1000; the heatmaps are the PNGs the report embeds, read with numpy. Screenshots and
PNGs are kept in ``test-artifacts/figures/`` at the repository root (ignored by git).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from hydra_optuna_studies.figures import parallel, study_plots
from hydra_optuna_studies.heatmaps import Grid, heatmap_figure
from hydra_optuna_studies.pareto import pareto
from optuna.distributions import CategoricalDistribution

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "figures"
CHROMIUM = "/usr/bin/chromium"
RED, GREY = (214, 39, 40), (158, 158, 158)  # pareto.MEMBER and pareto.OTHER as RGB


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()


def _show(browser: Any, figure: Any, name: str, tmp_path: Path) -> tuple[Any, Any]:
    """``figure`` on its own page at 1600x1000, as the report shows it (520 px high); the page and its screenshot
    (RGB array), saved as ``test-artifacts/figures/<name>.png``."""
    from PIL import Image

    figure.update_layout(height=520)
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(figure.to_html(include_plotlyjs="inline", full_html=True))
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(page_file.as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30000)
    page.wait_for_function("document.querySelector('.js-plotly-plot')._fullLayout !== undefined")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    return page, np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(int)


def _plot_area(page: Any) -> tuple[float, float, float, float]:
    """The first subplot's plotting area on the page: x, y, width, height in CSS pixels."""
    box = page.evaluate("() => { const r = document.querySelector('.draglayer .xy .nsewdrag')"
                        ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }")
    return tuple(box)


def _pixel(shot: Any, x: float, y: float) -> tuple[int, ...]:
    """The median colour of the 3x3 pixels around (x, y)."""
    patch = shot[round(y) - 1:round(y) + 2, round(x) - 1:round(x) + 2].reshape(-1, 3)
    return tuple(int(v) for v in np.median(patch, axis=0))


def _near(colour: tuple[int, ...], target: tuple[int, ...], tolerance: float = 40) -> bool:
    return math.dist(colour, target) < tolerance


@pytest.mark.slow
def test_pareto_members_are_drawn_red_others_grey_and_the_front_line_joins_them(browser: Any, tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "maximize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is experimental in Optuna
        study.set_metric_names(["test_acc", "deepfool_margin"])
    members, others = [(0.5, 0.6), (0.7, 0.4), (0.9, 0.2)], [(0.4, 0.35), (0.6, 0.3), (0.8, 0.1)]
    for values in members + others:
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=list(values)))
    _, figure = pareto(study, tmp_path / "pareto.png")
    page, shot = _show(browser, figure, "pareto", tmp_path)
    left, top, width, height = _plot_area(page)
    (x0, x1), (y0, y1) = figure.layout.xaxis.range, figure.layout.yaxis.range

    def at(vx: float, vy: float) -> tuple[float, float]:
        return left + (vx - x0) / (x1 - x0) * width, top + (1 - (vy - y0) / (y1 - y0)) * height

    member_colours = [_pixel(shot, *at(*v)) for v in members]
    other_colours = [_pixel(shot, *at(*v)) for v in others]
    assert all(_near(c, RED) for c in member_colours), member_colours
    assert all(_near(c, GREY) for c in other_colours), other_colours
    for (ax, ay), (bx, by) in zip(members, members[1:], strict=False):  # the line between neighbours on the front
        assert _near(_pixel(shot, *at((ax + bx) / 2, (ay + by) / 2)), RED)
    background = _pixel(shot, *at(0.45, 0.15))  # no line where no front runs
    assert not _near(background, RED) and not _near(background, GREY)
    titles = page.evaluate("() => [...document.querySelectorAll('.xtitle, .ytitle')].map(t => t.textContent)")
    assert titles == ["test_acc (maximize, better →)", "deepfool_margin (maximize, better ↑)"]
    assert page.query_selector(".colorbar") is None  # no colour scale to explain
    page.close()


def _lr_grid() -> optuna.Study:
    """lr (choices 1e-4 ... 0.1) x batch size, a margin and a test accuracy recorded for each."""
    from hydra_optuna_studies.contract import APP_ATTR, METRICS_ATTR

    distributions = {"optimizer.lr": CategoricalDistribution((1e-4, 1e-3, 1e-2, 0.1)),
                     "train.batch_size": CategoricalDistribution((8, 32, 128))}
    study = optuna.create_study(directions=["maximize"])
    study.set_user_attr(APP_ATTR, {"shown": ["deepfool_margin"]})
    for i, lr in enumerate((1e-4, 1e-3, 1e-2, 0.1)):
        for bs in (8, 32, 128):
            study.add_trial(optuna.trial.create_trial(
                params={"optimizer.lr": lr, "train.batch_size": bs}, distributions=distributions,
                values=[0.5 + 0.1 * i], user_attrs={METRICS_ATTR: {"deepfool_margin": 0.2 + 0.1 * i + bs / 1e3}}))
    return study


@pytest.mark.slow
def test_log_axes_are_labelled_in_the_parameters_units_at_log_spaced_positions(browser: Any, tmp_path: Path) -> None:
    study = _lr_grid()
    figures = dict(study_plots(study, tmp_path).interactive)
    page, _ = _show(browser, figures["deepfool_margin against each parameter"], "by_param", tmp_path)
    ticks = page.evaluate("""() => [...document.querySelectorAll('.xtick text')].map(t => {
        const r = t.getBoundingClientRect(); return [t.textContent, r.x + r.width / 2]; })""")
    lr_ticks = dict(ticks[:4])
    assert list(lr_ticks) == ["1e-4", "1e-3", "0.01", "0.1"]
    steps = np.diff(list(lr_ticks.values()))
    assert steps.min() > 50 and steps.max() - steps.min() < 3  # a decade is the same width everywhere
    colour_bar = page.evaluate("() => [...document.querySelectorAll('.colorbar .cbaxis text')].map(t => t.textContent)")
    assert colour_bar == ["8", "32", "128"]
    page.close()

    _, figure = parallel(study, 0, tmp_path / "parallel.png")
    page, _ = _show(browser, figure, "parallel", tmp_path)
    page.wait_for_selector(".parcoords .axis text")
    labels = page.evaluate("() => [...document.querySelectorAll('.parcoords .axis text')].map(t => t.textContent)")
    assert {"1e-4", "1e-3", "0.01", "0.1"} <= set(labels)
    assert not any(label.startswith("-") for label in labels)  # no log10 exponents as ticks
    titles = page.evaluate("() => [...document.querySelectorAll('.parcoords .axis-title')].map(t => t.textContent)")
    assert "optimizer.lr (log scale)" in titles and not any("log10" in t for t in titles)
    page.close()


def test_a_failed_heatmap_cell_is_hatched_in_the_png(tmp_path: Path) -> None:
    """Pixels of the PNG: the failed cell (its value recorded, marked) and the unmeasured one carry hatch lines;
    a plain cell is one flat colour."""
    from hydra_optuna_studies.figures import pyplot
    from PIL import Image

    grid = Grid({(0.01, 8): [0.9], (0.5, 8): [0.41], (0.01, 32): [0.88], (0.5, 32): [math.nan]}, {(0.5, 8)})
    fig, ax = heatmap_figure(grid, "lr", "bs", "test_acc")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "heatmap_failed_cell.png"
    fig.savefig(path)
    height = fig.get_size_inches()[1] * fig.dpi
    shot = np.asarray(Image.open(path).convert("RGB")).astype(int)

    def corner(column: int, row: int) -> Any:
        """The cell's lower-left quarter, clear of its text."""
        (x_a, y_a), (x_b, y_b) = ax.transData.transform([(column - 0.45, row - 0.45), (column - 0.1, row - 0.25)])
        return shot[round(height - y_b):round(height - y_a), round(x_a):round(x_b)].reshape(-1, 3)

    def colours(pixels: Any) -> int:
        return len({tuple(p // 16) for p in pixels})  # distinct colours, ignoring anti-aliasing shades

    plain, failed, unmeasured = corner(0, 0), corner(1, 0), corner(1, 1)
    assert colours(plain) == 1
    for hatched in (failed, unmeasured):
        spread = np.abs(hatched - np.median(hatched, axis=0)).sum(axis=1)
        assert 0.05 < (spread > 60).mean() < 0.6  # lines on a ground: neither flat nor one solid colour
    pyplot().close(fig)
