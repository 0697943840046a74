"""Sweep overhead per trial: Hydra job setup + Optuna ask/tell + MLflow logging, vs the same trials in a loop.

    .venv/bin/python benchmarks/overhead.py [--trials 12]

Both sides run identical trials (the default MLP on digits, 1 epoch, no DeepFool), differing only in lr.
Per-trial cost is the slope between a short and a long run, (T(n) - T(2)) / (n - 2), which cancels process
start-up, imports and the first data load on both sides:
- sweep: ``sweep -m hydra/sweeper=optuna hydra.sweeper.sampler=grid optimizer.lr=choice(...)`` as a user runs
  it (journal storage, MLflow SQLite store, in-process launcher);
- bare loop: ``run_trial`` called in a Python loop in one process, MLflow off, no Hydra, no Optuna.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import environment, table  # noqa: E402

TRIAL = ["train.epochs=1", "deepfool.enabled=false", "train.device=cpu"]


def lrs(n: int) -> list[float]:
    return [round(0.01 + 0.005 * i, 4) for i in range(n)]


def sweep_seconds(n: int, workdir: Path, epochs: int) -> float:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db"}
    choice = "choice(" + ",".join(map(str, lrs(n))) + ")"
    cmd = [str(Path(sys.executable).parent / "sweep"), "-m", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid",
           f"name=overhead{n}", f"optimizer.lr={choice}", *TRIAL, f"train.epochs={epochs}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=workdir, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def loop_seconds(n: int, epochs: int) -> float:
    code = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from tests.conftest import trial_config
from sweep.trial import run_trial
start = time.perf_counter()
for lr in {lrs(n)!r}:
    cfg, resolved = trial_config(f"optimizer.lr={{lr}}", *{TRIAL!r}, "train.epochs={epochs}", "mlflow.enabled=false")
    run_trial(cfg, resolved, Path("/tmp/overhead-loop"), "loop")
print(time.perf_counter() - start)
"""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    rows = []
    for epochs in (1, 20):
        with tempfile.TemporaryDirectory() as tmp:
            sweep_slope = (sweep_seconds(args.trials, Path(tmp), epochs) - sweep_seconds(2, Path(tmp), epochs))
        sweep_slope /= args.trials - 2
        loop_slope = (loop_seconds(args.trials, epochs) - loop_seconds(2, epochs)) / (args.trials - 2)
        overhead = sweep_slope - loop_slope
        rows.append([epochs, f"{loop_slope:.3f}", f"{sweep_slope:.3f}", f"{overhead:.3f}",
                     f"{100 * overhead / loop_slope:.0f}%"])
        print(rows[-1], flush=True)
    print(f"\nSeconds per trial, {args.trials} trials ({environment()})\n")
    print(table(["epochs", "bare loop s/trial", "sweep s/trial", "overhead s/trial", "overhead %"], rows))


if __name__ == "__main__":
    main()
