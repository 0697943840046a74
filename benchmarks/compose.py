"""Per-trial config composition: Hydra's full recomposition vs the sweeper's reusing loader, same overrides.

    .venv/bin/python benchmarks/compose.py [--trials 50]

Each trial composes the project's config with the overrides a grid sweep hands a launcher (the swept values plus
the contract's per-job environment, ``sweep.contract``), as ``load_sweep_config`` does for every job. The reusing
loader composes the first trial with Hydra and later ones from a copy
(``hydra_plugins/sweep_optuna_sweeper/_compose.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from hydra_plugins.hydra_optuna_studies._compose import ReusingConfigLoader  # noqa: E402

from benchmarks.common import environment, table  # noqa: E402
from sweep.cli import CONFIG_DIR  # noqa: E402


def per_trial_ms(loader, master, trials: int) -> float:
    start = time.perf_counter()
    for i in range(trials):
        loader.load_sweep_config(master, [f"optimizer.lr={0.01 + 0.001 * i}", f"train.batch_size={16 * (1 + i % 4)}",
                                          f"++hydra.job.env_set.SWEEP_TRIAL_NUMBER={i}",
                                          "++hydra.job.env_set.SWEEP_STUDY_NAME=bench"])
    return 1000 * (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        hydra_loader = GlobalHydra.instance().config_loader()
        master = hydra_loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
        per_trial_ms(hydra_loader, master, 3)  # warm-up: imports, file system caches
        full = per_trial_ms(hydra_loader, master, args.trials)
        reused = per_trial_ms(ReusingConfigLoader(hydra_loader), master, args.trials)
    print(f"\nms per trial over {args.trials} trials ({environment()})\n")
    print(table(["Hydra load_sweep_config", "reusing loader", "speed-up"],
                [[f"{full:.1f}", f"{reused:.1f}", f"{full / reused:.1f}x"]]))


if __name__ == "__main__":
    main()
