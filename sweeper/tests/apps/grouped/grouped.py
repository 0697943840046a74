"""An app with config groups (net=small|wide) and a preset (+experiment=quick), for the config-composition tests."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def task(cfg: DictConfig) -> float:
    return float(cfg.optimizer.lr) * len(cfg.net.channels)


if __name__ == "__main__":
    task()
