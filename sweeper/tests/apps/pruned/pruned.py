"""A training-like curve per lr, reported every step through sweep's public API so a pruner can stop bad trials."""

import hydra
from hydra_optuna_studies.reporting import record, report
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def curve(cfg: DictConfig) -> float:
    loss = float("inf")
    for step in range(1, cfg.steps + 1):
        loss = (cfg.lr - 0.3) ** 2 + 1.0 / step  # converges to the squared distance from the best lr
        report(loss, step)
    record({"final_loss": loss, "steps": cfg.steps})
    return loss


if __name__ == "__main__":
    curve()
