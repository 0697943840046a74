"""A trial that takes ``seconds`` of wall time and returns them: trials of known, different lengths for the tests
of scheduling (no idle slot, workers, orphans)."""

import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def sleep(cfg: DictConfig) -> float:
    time.sleep(cfg.seconds)
    return float(cfg.seconds) + 0.001 * cfg.point


if __name__ == "__main__":
    sleep()
