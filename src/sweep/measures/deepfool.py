"""The DeepFool margin of a trial's final model: how far its inputs sit from a decision boundary (sweep.deepfool).

By default the margin averages the samples the model classifies correctly and DeepFool fools (``count=correct``);
originally misclassified samples are counted (and their mean margin reported) apart. ``count=all`` averages every
fooled sample, as the Fashion-MNIST study did. Samples DeepFool does not fool within ``max_iter`` are always left
out, and a margin that would rest on fewer than ``min_share`` of the measured samples is not a margin: it is
reported as NaN, with ``deepfool_counted`` saying how many samples it had.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from hydra_optuna_studies.errors import check, check_choice

from sweep.measures import Measure

if TYPE_CHECKING:
    from torch import nn

    from sweep.data import Dataset

log = logging.getLogger(__name__)
STATISTICS = ("margin", "median", "rho", "success_rate", "counted", "iterations", "seconds", "misclassified",
              "misclassified_margin")
PICKS = ("random", "first")
COUNTS = ("correct", "all")


@dataclass
class DeepFoolConfig:
    section: ClassVar[str] = "deepfool"  # the config key errors name
    enabled: bool = True
    samples: int = 1000  # examples measured
    split: str = "train"  # train | val | test
    pick: str = "random"  # random: a fixed random sample (seed); first: the first N in the data set's file order
    seed: int = 0  # picks the examples; the same for every trial so margins compare across a sweep
    overshoot: float = 0.02  # the paper's
    max_iter: int = 50  # the paper's; samples not fooled within it are left out of the margin
    count: str = "correct"  # which fooled samples the margin averages: correct (classified right) | all
    min_share: float = 0.5  # fewer counted samples than this share of those measured: the margin is NaN
    candidates: int | None = None  # top-k classes; null = all
    batch_size: int | None = None  # examples attacked together; null: sized for the CPU cache or GPU memory

    def __post_init__(self) -> None:
        key = self.section
        check(self.samples >= 1, f"{key}.samples", f"must be >= 1, got {self.samples}")
        check_choice(self.split, f"{key}.split", ("train", "val", "test"))
        check_choice(self.pick, f"{key}.pick", PICKS)
        check_choice(self.count, f"{key}.count", COUNTS)
        check(0.0 <= self.min_share <= 1.0, f"{key}.min_share", f"must be in [0, 1], got {self.min_share}")
        check(self.overshoot >= 0, f"{key}.overshoot", f"must be >= 0, got {self.overshoot}")
        check(self.max_iter >= 1, f"{key}.max_iter", f"must be >= 1, got {self.max_iter}")
        check(self.candidates is None or self.candidates >= 2, f"{key}.candidates", "must be >= 2 or null")
        check(self.batch_size is None or self.batch_size >= 1, f"{key}.batch_size", "must be >= 1 or null")


def margins(model: nn.Module, data: Dataset, cfg: DeepFoolConfig) -> dict[str, float]:
    """DeepFool margin statistics of ``model`` on ``cfg.samples`` examples of ``cfg.split``, named
    ``<section>_<statistic>``."""
    import torch

    from sweep.deepfool import deepfool

    split = data.split(cfg.split)
    n = min(cfg.samples, len(split))
    if cfg.pick == "first":
        index = split.first_in_file(n)
    else:
        index = torch.randperm(len(split), generator=torch.Generator().manual_seed(cfg.seed))[:n]
    x, y = split.batch(index.to(split.y.device))
    started = time.perf_counter()
    result = deepfool(model, x, cfg.overshoot, cfg.max_iter, cfg.candidates, batch_size=cfg.batch_size)
    norm, rho, success = result.norm, result.rho, result.success
    correct = result.original == y
    counted = success & correct if cfg.count == "correct" else success
    wrong = success & ~correct
    nan = norm.new_tensor(float("nan"))
    stats = {
        "margin": norm[counted].mean(),
        "median": norm[counted].median() if counted.any() else nan,
        "rho": rho[counted].mean(),
        "success_rate": success.float().mean(),
        "counted": counted.sum().float(),
        "iterations": result.iterations.float().mean(),
        "misclassified": (~correct).sum().float(),
        "misclassified_margin": norm[wrong].mean(),
    }
    values = dict(zip(stats, torch.stack(list(stats.values())).tolist(), strict=True))  # one device sync
    values["seconds"] = time.perf_counter() - started
    if values["counted"] < max(1, math.ceil(cfg.min_share * n)):  # too few samples: no margin, only the count
        values.update(margin=math.nan, median=math.nan, rho=math.nan)
        log.warning("%s_margin not measurable: %d of %d samples counted (%s.min_share=%s, count=%s)", cfg.section,
                    values["counted"], n, cfg.section, cfg.min_share, cfg.count)
    return {f"{cfg.section}_{name}": values[name] for name in STATISTICS}


def check_classes(cfg: DeepFoolConfig, data: Dataset) -> None:
    """Candidate classes beyond the data set's, or an empty split: known as soon as the data are, so refused before
    training."""
    check(len(data.split(cfg.split)) > 0, f"{cfg.section}.split", f"the {cfg.split} split is empty "
          "(data.val_fraction=0 holds out no validation examples); use train or test")
    allowed = f"must be in [2, {data.num_classes}] or null for {data.num_classes} classes, got {cfg.candidates}"
    check(cfg.candidates is None or cfg.candidates <= data.num_classes, f"{cfg.section}.candidates", allowed)


def metric_names(section: str) -> tuple[str, ...]:
    return tuple(f"{section}_{name}" for name in STATISTICS)


MEASURE = Measure(name="deepfool", config=DeepFoolConfig, run=margins, metrics=metric_names("deepfool"),
                  headline="deepfool_margin", check=check_classes, beside=("deepfool_success_rate",))
