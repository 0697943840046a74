"""What the report costs a sweep of a foreign app, with and without it, and ``sweep-report`` on its study:

- short: the 20-trial TPE sweep of ``sweeper/tests/apps/sphere`` (two params), over in about a second: too short
  for a live report, the sweep writes its report at the end;
- longer: 20 trials of ``sweeper/tests/apps/sleepy`` of 0.5 s each: the live report's writer runs beside the trials
  and writes the final page at the end.

Both on a journal storage with the in-process launcher.

    .venv/bin/python benchmarks/report.py [--repeats 3]
    PYTHONPATH=<another version's sweeper/src> .venv/bin/python benchmarks/report.py   # that version, for comparison

"without the report" is the sweep as hydra-optuna-sweeper runs it (its results file, no report): the same command
through a wrapper that replaces the sweeper's report writer with one that writes the results file only, and starts
no live report writer. Each time is the best of ``--repeats`` interleaved runs (this shared machine's timings drift
by up to 1.5x); CPU seconds include the processes a command starts. Torch-free: it needs the sweeper alone.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "sweeper" / "tests" / "apps"
SWEEPS = {  # name: the command's app and overrides
    "short": [str(APPS / "sphere" / "sphere.py")],
    "longer": [str(APPS / "sleepy" / "sleepy.py"), "point=range(0,20)", "seconds=0.5"],
}
# The sweep as hydra-optuna-sweeper runs it: the results file and no report, the rest unchanged.
NO_REPORT = """
import runpy, sys
import hydra_plugins.hydra_optuna_studies._sweeper as sweeper
from hydra_optuna_studies.results import write_yaml
try:
    import hydra_optuna_studies.live as live
    live.LIVE_AFTER_S = 1e9
except ImportError:  # a version from before the live report, measured for a before/after comparison
    pass
sweeper.write_report = lambda study, summary, out, *rest, **kw: write_yaml(summary, out / "optimization_results.yaml")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def seconds(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``command``, its own processes' CPU included (the CPU time is what a loaded machine
    changes least)."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def sweep(app: list[str], folder: Path, report: bool) -> tuple[float, float]:
    prefix = [sys.executable] if report else [sys.executable, "-c", NO_REPORT]
    return seconds([*prefix, app[0], "-m", f"hydra.sweep.dir={folder}", *app[1:]], folder.parent)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="each time is the best of this many runs")
    args = parser.parse_args()
    tool = str(Path(sys.executable).parent / "sweep-report")
    rows = []
    for name, app in SWEEPS.items():
        times: dict[str, list[tuple[float, float]]] = {"without": [], "with": [], "sweep-report": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                base = Path(tmp)
                times["without"].append(sweep(app, base / "plain", report=False))
                times["with"].append(sweep(app, base / "reported", report=True))
                journal = str(base / "reported" / "optuna.journal")
                times["sweep-report"].append(seconds([tool, "--storage", journal, "--out", str(base / "again")],
                                                     base))
        for kind in (0, 1):
            best = {key: min(value[kind] for value in values) for key, values in times.items()}
            rows.append([name, "wall" if kind == 0 else "CPU", *(f"{best[key]:.2f}" for key in times),
                         f"{best['with'] - best['without']:.2f}"])
    print(table(["sweep", "seconds", "sweep without report", "sweep with report", "sweep-report",
                 "the report's share"], rows))
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, best of {args.repeats}, load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
