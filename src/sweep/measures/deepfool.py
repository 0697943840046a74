"""The DeepFool margin of a trial's final model: how far its inputs sit from a decision boundary (sweep.deepfool).

The margin averages only samples the model classifies correctly and DeepFool fools; originally misclassified
samples are counted (and their mean margin reported) apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sweep.errors import check, check_choice
from sweep.measures import Measure

if TYPE_CHECKING:
    from torch import nn

    from sweep.data import Dataset

STATISTICS = ("margin", "median", "rho", "success_rate", "iterations", "seconds", "misclassified",
              "misclassified_margin")


@dataclass
class DeepFoolConfig:
    section: ClassVar[str] = "deepfool"  # the config key errors name
    enabled: bool = True
    samples: int = 1000  # examples measured (the first N of a fixed shuffle of the split)
    split: str = "train"  # train | val | test
    seed: int = 0  # picks the examples; the same for every trial so margins compare across a sweep
    overshoot: float = 0.02
    max_iter: int = 50
    candidates: int | None = None  # top-k classes; null = all
    batch_size: int | None = None  # examples attacked together; null: sized for the CPU cache or GPU memory

    def __post_init__(self) -> None:
        key = self.section
        check(self.samples >= 1, f"{key}.samples", f"must be >= 1, got {self.samples}")
        check_choice(self.split, f"{key}.split", ("train", "val", "test"))
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
    index = torch.randperm(len(split), generator=torch.Generator().manual_seed(cfg.seed))[:n]
    x, y = split.batch(index.to(split.y.device))
    started = time.perf_counter()
    result = deepfool(model, x, cfg.overshoot, cfg.max_iter, cfg.candidates, batch_size=cfg.batch_size)
    norm, rho, success = result.norm, result.rho, result.success
    correct = result.original == y
    counted = success & correct
    wrong = success & ~correct
    nan = norm.new_tensor(float("nan"))
    stats = {
        "margin": norm[counted].mean(),
        "median": norm[counted].median() if counted.any() else nan,
        "rho": rho[counted].mean(),
        "success_rate": success.float().mean(),
        "iterations": result.iterations.float().mean(),
        "misclassified": (~correct).sum().float(),
        "misclassified_margin": norm[wrong].mean(),
    }
    values = dict(zip(stats, torch.stack(list(stats.values())).tolist(), strict=True))  # one device sync
    values["seconds"] = time.perf_counter() - started
    return {f"{cfg.section}_{name}": values[name] for name in STATISTICS}


def check_classes(cfg: DeepFoolConfig, data: Dataset) -> None:
    """Candidate classes beyond the data set's: known as soon as the data are, so refused before training."""
    allowed = f"must be in [2, {data.num_classes}] or null for {data.num_classes} classes, got {cfg.candidates}"
    check(cfg.candidates is None or cfg.candidates <= data.num_classes, f"{cfg.section}.candidates", allowed)


def metric_names(section: str) -> tuple[str, ...]:
    return tuple(f"{section}_{name}" for name in STATISTICS)


MEASURE = Measure(name="deepfool", config=DeepFoolConfig, run=margins, metrics=metric_names("deepfool"),
                  headline="deepfool_margin", check=check_classes)
