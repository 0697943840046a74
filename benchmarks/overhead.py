"""Sweep overhead per trial: Hydra job setup + Optuna ask/tell + MLflow logging, vs the same trials in a loop.

    .venv/bin/python benchmarks/overhead.py [--trials 12]

Both sides run identical trials (the default MLP on digits, no DeepFool), differing only in lr, at 1, 20 and 230
epochs (230 makes the 5-second trial of the target on a 2-core CPU).
Per-trial cost is the slope between a short and a long run, (T(n) - T(2)) / (n - 2), which cancels process
start-up, imports and the first data load on both sides; each T is the best of ``--repeats`` interleaved runs:
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
from sweep.trial import TrialJob, run_trial
start = time.perf_counter()
for lr in {lrs(n)!r}:
    cfg, resolved = trial_config(f"optimizer.lr={{lr}}", *{TRIAL!r}, "train.epochs={epochs}", "mlflow.enabled=false")
    run_trial(TrialJob(cfg, resolved, Path("/tmp/overhead-loop"), "loop"))
print(time.perf_counter() - start)
"""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="each time is the best of this many runs")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 20, 230], help="230: a ~5-second trial here")
    args = parser.parse_args()
    rows = []
    for epochs in args.epochs:
        times: dict[str, list[float]] = {"sweep n": [], "sweep 2": [], "loop n": [], "loop 2": []}
        for _ in range(args.repeats):  # interleaved, best of each: this machine's noise is +-10%
            with tempfile.TemporaryDirectory() as tmp:
                times["sweep n"].append(sweep_seconds(args.trials, Path(tmp), epochs))
                times["sweep 2"].append(sweep_seconds(2, Path(tmp), epochs))
            times["loop n"].append(loop_seconds(args.trials, epochs))
            times["loop 2"].append(loop_seconds(2, epochs))
        best = {k: min(v) for k, v in times.items()}
        sweep_slope = (best["sweep n"] - best["sweep 2"]) / (args.trials - 2)
        loop_slope = (best["loop n"] - best["loop 2"]) / (args.trials - 2)
        overhead = sweep_slope - loop_slope
        rows.append([epochs, f"{loop_slope:.3f}", f"{sweep_slope:.3f}", f"{overhead:.3f}",
                     f"{100 * overhead / loop_slope:.1f}%"])
        print(rows[-1], flush=True)
    print(f"\nSeconds per trial, {args.trials} trials ({environment()})\n")
    print(table(["epochs", "bare loop s/trial", "sweep s/trial", "overhead s/trial", "overhead %"], rows))


if __name__ == "__main__":
    main()
