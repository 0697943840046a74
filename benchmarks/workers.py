"""Workers on one study, and the idle share of a sweep's slots: hydra-optuna-studies against the batch-synchronous
loop of hydra-optuna-sweeper, in one run.

    .venv/bin/python benchmarks/workers.py                 # about 6 minutes on 2 CPU cores
    .venv/bin/python benchmarks/workers.py --quick         # fewer trials

1. Trials per minute with 1, 2 and 4 local workers on one study (``hydra.sweeper.workers=N``), on the default
   journal file and on a PostgreSQL database (``scripts/pg-server``): trials that each spin one CPU core for a second
   (benchmarks/apps/spin). Counted from the first trial's start to the last one's end, as a long sweep sees it
   (starting the worker processes and writing the report at the end are left out; the whole sweep's seconds are
   shown beside). On 2 cores, 2 workers should reach 1.7x or more of 1, and 4 no more than 2.
2. The idle share of n_jobs=2 slots on trials of mixed length (2 s and 0.2 s of sleep, alternating): the share of
   slot time no trial ran, ``1 - sum(trial seconds) / (slots x span)``, and the share no Hydra job ran (a job
   counted from Hydra's setting it up: what is left is the launcher's round trip and the sweeper's tell and ask),
   for the sweeper's slots on the pool launcher and on Hydra's joblib launcher, and for the batch-synchronous loop
   (``hydra/launcher=batch_joblib``, in benchmarks/hydra_plugins: joblib handed batches of n_jobs, each waited
   out). Each the median of three sweeps. Target: under 5% for the slots.
3. The storage's share of a trial: a sweep of trials that do nothing, its seconds per trial (Hydra's job, the
   claim, the heartbeat, telling the study) on a journal, SQLite and PostgreSQL.

Every sweep runs as a user runs it, in a fresh process; trials are timed by their own clocks (the spin app writes
when it ran), sweeps by the wall clock. Printed as Markdown tables, with the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
SPIN = ROOT / "benchmarks" / "apps" / "spin" / "spin.py"
sys.path.insert(0, str(ROOT))
from sweeper.tests.servers import Postgres, fresh_database  # noqa: E402 - the project's own server script


def sweep(folder: Path, *overrides: str) -> float:
    """Wall seconds of one sweep of the spin app, run as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}  # hydra/launcher=batch_joblib
    start = time.perf_counter()
    subprocess.run([sys.executable, str(SPIN), "-m", f"hydra.sweep.dir={folder}", *overrides], cwd=folder.parent,
                   env=env, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - start


def trials(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    if storage.endswith(".journal"):
        storage_object = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    else:
        storage_object = optuna.storages.RDBStorage(storage)
    return optuna.load_study(study_name=name, storage=storage_object).trials


def spans(folder: Path) -> list[tuple[float, float]]:
    """When each trial of the sweep in ``folder`` ran (start, end), from the spin app's ``span.txt`` files."""
    found = [path.read_text().split() for path in folder.rglob("span.txt")]
    return [(float(start), float(end)) for start, end in found]


def throughput(base: Path, pg: Postgres, n: int) -> list[list[str]]:
    rows = []
    for kind in ("journal", "postgresql"):
        per_minute = {}
        for workers in (1, 2, 4):
            name = f"w{workers}_{kind}"
            folder = base / name
            storage = fresh_database(pg.url, name) if kind == "postgresql" else str(folder / "optuna.journal")
            seconds = sweep(folder, f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={name}",
                            f"hydra.sweeper.workers={workers}", f"point=range(0,{n})", "seconds=1.0")
            ran = spans(folder)
            assert len(trials(storage, name)) == n == len(ran)
            span = max(end for _, end in ran) - min(start for start, _ in ran)
            per_minute[workers] = n / span * 60
            rows.append([kind, str(workers), f"{n}", f"{span:.1f}", f"{per_minute[workers]:.1f}",
                         f"{per_minute[workers] / per_minute[1]:.2f}x", f"{seconds:.1f}"])
    return rows


def jobs(folder: Path) -> list[tuple[float, float]]:
    """When each Hydra job of the sweep in ``folder`` ran: from its ``.hydra/config.yaml`` (written as Hydra sets up
    the job) to the end of its trial."""
    return [(path.parent.joinpath(".hydra", "config.yaml").stat().st_mtime, float(path.read_text().split()[1]))
            for path in folder.rglob("span.txt")]


def idle(ran: list[tuple[float, float]], slots: int) -> tuple[float, float, float]:
    """(busy seconds, span, the share of the slots' time nothing in ``ran`` ran)."""
    busy = sum(end - start for start, end in ran)
    span = max(end for _, end in ran) - min(start for start, _ in ran)
    return busy, span, 1 - busy / (slots * span)


def idle_share(base: Path, n: int, repeats: int = 3) -> list[list[str]]:
    rows = []
    for label, launcher in (("slots, hydra/launcher=pool", "pool"), ("slots, hydra/launcher=joblib", "joblib"),
                            ("batches of n_jobs (hydra-optuna-sweeper's loop), joblib", "batch_joblib")):
        runs = []
        for repeat in range(repeats):
            folder = base / f"idle_{launcher}_{repeat}"
            seconds = sweep(folder, f"hydra/launcher={launcher}", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
                            f"point=range(0,{n // 2})", "seconds=choice(2.0,0.2)", "sleep=true")
            assert len(spans(folder)) == n
            busy, span, no_trial = idle(spans(folder), 2)
            runs.append((no_trial, [label, str(n), f"{busy:.1f}", f"{span:.1f}", f"{no_trial:.1%}",
                                    f"{idle(jobs(folder), 2)[2]:.1%}", f"{seconds:.1f}"]))
        rows.append(sorted(runs)[len(runs) // 2][1])
    return rows


def overhead(base: Path, pg: Postgres, n: int) -> list[list[str]]:
    rows = []
    for kind in ("journal", "sqlite", "postgresql"):
        folder = base / f"noop_{kind}"
        folder.mkdir(parents=True)
        storage = {"journal": str(folder / "optuna.journal"), "sqlite": f"sqlite:///{folder}/study.db",
                   "postgresql": fresh_database(pg.url, f"noop_{kind}")}[kind]
        short = sweep(folder, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=a", "point=range(0,2)",
                      "seconds=0")
        long = sweep(folder, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=b",
                     f"point=range(0,{n + 2})", "seconds=0")
        rows.append([kind, f"{(long - short) / n * 1000:.0f}"])  # the slope: a sweep's fixed costs cancel
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (a check, not a measurement)")
    args = parser.parse_args()
    n = 8 if args.quick else 24
    base = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    pg = Postgres()
    try:
        print(f"{platform.node()}: {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
              f"Optuna {optuna.__version__}\n")
        print("Trials per minute, trials of 1 s of one core's time, N local workers on one study:\n")
        print(table(["storage", "workers", "trials", "first start to last end s", "trials/min", "vs 1 worker",
                           "whole sweep s"], throughput(base, pg, n)))
        print("\nIdle share of two slots, trials of 2 s and 0.2 s alternating (each the median of three sweeps):\n")
        print(table(["loop", "trials", "trial seconds", "span s", "idle share: no trial running",
                           "no Hydra job running", "whole sweep s"], idle_share(base, n)))
        print("\nA sweep's cost per trial that does nothing (Hydra's job, claim, heartbeat, telling the study):\n")
        print(table(["storage", "ms per trial"], overhead(base, pg, 2 * n)))
    finally:
        pg.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
