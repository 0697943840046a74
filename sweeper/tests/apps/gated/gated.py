"""A trial that ends when the test lets it: trial ``n`` (the sweeper's ``SWEEP_TRIAL_NUMBER``) waits until the file
``release`` holds a number above ``n``, so a test holds a sweep at a known point by a condition, never a sleep."""

import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def gated(cfg: DictConfig) -> float:
    trial = int(os.environ["SWEEP_TRIAL_NUMBER"])
    release = Path(cfg.release)
    while not (release.is_file() and int(release.read_text() or 0) > trial):
        time.sleep(0.05)
    return float(cfg.point) ** 2


if __name__ == "__main__":
    gated()
