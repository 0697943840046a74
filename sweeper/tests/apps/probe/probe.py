"""A trial that says where it ran: its process, how many jobs that process ran before it with Hydra's context kept
(a mark left on Hydra's ConfigStore singleton, which a launcher setting the context up again replaces), what it
found in its environment, and the thread count its process started with (``/proc/self/environ``: what the process
was started with, before any library sized its thread pool). For the tests of the pool launcher."""

import json
import os
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def probe(cfg: DictConfig) -> float:
    store = ConfigStore.instance()
    before = getattr(store, "jobs_before", 0)
    store.jobs_before = before + 1
    started = dict(item.split("=", 1) for item in Path("/proc/self/environ").read_text().split("\0") if "=" in item)
    seen = {"pid": os.getpid(), "jobs_before": before, "point": cfg.point,
            "threads_at_start": started.get("OMP_NUM_THREADS"), "probe": os.environ.get("POOL_PROBE")}
    Path(HydraConfig.get().runtime.output_dir, "probe.json").write_text(json.dumps(seen))
    return float(cfg.point)


if __name__ == "__main__":
    probe()
