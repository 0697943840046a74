"""The report's worded answer says what the trials show, and only what a test supports: a margin that peaks at a
middle learning rate reads "not monotonic: peaks", a rising one "rises", noise "no clear relation" (real Optuna
studies in memory, trials as the app records them: config and metrics in user attributes)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra_optuna_studies.contract import CONFIG_ATTR, METRICS_ATTR
from hydra_optuna_studies.panels import PivotConfig, ReportSpec, write_panels
from hydra_optuna_studies.relations import describe, groups_of
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

LRS, BATCHES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0), (16, 32, 64, 128)
Margin = Callable[[float, np.random.Generator], float]  # the margin of a trial at a learning rate, with noise


def _study(margin: Margin, continuous: bool = False, failed: Callable[[float, int], bool] = lambda lr, bs: False,
           ) -> optuna.Study:
    """lr x batch size (a 5 x 4 grid, or 40 trials of a continuous log-uniform lr), the margin as ``margin`` says;
    trials for which ``failed`` holds fail after recording their metrics, their margin not measurable."""
    rng = np.random.default_rng(3)
    lr = FloatDistribution(1e-4, 1.0, log=True) if continuous else CategoricalDistribution(LRS)
    distributions = {"optimizer.lr": lr, "train.batch_size": CategoricalDistribution(BATCHES)}
    points = ([(float(10 ** rng.uniform(-4, 0)), int(rng.choice(BATCHES))) for _ in range(40)] if continuous
              else [(lr, bs) for lr in LRS for bs in BATCHES])
    study = optuna.create_study(direction="maximize")
    for lr, bs in points:
        value = float(margin(lr, rng))
        fails = failed(lr, bs)
        metrics = {"deepfool_margin": None if fails else value, "test_acc": 0.9 - 0.1 * (lr == 1.0)}
        study.add_trial(optuna.trial.create_trial(
            params={"optimizer.lr": lr, "train.batch_size": bs}, distributions=distributions,
            state=TrialState.FAIL if fails else TrialState.COMPLETE, values=None if fails else [value],
            user_attrs={CONFIG_ATTR: {"optimizer": {"lr": lr}, "train": {"batch_size": bs}},
                        METRICS_ATTR: metrics}))
    return study


def _answer(study: optuna.Study, tmp_path: Path, metric: str = "deepfool_margin") -> dict[str, tuple[str, str]]:
    """The shape column of the correlations table and the sentence, per setting."""
    markdown = write_panels(study, ReportSpec(correlations=[metric]), tmp_path).markdown
    rows = [line.strip("| ").split(" | ") for line in markdown if line.startswith("| optimizer")
            or line.startswith("| train")]
    sentences = {line.split(" and ")[1].split(":")[0]: line for line in markdown if line.startswith("- ")}
    return {row[0]: (row[4], sentences.get(row[0], "")) for row in rows}


def peak(lr: float, rng: np.random.Generator) -> float:
    return 0.6 - 0.1 * (math.log10(lr) + 2) ** 2 + rng.normal(0, 0.02)  # highest at lr 0.01


def rising(lr: float, rng: np.random.Generator) -> float:
    return 0.1 * (math.log10(lr) + 5) + rng.normal(0, 0.02)


def noise(lr: float, rng: np.random.Generator) -> float:
    return 0.5 + rng.normal(0, 0.05)


@pytest.mark.parametrize("continuous", [False, True])
def test_a_margin_that_peaks_at_a_middle_lr_reads_not_monotonic(tmp_path: Path, continuous: bool) -> None:
    answer = _answer(_study(peak, continuous), tmp_path)
    verdict, sentence = answer["optimizer.lr"]
    assert verdict == "not monotonic: peak"
    assert "deepfool_margin peaks at optimizer.lr" in sentence and "clearly above both ends" in sentence
    if not continuous:
        assert "peaks at optimizer.lr 0.01 with" in sentence
    assert answer["train.batch_size"][0] == "no clear relation"


def test_the_rank_correlation_alone_would_miss_the_peak(tmp_path: Path) -> None:
    """What the report said before: Spearman's interval includes 0 for this study."""
    markdown = write_panels(_study(peak), ReportSpec(correlations=["deepfool_margin"]), tmp_path).markdown
    (row,) = [line for line in markdown if line.startswith("| optimizer.lr")]
    low, high = (float(v) for v in row.split(" | ")[2].strip("[]").split(", "))
    assert low < 0 < high


@pytest.mark.parametrize("continuous", [False, True])
def test_a_rising_margin_reads_rises(tmp_path: Path, continuous: bool) -> None:
    verdict, sentence = _answer(_study(rising, continuous), tmp_path)["optimizer.lr"]
    assert verdict == "rises" and sentence.startswith("- deepfool_margin and optimizer.lr: deepfool_margin rises from")
    if not continuous:
        assert "at optimizer.lr 1e-4 to" in sentence and sentence.endswith("between them.")


def test_noise_reads_no_clear_relation(tmp_path: Path) -> None:
    answer = _answer(_study(noise), tmp_path)
    assert {verdict for verdict, _ in answer.values()} == {"no clear relation"}
    assert "differ no more than chance would" in answer["optimizer.lr"][1]


def test_a_rise_then_plateau_reads_as_the_issue_describes() -> None:
    """quick/lr_bs_grid on digits, as recorded (docs/studies/lr_bs_grid.md): its cell at lr 0.5 / batch 8 failed.
    The rank correlation's interval includes 0; the groups tell the rise and where it levels off."""
    margins = {1e-4: [0.312, 0.225, 0.464], 0.01: [0.573, 0.590, 0.582], 0.1: [0.560, 0.544, 0.560],
               0.5: [0.540, 0.582]}
    x = np.array([lr for lr, values in margins.items() for _ in values])
    y = np.array([v for values in margins.values() for v in values])
    verdict, sentence = describe(x, y, "deepfool_margin", "optimizer.lr", (-0.41, 0.83))
    assert verdict == "rises"
    assert sentence.startswith("deepfool_margin rises from 0.334 (0.23-0.46) at optimizer.lr 1e-4 to 0.566 "
                               "(0.54-0.59) from optimizer.lr 0.01 up; groups differ: permutation p=0.0")


def test_groups_merge_a_value_with_too_few_trials_and_bin_a_continuous_sampler() -> None:
    y = np.arange(11.0)
    grid = groups_of(np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 5.0]), y)
    assert [(g.low, g.high, len(g.values)) for g in grid] == [(1, 1, 3), (2, 2, 3), (3, 3, 3), (4, 5, 2)]
    continuous = groups_of(np.linspace(0, 1, 40), np.arange(40.0))
    assert [len(g.values) for g in continuous] == [10, 10, 10, 10]


def test_failed_trials_count_with_what_they_recorded_and_are_marked_in_the_pivot(tmp_path: Path) -> None:
    study = _study(rising, failed=lambda lr, bs: lr == 1.0 and bs == 16)
    spec = ReportSpec(pivots=[PivotConfig(rows="train.batch_size", columns="optimizer.lr",
                                          metrics=["test_acc", "deepfool_margin"])],
                      correlations=["test_acc", "deepfool_margin"])
    markdown = "\n".join(write_panels(study, spec, tmp_path).markdown)
    accuracy, margin = markdown.split("**deepfool_margin** (mean per cell")[0], markdown.split(
        "**deepfool_margin** (mean per cell")[1].split("**How")[0]
    assert "| 16 | 0.900 | 0.900 | 0.900 | 0.900 | 0.800† |" in accuracy  # measured before the trial failed
    assert "| 16 | " in margin and margin.split("| 16 | ")[1].split(" |\n")[0].endswith("n/m")
    assert "| optimizer.lr | " in markdown and "| 20 (1 failed) |" in markdown  # test_acc: every trial counts
    assert "| 19 |" in markdown  # the margin: the failed trial has none
    assert (tmp_path / "pivot_test_acc_train.batch_size_optimizer.lr.png").is_file()
