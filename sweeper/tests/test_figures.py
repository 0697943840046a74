"""A study's figures are right for either direction and for several objectives, and left out when the data cannot
support them (real Optuna studies in memory, with trials of known values)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.figures import _discrete_pair, heatmap, parallel, study_plots
from optuna.distributions import CategoricalDistribution, FloatDistribution

LR = FloatDistribution(1e-4, 1.0, log=True)
DROPOUT = FloatDistribution(0.0, 0.6)


def _study(directions: list[str], points: list[tuple[dict, list[float]]], distributions: dict) -> optuna.Study:
    study = optuna.create_study(directions=directions)
    for params, values in points:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, values=values))
    return study


def _continuous(directions: list[str], n: int = 10) -> optuna.Study:
    points = [({"lr": 10 ** (-4 + 4 * i / n), "dropout": 0.05 * i}, [0.5 + 0.04 * i, 1.0 - 0.03 * i][: len(directions)])
              for i in range(n)]
    return _study(directions, points, {"lr": LR, "dropout": DROPOUT})


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_best_trial_is_darkest_and_drawn_last_in_parallel_coordinates(tmp_path: Path, direction: str) -> None:
    study = _continuous([direction])
    _, figure = parallel(study, 0, tmp_path / "p.png")
    line = figure.data[0].line
    values = list(line.color)
    best = max(values) if direction == "maximize" else min(values)
    assert values[-1] == best  # drawn last: on top
    # plotly's Blues runs light -> dark; reversed, the low end is dark. The best end is the dark one either way.
    assert line.reversescale == (direction == "minimize")
    assert (tmp_path / "p.png").stat().st_size > 5000


def test_importances_of_a_maximised_objective_are_those_of_its_negation(tmp_path: Path) -> None:
    """High values come from dropout near 0.3, low ones from a tiny lr: what leads to a high (maximised) objective is
    dropout, and the figure must say so, not what leads to a low one."""
    import numpy as np

    rng = np.random.default_rng(0)
    points = []
    for i in range(30):
        lr, dropout = float(10 ** rng.uniform(-4, 0)), float(rng.uniform(0, 0.6))
        value = (abs(dropout - 0.3) < 0.08) - (lr < 1e-3) + 0.01 * i / 30
        points.append(({"lr": lr, "dropout": dropout}, [value, 1 - value]))
    study = _study(["maximize", "minimize"], points, {"lr": LR, "dropout": DROPOUT})
    drawn = study_plots(study, tmp_path)
    (figure,) = [f for title, f in drawn.interactive if title == "Parameter importances for objective_0"]
    shown = dict(zip(figure.data[0].y, figure.data[0].x, strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's reminder that importances are for low targets: that is the point
        expected = optuna.importance.get_param_importances(study, target=lambda t: -t.values[0])
    assert shown == pytest.approx({k: round(v, 2) for k, v in expected.items()}, abs=0.011)
    assert shown["dropout"] > 0.9 > 0.1 > shown["lr"]
    assert (tmp_path / "pareto.png").is_file() and any(t == "Pareto front" for t, _ in drawn.interactive)


def test_continuous_pairs_get_no_heatmap_and_discrete_pairs_do(tmp_path: Path) -> None:
    continuous = _continuous(["maximize"])
    assert _discrete_pair(continuous) is None
    drawn = study_plots(continuous, tmp_path / "c")
    assert not list((tmp_path / "c").glob("heatmap_*")) and any("Heatmaps: not drawn" in n for n in drawn.notes)
    grid = {"lr": CategoricalDistribution((0.01, 0.1)), "bs": CategoricalDistribution((16, 64))}
    points = [({"lr": lr, "bs": bs}, [lr * bs]) for lr in (0.01, 0.1) for bs in (16, 64)]
    study = _study(["maximize"], points, grid)
    assert _discrete_pair(study) == ("bs", "lr")
    study_plots(study, tmp_path / "d")
    assert (tmp_path / "d" / "heatmap_objective_0.png").is_file()


def test_figures_the_data_cannot_support_are_left_out_with_a_note(tmp_path: Path) -> None:
    one = _study(["maximize"], [({"lr": 0.1, "dropout": 0.1}, [0.9])], {"lr": LR, "dropout": DROPOUT})
    drawn = study_plots(one, tmp_path)
    notes = " ".join(drawn.notes)
    assert "importances need 8 or more" in notes and "Parallel coordinates of objective_0: not drawn" in notes
    assert not (tmp_path / "importances_objective_0.png").exists()
    few = _continuous(["maximize"], n=4)
    assert any("4 complete trials" in n for n in study_plots(few, tmp_path / "few").notes)


def test_a_margin_heatmap_writes_each_cells_success_rate_under_its_value(tmp_path: Path) -> None:
    import math

    import matplotlib

    margins = {(0.01, 16): [0.5, 0.7], (0.1, 16): [math.nan], (0.01, 64): [0.25], (0.1, 64): [0.125]}
    rates = {(0.01, 16): [1.0, 0.9], (0.1, 16): [0.03], (0.01, 64): [0.5], (0.1, 64): [0.75]}
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        heatmap(margins, "lr", "bs", "deepfool_margin", tmp_path / "rates.svg", rates)
        heatmap(margins, "lr", "bs", "deepfool_margin", tmp_path / "plain.svg")
    cells = [line for line in (tmp_path / "rates.svg").read_text().splitlines() if "<text" in line]
    for text in ("0.6", "(95%)", "n/m", "(3%)", "0.25", "(50%)", "0.125", "(75%)", "success rate"):
        assert any(text in line for line in cells), text
    assert "%)" not in (tmp_path / "plain.svg").read_text()
