"""Stacked trials vs the same trials one after another: study 1's eight learning rates trained as stacks.

    .venv/bin/python benchmarks/stacked.py [--epochs 2] [--device cuda] [--models mlp cnn] [--batch-sizes 16 64 256]
    .venv/bin/python benchmarks/stacked.py --sizes 1 2 4 8 16     # the speed-up per stack size (MLP)

Study 1's grid row: SGD with momentum 0.9 at learning rates 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1 and 0.5, pixels fed
as they are, on the 784-512-10 MLP and on sweep's small CNN (``model=cnn``: two blocks of two 3x3 conv layers with 32
and 64 filters, a 128-unit hidden layer), at batch sizes 16, 64 and 256. The data are the bundled digits upsampled to
28x28 (``benchmarks/common.py``; 1,293 training images), not Fashion-MNIST's 60,000: a step costs what it costs on
Fashion-MNIST, epochs are 46x shorter. "sequential" trains the trials one by one as ``run_trial`` does
(``sweep.train.fit``); the stacked runs cut them into stacks of at most ``stack_cap`` trials (``sweep.stacked.memory``)
and into one stack of all 8, each trained with ``fit_stacked``. All include building and initialising the models;
each time is the fastest of ``--runs`` rounds that run the three in turn (this shared machine's timings drift). The
last column is the largest difference between the sequential and stacked runs' final metrics (0 on the CPU: stacking
is exact there).

``--sizes`` measures how the time per trial falls with the stack size instead (the MLP, one stack of T trials vs T
sequential trials): where it stops falling is what ``memory.py``'s CPU budget rests on.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import best_of, devices, digits_28, environment, table, timed  # noqa: E402
from sweep.config import CNNConfig, DataConfig, InitConfig, MLPConfig, SGDConfig, TrainConfig, TrialConfig  # noqa: E402
from sweep.data import Dataset  # noqa: E402
from sweep.errors import TrialDiverged  # noqa: E402
from sweep.init import init_weights  # noqa: E402
from sweep.models import build_model  # noqa: E402
from sweep.optimizers import build_optimizer  # noqa: E402
from sweep.stacked.loop import Trained, fit_stacked  # noqa: E402
from sweep.stacked.memory import split, stack_cap  # noqa: E402
from sweep.train import fit  # noqa: E402

LEARNING_RATES = (1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5)
MODELS = {"mlp": lambda: MLPConfig(hidden_dims=[512]), "cnn": CNNConfig}
Finals = list[dict[str, float] | None]  # each trial's last epoch's metrics; None where it diverged


def configs(model: str, batch_size: int, epochs: int, device: torch.device, rates: tuple[float, ...],
            subset: int | None = None) -> list[TrialConfig]:
    """Study 1's trials: one per learning rate, otherwise alike."""
    return [TrialConfig(name="bench", objective=["test_acc"], data=DataConfig(preprocess="pixels", train_subset=subset),
                        model=MODELS[model](), optimizer=SGDConfig(lr=lr, momentum=0.9), init=InitConfig(),
                        train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=i, device=str(device)))
            for i, lr in enumerate(rates)]


def sequential(cfgs: list[TrialConfig], data: Dataset) -> Finals:
    """The trials one by one, each built, initialised and trained as ``run_trial`` does."""
    finals: Finals = []
    for cfg in cfgs:
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, data.input_shape, data.num_classes, None).to(data.train.y.device)
        init_weights(model, cfg.init)
        try:
            result = fit(model, build_optimizer(cfg.optimizer, model.parameters()), data,
                         data.train.head(cfg.data.train_subset), cfg.train, [])
            finals.append(result.history[-1])
        except TrialDiverged:
            finals.append(None)
    return finals


_WORKER_DATA: Dataset | None = None  # each parallel worker's copy of the data, made before the clock starts


def _worker_init(side: int) -> None:
    global _WORKER_DATA
    torch.set_num_threads(max(1, torch.get_num_threads() // 2))  # two processes share the cores
    _WORKER_DATA = digits_28(torch.device("cpu"), side=side)


def _worker_fit(cfg: TrialConfig) -> dict[str, float] | None:
    assert _WORKER_DATA is not None
    return sequential([cfg], _WORKER_DATA)[0]


class Parallel:
    """Two worker processes, each training trials one by one on half the threads: the baseline of running a
    sweep's trials side by side (hydra/launcher=joblib n_jobs=2) instead of stacking them."""

    def __init__(self) -> None:
        import multiprocessing

        self.pool = multiprocessing.get_context("spawn").Pool(2, initializer=_worker_init, initargs=(28,))
        self.pool.map(_worker_fit, [])  # started, data loaded

    def __call__(self, cfgs: list[TrialConfig], data: Dataset) -> Finals:
        return self.pool.map(_worker_fit, cfgs, chunksize=1)


def stacked(cfgs: list[TrialConfig], data: Dataset, cap: int) -> Finals:
    """The trials in stacks of at most ``cap``, each stack trained with ``fit_stacked``."""
    outcomes = [o for stack in split(cfgs, cap) for o in fit_stacked(stack, data)]
    return [o.result.history[-1] if isinstance(o, Trained) else None for o in outcomes]


def difference(a: Finals, b: Finals) -> float:
    """The largest absolute difference between two runs' final metrics (inf where only one run diverged)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if (x is None) != (y is None):
            return math.inf
        if x is not None and y is not None:
            worst = max(worst, *(abs(x[k] - y[k]) for k in x if not k.endswith("seconds")))
    return worst


def warm_up(model: str, batch_size: int, device: torch.device, data: Dataset) -> None:
    """One short run of each method, with batches shaped as the timed runs' (a full one, then the epoch's last):
    first-call costs (kernel selection, the products' one-time checks per shape) stay out of the timings."""
    subset = batch_size + (len(data.train) % batch_size or batch_size)
    cfgs = configs(model, batch_size, 1, device, LEARNING_RATES, subset=subset)
    sequential(cfgs[:1], data)
    for size in {stack_cap(cfgs[0], data), len(cfgs)}:
        stacked(cfgs, data, size)


def interleaved(device: torch.device, calls: list[tuple[Any, ...]], runs: int) -> list[tuple[float, Any]]:
    """(fastest seconds, result) of each ``(fn, *args)`` over ``runs`` rounds that call each once in turn: a burst
    of load from another process on this shared machine then slows one round of every method, not all of one's."""
    best: list[tuple[float, Any]] = [(math.inf, None)] * len(calls)
    for _ in range(runs):
        for i, (fn, *args) in enumerate(calls):
            seconds, result = timed(device, fn, *args)
            best[i] = min(best[i], (seconds, result), key=lambda pair: pair[0])
    return best


def compare(args: argparse.Namespace) -> None:
    rows = []
    parallel = Parallel() if "cpu" in {d.type for d in devices(args.device)} else None
    for device in devices(args.device):
        data = digits_28(device)
        for model in args.models:
            for batch_size in args.batch_sizes:
                warm_up(model, batch_size, device, data)
                cfgs = configs(model, batch_size, args.epochs, device, LEARNING_RATES)
                cap = min(len(cfgs), stack_cap(cfgs[0], data))
                runs = [(sequential, cfgs, data), (stacked, cfgs, data, cap), (stacked, cfgs, data, len(cfgs))]
                if parallel is not None and device.type == "cpu":
                    runs.append((parallel, cfgs, data))
                (t_seq, seq), (t_cap, capped), (t_one, one), *two = interleaved(device, runs, args.runs)
                rows.append([device.type, model, batch_size, f"{t_seq:.2f}",
                             f"{two[0][0]:.2f} ({t_seq / two[0][0]:.2f}x)" if two else "-", cap,
                             f"{t_cap:.2f}", f"{t_seq / t_cap:.2f}x", f"{t_one:.2f}", f"{t_seq / t_one:.2f}x",
                             f"{max(difference(seq, capped), difference(seq, one)):.1e}"])
                print(rows[-1], flush=True)
    print(f"\n8 trials (study 1's learning rates), {args.epochs} epoch(s) of 1,293 images 28x28 ({environment()})\n")
    print(table(["device", "model", "batch", "sequential s", "2 processes s", "stack_cap", "stacks of stack_cap s",
                 "speed-up", "one stack of 8 s", "speed-up", "max |diff| of final metrics"], rows))


def sizes(args: argparse.Namespace) -> None:
    rows = []
    for device in devices(args.device):
        data = digits_28(device)
        for batch_size in args.batch_sizes:
            warm_up("mlp", batch_size, device, data)
            one = configs("mlp", batch_size, args.epochs, device, LEARNING_RATES[:2])
            t_seq = best_of(device, sequential, one, data)[0] / len(one)
            for size in args.sizes:  # learning rates that never diverge: every trial stays to the end
                cfgs = configs("mlp", batch_size, args.epochs, device, (LEARNING_RATES[:4] * size)[:size])
                per_trial = best_of(device, stacked, cfgs, data, size)[0] / size
                rows.append([device.type, batch_size, size, f"{t_seq:.3f}", f"{per_trial:.3f}",
                             f"{t_seq / per_trial:.2f}x"])
                print(rows[-1], flush=True)
    print(f"\nMLP 784-512-10, {args.epochs} epoch(s) of 1,293 images 28x28, per trial ({environment()})\n")
    print(table(["device", "batch", "trials in the stack", "sequential s/trial", "stacked s/trial", "speed-up"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mlp", "cnn"])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the CPU, then the GPU if any)")
    parser.add_argument("--runs", type=int, default=3, help="rounds; each time is the fastest round's")
    parser.add_argument("--sizes", type=int, nargs="*", help="stack sizes to time instead (MLP), e.g. 1 2 4 8 16")
    args = parser.parse_args()
    (sizes if args.sizes else compare)(args)


if __name__ == "__main__":
    main()
