"""A trial bound by one CPU core: it spins for ``seconds`` of its own CPU time (or sleeps them, ``sleep=true``),
for benchmarks/workers.py. It writes when it ran (``span.txt`` in its job folder: start and end, wall clock), so the
benchmark measures trials by their own clocks: not the study's records, whose times run from ask to tell (a loop
that waits out a batch tells late), nor the sweep's, which include starting processes and writing the report."""

import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def spin(cfg: DictConfig) -> float:
    start = time.time()
    if cfg.sleep:
        time.sleep(cfg.seconds)
    else:
        end = time.thread_time() + cfg.seconds
        while time.thread_time() < end:
            pass
    Path(HydraConfig.get().runtime.output_dir, "span.txt").write_text(f"{start} {time.time()}\n")
    return float(cfg.point)


if __name__ == "__main__":
    spin()
