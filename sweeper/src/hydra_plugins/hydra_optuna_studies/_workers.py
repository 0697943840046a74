"""Local worker processes: ``hydra.sweeper.workers=N`` starts N copies of this very command on the one study.

Each copy is an ordinary worker (the same storage and study name: it joins the study as a worker started by hand,
on another host or in a container would), pinned to its own GPU where several are visible (``CUDA_VISIBLE_DEVICES``),
with the machine's CPU threads split between the copies (``OMP_NUM_THREADS``). This process only watches: it shows
the study's progress while they run, passes Ctrl-C and SIGTERM on, and writes the report once they are done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from hydra_optuna_studies.errors import SweepError

ENV_WORKER = "SWEEP_WORKER_INDEX"  # set in each started worker: it runs trials and leaves the report to its starter
STOP_WAIT_S = 60  # how long stopped workers get to record their trials before they are killed


def is_spawned_worker() -> bool:
    return bool(os.environ.get(ENV_WORKER))


def visible_gpus() -> list[str]:
    """The GPUs the workers share out: those ``CUDA_VISIBLE_DEVICES`` names, else every one nvidia-smi lists."""
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return listed.stdout.split() if listed.returncode == 0 else []


def worker_env(index: int, count: int, gpus: list[str]) -> dict[str, str]:
    """Worker ``index``'s environment: its GPU, its share of the CPU threads."""
    env = {**os.environ, **thread_share(count), ENV_WORKER: str(index + 1)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


def thread_share(count: int) -> dict[str, str]:
    """The CPU threads each of ``count`` processes sharing this machine may use (BLAS and OpenMP pools), unless the
    environment says otherwise: without it every process would start one thread per core. The CPUs counted are those
    this process may use (loky's count, as joblib's: affinity, cgroup quotas of Docker or SLURM)."""
    from joblib.externals.loky import cpu_count

    threads = str(max(1, cpu_count() // count))
    return {var: os.environ.get(var, threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def run_workers(count: int, watch: Callable[[], None]) -> None:
    """Start ``count`` workers running this command and wait for them, calling ``watch()`` about once a second."""
    command = [sys.executable, *sys.orig_argv[1:]]
    gpus = visible_gpus()
    workers = [subprocess.Popen(command, env=worker_env(i, count, gpus)) for i in range(count)]
    try:
        while any(w.poll() is None for w in workers):
            watch()
            time.sleep(1.0)
        watch()
    except BaseException:
        for worker in workers:  # Ctrl-C reached them too (one process group); SIGTERM came to this process alone
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        _reap(workers)
        raise
    failed = [w.returncode for w in workers if w.returncode != 0]
    if len(failed) == count:
        raise SweepError(f"every worker failed (exit codes {', '.join(map(str, failed))}); their output says why")


def _reap(workers: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + STOP_WAIT_S
    for worker in workers:
        try:
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
