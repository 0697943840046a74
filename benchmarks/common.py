"""Helpers shared by the benchmarks: timing with device synchronisation, and a Markdown table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from sweep.data import DataConfig, Dataset, Split, load_dataset


def timed(device: torch.device, fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """(seconds, result) of ``fn(*args)``, waiting for queued GPU work before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def best_of(device: torch.device, fn: Callable[..., Any], *args: Any, runs: int = 3, budget_s: float = 30.0):
    """(fastest seconds, result) over up to ``runs`` calls, stopping once ``budget_s`` is spent.

    Short timings on a shared 2-core machine vary by 2x from run to run; every method measured gets the same rule.
    """
    best, spent = float("inf"), 0.0
    for _ in range(runs):
        seconds, result = timed(device, fn, *args)
        best, spent = min(best, seconds), spent + seconds
        if spent >= budget_s:
            break
    return best, result


def devices(only: str | None = None) -> list[torch.device]:
    """``only`` as a device (``--device cuda`` on a GPU machine), else the CPU and, where there is one, the GPU."""
    if only:
        return [torch.device(only)]
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> str:
    threads = torch.get_num_threads()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"torch {torch.__version__}, {threads} CPU threads, {gpu}"


def digits_28(device: torch.device, copies: int = 1, side: int = 28) -> Dataset:
    """The bundled digits upsampled to MNIST's 28x28 (uint8, like every sweep data set), no download.

    ``copies`` repeats the training split to make epochs long enough to time.
    """
    small = load_dataset(DataConfig(name="digits"), torch.device("cpu"))

    def up(split: Split, repeat: int = 1) -> Split:
        x = F.interpolate(split.x.float(), size=(side, side), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 16).to(torch.uint8).repeat(repeat, 1, 1, 1)
        return Split(x.to(device), split.y.repeat(repeat).to(device), split.scale, split.rows.repeat(repeat))

    return Dataset(up(small.train, copies), up(small.val), up(small.test), 10, small.mean.to(device),
                   small.std.to(device))
