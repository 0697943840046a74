"""A study's figures are right for either direction and for several objectives, and left out when the data cannot
support them (real Optuna studies in memory, with trials of known values)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import optuna
import pytest
from hydra_optuna_studies.figures import parallel, study_plots
from hydra_optuna_studies.heatmaps import Grid, discrete_pair, heatmap
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
    assert discrete_pair(continuous) is None
    drawn = study_plots(continuous, tmp_path / "c")
    assert not list((tmp_path / "c").glob("heatmap_*")) and any("Heatmaps: not drawn" in n for n in drawn.notes)
    grid = {"lr": CategoricalDistribution((0.01, 0.1)), "bs": CategoricalDistribution((16, 64))}
    points = [({"lr": lr, "bs": bs}, [lr * bs]) for lr in (0.01, 0.1) for bs in (16, 64)]
    study = _study(["maximize"], points, grid)
    assert discrete_pair(study) == ("bs", "lr")
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
        heatmap(Grid(margins), "lr", "bs", "deepfool_margin", tmp_path / "rates.svg", rates)
        heatmap(Grid(margins), "lr", "bs", "deepfool_margin", tmp_path / "plain.svg")
    cells = [line for line in (tmp_path / "rates.svg").read_text().splitlines() if "<text" in line]
    for text in ("0.6", "(95%)", "n/m", "(3%)", "0.25", "(50%)", "0.125", "(75%)", "success rate"):
        assert any(text in line for line in cells), text
    assert "%)" not in (tmp_path / "plain.svg").read_text()


def _front_study(points: list[tuple[float, float]], directions: tuple[str, str] = ("maximize", "maximize"),
                 ) -> optuna.Study:
    """Two objectives (names test_acc, deepfool_margin), one trial per point, lr rising with the trial number."""
    study = optuna.create_study(directions=list(directions))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # set_metric_names is experimental in Optuna
        study.set_metric_names(["test_acc", "deepfool_margin"])
    for i, values in enumerate(points):
        study.add_trial(optuna.trial.create_trial(params={"lr": 10 ** (-4 + i / 4)}, distributions={"lr": LR},
                                                  values=list(values)))
    return study


def test_the_pareto_front_is_red_with_a_line_in_objective_order_and_the_rest_grey(tmp_path: Path) -> None:
    from hydra_optuna_studies.pareto import MEMBER, OTHER, pareto

    points = [(0.9, 0.2), (0.5, 0.6), (0.7, 0.4), (0.6, 0.3), (0.8, 0.1), (0.4, 0.35)]
    path, figure = pareto(_front_study(points), tmp_path / "pareto.png")
    others, front = figure.data
    assert (others.marker.color, front.marker.color, front.line.color) == (OTHER, MEMBER, MEMBER)
    assert front.mode == "lines+markers" and others.mode == "markers"
    assert list(zip(front.x, front.y, strict=True)) == [(0.5, 0.6), (0.7, 0.4), (0.9, 0.2)]  # the front, in order
    assert sorted(zip(others.x, others.y, strict=True)) == [(0.4, 0.35), (0.6, 0.3), (0.8, 0.1)]
    assert figure.layout.xaxis.title.text == "test_acc (maximize, better →)"
    assert figure.layout.yaxis.title.text == "deepfool_margin (maximize, better ↑)"
    assert not figure.layout.coloraxis.colorbar.title.text and not any(getattr(t.marker, "showscale", None)
                                                                       for t in figure.data)
    assert path.stat().st_size > 5000


def test_a_one_member_front_in_both_directions(tmp_path: Path) -> None:
    from hydra_optuna_studies.pareto import pareto

    points = [(0.2, 0.1), (0.5, 0.4), (0.3, 0.3)]  # minimising both, trial 0 dominates the others
    _, figure = pareto(_front_study(points, ("minimize", "minimize")), tmp_path / "p.png")
    others, front, *zoomed = figure.data
    assert (list(front.x), list(front.y)) == ([0.2], [0.1]) and len(others.x) == 2
    # the lone member sits in a corner of the axes: a second panel zooms on it
    assert [a.text for a in figure.layout.annotations] == ["all trials", "zoomed on the front"] and len(zoomed) == 2
    low, high = figure.layout.xaxis2.range
    assert low < 0.2 < high and high - low < 0.25 * (figure.layout.xaxis.range[1] - figure.layout.xaxis.range[0])
    assert figure.layout.title.text.startswith("Pareto front: 1 trial (red) of 3")
    assert figure.layout.xaxis.title.text == "test_acc (minimize, better ←)"
    assert figure.layout.yaxis.title.text == "deepfool_margin (minimize, better ↓)"


def test_diverged_and_infinite_values_stay_out_of_the_pareto_axes_and_a_note_names_them(tmp_path: Path) -> None:
    from hydra_optuna_studies.pareto import pareto

    points = [(0.9, 0.5), (0.85, 0.55), (0.8, 0.6), (0.7, 0.52), (0.1, 4000.0), (0.6, float("inf"))]
    study = _front_study(points)
    _, figure = pareto(study, tmp_path / "p.png")
    low, high = figure.layout.yaxis.range
    assert 0.4 < low < 0.5 and 0.6 < high < 0.7  # the front fills the axis: neither 4000 nor inf squash it
    shown = {(x, y) for trace in figure.data for x, y in zip(trace.x, trace.y, strict=True)}
    assert (0.1, 4000.0) not in shown and (0.6, float("inf")) not in shown
    (note,) = [a.text for a in figure.layout.annotations]
    on_front = sum(t.number in (4, 5) for t in study.best_trials)  # trial 4 at least: the largest finite margin
    assert note.startswith(f"2 trials left out of the axes (diverged or not finite, {on_front} of them on the front)")
    assert "trial 4 (test_acc 0.1, deepfool_margin 4000)" in note and "trial 5" in note


def test_kept_range_leaves_out_only_values_that_would_squash_the_rest() -> None:
    from hydra_optuna_studies.axes import kept_range

    assert kept_range([0.5, 0.55, 0.6, 0.62, 1e3, 1e5, 1e7]) == (0.5, 0.62)
    assert kept_range([0.1, 0.12, 0.5, 0.9]) == (0.1, 0.9)  # spread, not diverged: all kept
    assert kept_range([-50.0, 1.0, 1.1, 1.2]) == (1.0, 1.2)
    assert kept_range([1.0, 2.0, float("nan"), float("inf")]) == (1.0, 2.0)
    assert kept_range([float("nan")]) is None


def test_parallel_coordinates_label_a_log_parameter_in_its_own_units(tmp_path: Path) -> None:
    _, figure = parallel(_continuous(["maximize"]), 0, tmp_path / "p.png")
    dropout, lr, _ = figure.data[0].dimensions
    assert lr.label == "lr (log scale)" and "log10" not in lr.label
    assert list(lr.ticktext) == ["1e-4", "1e-3", "0.01", "0.1"]  # 1e-4 ... 10^-0.4: the powers of ten inside
    assert list(lr.tickvals) == pytest.approx([-4, -3, -2, -1])
    assert min(lr.values) == pytest.approx(-4) and dropout.label == "dropout"


def test_log_ticks_follow_the_range() -> None:
    from hydra_optuna_studies.axes import log_ticks, unit_text

    assert log_ticks(1e-4, 1.0) == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1.0])
    assert log_ticks(0.003, 0.08) == pytest.approx([0.005, 0.01, 0.02, 0.05])  # under two decades: 1-2-5
    assert [unit_text(v) for v in (1e-4, 5e-4, 0.001, 0.01, 0.5, 128, 2e5)] == [
        "1e-4", "5e-4", "1e-3", "0.01", "0.5", "128", "2e5"]


def test_the_colour_range_spans_a_quarter_of_the_values_and_stays_inside_0_1_for_fractions() -> None:
    from hydra_optuna_studies.heatmaps import colour_range

    low, high = colour_range([0.536, 0.578, 0.55])
    assert high - low == pytest.approx(0.25 * 0.578) and low < 0.536 and high > 0.578
    assert colour_range([0.95, 0.97]) == pytest.approx((0.7575, 1.0))  # accuracies: inside [0, 1]
    assert colour_range([0.1, 0.9]) == pytest.approx((0.1, 0.9))  # a real spread is the range itself
    assert colour_range([0.02, 0.021]) == pytest.approx((0.020 + 0.0005 - 0.021 / 8, 0.0205 + 0.021 / 8))
    assert colour_range([0.5, 0.52, 0.51, 0.53, 40.0])[1] < 1  # a diverged cell does not take the scale


def _grid_with_a_failed_cell() -> optuna.Study:
    """lr x batch size, 2 x 2; the cell lr 0.5 / bs 8 failed (its margin not measurable) after recording its test
    accuracy, as the app's trials do."""
    from hydra_optuna_studies.contract import APP_ATTR

    grid = {"lr": CategoricalDistribution((0.01, 0.5)), "bs": CategoricalDistribution((8, 32))}
    study = optuna.create_study(directions=["maximize"])
    study.set_user_attr(APP_ATTR, {"shown": ["test_acc"]})
    for lr in (0.01, 0.5):
        for bs in (8, 32):
            failed = lr == 0.5 and bs == 8
            metrics = {"test_acc": 0.41 if failed else 0.9, "deepfool_margin": None if failed else 0.5}
            study.add_trial(optuna.trial.create_trial(
                params={"lr": lr, "bs": bs}, distributions=grid, user_attrs={"metrics": metrics},
                state=optuna.trial.TrialState.FAIL if failed else optuna.trial.TrialState.COMPLETE,
                values=None if failed else [metrics["deepfool_margin"]]))
    return study


def test_a_failed_trials_recorded_value_is_shown_marked_and_its_unmeasured_objective_as_n_m(tmp_path: Path) -> None:
    import matplotlib
    from hydra_optuna_studies.figures import _metric_getters
    from hydra_optuna_studies.heatmaps import cells_of

    study = _grid_with_a_failed_cell()
    getters = _metric_getters(study)
    accuracy = cells_of(study, "lr", "bs", getters["test_acc"])
    assert accuracy.values[(0.5, 8)] == [0.41] and accuracy.failed == {(0.5, 8)}
    objective = cells_of(study, "lr", "bs", getters["objective_0"])
    assert math.isnan(objective.values[(0.5, 8)][0]) and not objective.failed
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        heatmap(accuracy, "lr", "bs", "test_acc", tmp_path / "acc.svg")
        heatmap(objective, "lr", "bs", "margin", tmp_path / "margin.svg")
    accuracy_text, objective_text = ((tmp_path / name).read_text() for name in ("acc.svg", "margin.svg"))
    assert ">0.41†<" in accuracy_text and "value† recorded by a trial that did not complete" in accuracy_text
    assert ">n/m<" in objective_text and ">0.5<" in objective_text
    drawn = study_plots(study, tmp_path / "all")
    assert {"heatmap_objective_0.png", "heatmap_test_acc.png", "by_param_test_acc.png"} <= {
        f.name for f in drawn.files}


def test_heatmap_cell_text_is_at_least_11_px_and_the_figure_fits_the_report_page() -> None:
    from hydra_optuna_studies.figures import pyplot
    from hydra_optuna_studies.heatmaps import heatmap_figure

    cells = {(lr, bs): [0.5] for lr in (1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5)
             for bs in (2, 4, 8, 16, 32, 64, 128, 256, 512)}  # lr_bs_grid: 8 x 9
    rates = {k: [0.9] for k in cells}
    fig, ax = heatmap_figure(Grid(cells), "lr", "bs", "margin", rates)
    width_px = fig.get_size_inches()[0] * fig.dpi
    assert width_px <= 1168  # the report's column (1200 px less padding): shown unscaled
    sizes = [t.get_fontsize() * fig.dpi / 72 for t in ax.texts]
    assert len(sizes) == 72 and min(sizes) >= 11
    pyplot().close(fig)


def test_each_metric_against_each_parameter_coloured_by_another_with_a_button_per_colouring(tmp_path: Path) -> None:
    from hydra_optuna_studies.contract import APP_ATTR, METRICS_ATTR

    grid = {"optimizer.lr": CategoricalDistribution((1e-4, 1e-2, 0.1, 0.5)),
            "train.batch_size": CategoricalDistribution((8, 32, 128))}
    study = optuna.create_study(directions=["maximize"])
    study.set_user_attr(APP_ATTR, {"shown": ["test_acc", "deepfool_margin"],
                                   "beside": {"deepfool_margin": "deepfool_success_rate"}})
    for lr in (1e-4, 1e-2, 0.1, 0.5):
        for bs in (8, 32, 128):
            margin = 0.3 + 0.001 * bs if lr == 1e-4 else 0.56
            study.add_trial(optuna.trial.create_trial(
                params={"optimizer.lr": lr, "train.batch_size": bs}, distributions=grid, values=[0.9 - 0.001 * bs],
                user_attrs={METRICS_ATTR: {"test_acc": 0.9, "deepfool_margin": margin, "deepfool_success_rate": 1}}))
    drawn = study_plots(study, tmp_path)
    figures = dict(drawn.interactive)
    assert {"objective_0 against each parameter", "test_acc against each parameter",
            "deepfool_margin against each parameter"} <= set(figures)
    assert not any("success_rate" in title for title in figures)  # what a margin rests on is no metric of its own
    margin = figures["deepfool_margin against each parameter"]
    assert [trace.name for trace in margin.data] == ["optimizer.lr", "train.batch_size"]  # lr explains most: first
    assert margin.layout.title.text == "deepfool_margin against each swept parameter, coloured by train.batch_size"
    assert margin.layout.xaxis.type == "log" and list(margin.layout.xaxis.ticktext) == ["1e-4", "0.01", "0.1", "0.5"]
    assert list(margin.layout.coloraxis.colorbar.ticktext) == ["8", "32", "128"]
    lr_trace = margin.data[0]
    assert sorted(set(lr_trace.marker.color)) == [0, 1, 2]  # batch sizes by rank: three colours evenly apart
    labels = [b.label for b in margin.layout.updatemenus[0].buttons]
    assert labels == ["colour by train.batch_size", "colour by optimizer.lr"]
    by_lr = margin.layout.updatemenus[0].buttons[1]
    assert by_lr.args[1]["coloraxis.colorbar.ticktext"] == ["1e-4", "0.01", "0.1", "0.5"]
    assert (tmp_path / "by_param_deepfool_margin.png").stat().st_size > 5000


def test_a_continuous_sampler_with_many_parameters_gets_one_bounded_figure_per_metric(tmp_path: Path) -> None:
    import numpy as np
    from hydra_optuna_studies.by_param import MAX_PANELS

    rng = np.random.default_rng(0)
    names = [f"p{i}" for i in range(6)]
    distributions = {n: FloatDistribution(1e-4, 1.0, log=i == 0) for i, n in enumerate(names)}
    points = []
    for _ in range(20):
        params = {n: float(10 ** rng.uniform(-4, 0)) if n == "p0" else float(rng.uniform(1e-4, 1)) for n in names}
        points.append((params, [math.log10(params["p0"]) + 0.1 * params["p3"]]))
    drawn = study_plots(_study(["maximize"], points, distributions), tmp_path)
    (figure,) = [f for title, f in drawn.interactive if title.endswith("against each parameter")]
    assert len(figure.data) == MAX_PANELS and figure.data[0].name == "p0"
    assert figure.layout.xaxis.type == "log" and list(figure.layout.xaxis.ticktext) == ["1e-3", "0.01", "0.1"]
    assert len(figure.layout.updatemenus[0].buttons) == MAX_PANELS


def test_both_distributions_ask_for_a_matplotlib_whose_rectangles_take_a_hatch_colour() -> None:
    """The heatmaps hatch a marked cell in its text's colour (``Rectangle(hatchcolor=...)``, new in matplotlib 3.11):
    a floor below it installs a matplotlib on which every heatmap with a failed cell raises."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.version import Version

    root = Path(__file__).resolve().parents[2]
    for pyproject in (root / "pyproject.toml", root / "sweeper" / "pyproject.toml"):
        needs = [Requirement(d) for d in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
        (matplotlib,) = [r for r in needs if r.name == "matplotlib"]
        floors = [Version(s.version) for s in matplotlib.specifier if s.operator in (">=", "==", "~=")]
        assert floors and min(floors) >= Version("3.11"), f"{pyproject}: {matplotlib}"


def test_a_conditional_parameter_takes_no_trial_out_of_the_other_panels(tmp_path: Path) -> None:
    """momentum exists only where the optimizer is sgd: its panel draws the sgd trials, every other panel draws all
    of them (coloured by default by a param every trial has); colouring by momentum draws the sgd trials alone."""
    from hydra_optuna_studies.by_param import points_of
    from hydra_optuna_studies.figures import _metric_getters

    def objective(trial: optuna.Trial) -> float:
        optimizer = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        momentum = trial.suggest_float("momentum", 0.0, 0.99) if optimizer == "sgd" else 0.0
        return -abs(math.log10(lr) + 2) + 0.5 * (optimizer == "adam") + 0.1 * momentum

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=16)
    sgd = [t for t in study.trials if t.params["optimizer"] == "sgd"]
    assert 4 <= len(sgd) <= 12  # both branches are well represented
    points = points_of(study, "objective_0", _metric_getters(study)["objective_0"])
    assert points is not None and len(points.trials) == 16
    assert set(points.params) == {"optimizer", "lr", "momentum"}
    drawn = study_plots(study, tmp_path)
    figure = dict(drawn.interactive)["objective_0 against each parameter"]
    colour = figure.layout.title.text.rsplit(" ", 1)[1]
    assert colour != "momentum"  # the default colouring is a param every trial has ...
    assert {trace.name: len(trace.x) for trace in figure.data} == {
        name: 16 if name != "momentum" else len(sgd) for name in points.params}  # ... so only momentum's panel thins
    (by_momentum,) = [b for b in figure.layout.updatemenus[0].buttons if b.label == "colour by momentum"]
    assert [len(xs) for xs in by_momentum.args[0]["x"]] == [len(sgd)] * 3  # the trials that have momentum
    assert (tmp_path / "by_param_objective_0.png").stat().st_size > 5000


def test_a_study_whose_every_trial_failed_after_recording_gets_its_heatmap_with_every_cell_marked(tmp_path: Path,
                                                                                                  ) -> None:
    from hydra_optuna_studies.contract import APP_ATTR, METRICS_ATTR
    from hydra_optuna_studies.figures import _metric_getters, pyplot
    from hydra_optuna_studies.heatmaps import cells_of, heatmap_figure

    grid = {"lr": CategoricalDistribution((0.01, 0.5)), "bs": CategoricalDistribution((8, 32))}
    study = optuna.create_study(directions=["maximize"])
    study.set_user_attr(APP_ATTR, {"shown": ["test_acc"]})
    for lr in (0.01, 0.5):
        for bs in (8, 32):  # each failed, its margin (the objective) not measurable, after measuring its accuracy
            study.add_trial(optuna.trial.create_trial(
                params={"lr": lr, "bs": bs}, distributions=grid, state=optuna.trial.TrialState.FAIL,
                user_attrs={METRICS_ATTR: {"test_acc": 0.3 + lr * bs / 100, "objective_0": None}}))
    assert discrete_pair(study) == ("bs", "lr")
    drawn = study_plots(study, tmp_path)
    assert {tmp_path / "heatmap_test_acc.png", tmp_path / "by_param_test_acc.png"} <= set(drawn.files)
    assert "History of objective_0: not drawn, no trial completed." in drawn.notes
    by_param = dict(drawn.interactive)["test_acc against each parameter"]
    assert {s for trace in by_param.data for s in trace.marker.symbol} == {"x"}  # each a failed trial's value
    cells = cells_of(study, "lr", "bs", _metric_getters(study)["test_acc"])
    assert cells.failed == set(cells.values) and len(cells.values) == 4
    fig, ax = heatmap_figure(cells, "lr", "bs", "test_acc")
    texts = [t.get_text() for t in ax.texts]
    pyplot().close(fig)
    assert len(texts) == 4 and all(t.endswith("†") for t in texts)


def test_the_pareto_fronts_hover_gives_params_as_every_table_does(tmp_path: Path) -> None:
    from hydra_optuna_studies.pareto import pareto
    from hydra_optuna_studies.results import param_text

    study = _front_study([(0.9, 0.2), (0.5, 0.6), (0.7, 0.4)])
    _, figure = pareto(study, tmp_path / "pareto.png")
    hovers = [h for trace in figure.data for h in trace.hovertext]
    for trial in study.trials:
        (hover,) = [h for h in hovers if h.startswith(f"trial {trial.number}:")]
        assert hover.endswith(f"lr={param_text(trial.params['lr'])}")
    assert any(h.endswith("lr=0.000177828") for h in hovers)  # 10**-3.75 to 6 significant digits, not 4


def test_every_metric_axis_is_padded_alike() -> None:
    from hydra_optuna_studies.axes import padded
    from hydra_optuna_studies.by_param import points_of
    from hydra_optuna_studies.figures import _metric_getters
    from hydra_optuna_studies.pareto import front_of

    assert padded((0.5, 1.0)) == pytest.approx((0.47, 1.03))
    assert padded((2.0, 2.0)) == pytest.approx((1.88, 2.12))  # one value: padded by its magnitude
    front = front_of(_front_study([(0.9, 0.2), (0.5, 0.6), (0.7, 0.4)]))
    assert front.ranges == [padded((0.5, 0.9)), padded((0.2, 0.6))]
    study = _continuous(["maximize"])
    points = points_of(study, "objective_0", _metric_getters(study)["objective_0"])
    assert points is not None and points.y_range() == padded((min(points.values), max(points.values)))
