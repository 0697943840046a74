"""w^2 + x^2 + y^2 + z^2, where z's range depends on the x a trial drew and w is a key the config lacks."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def four_sphere(cfg: DictConfig) -> float:
    return float(cfg.w) ** 2 + float(cfg.x) ** 2 + float(cfg.y) ** 2 + float(cfg.z) ** 2


def configure(cfg: DictConfig, trial) -> None:
    """The define-by-run hook (hydra.sweeper.custom_search_space): suggest more parameters on the Optuna trial."""
    x = trial.params["x"]
    trial.suggest_float("z", x - cfg.max_z_difference_from_x, x + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)  # "+": w is not in the config, the override adds it


if __name__ == "__main__":
    four_sphere()
