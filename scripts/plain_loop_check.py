"""Does the lr_bs_grid preset train like a plain PyTorch loop? Test accuracy cell by cell, side by side.

    .venv/bin/python scripts/plain_loop_check.py                                   # digits, a 4 x 3 grid, 5 epochs
    .venv/bin/python scripts/plain_loop_check.py --data fashion_mnist --root data --epochs 10   # the study's data

The plain loop is what the study's notebook did: an MLP 784-512-10 (ReLU) on pixels / 255, flattened, SGD with
momentum 0.9 and cross-entropy, reshuffled minibatches over the whole training set, test accuracy at the end. The
other column is sweep's trial as the preset composes it (``+experiment=lr_bs_grid``). The two use different random
streams, so cells agree within noise, not to the digit; a cell that trains in one and not the other, or an lr axis
shifted between them, is what this looks for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sweep.data import load_dataset  # noqa: E402
from sweep.trial import run_trial  # noqa: E402
from tests.conftest import trial_config  # noqa: E402 - real Hydra composition of the preset


def plain_loop(data, lr: float, batch_size: int, epochs: int, seed: int) -> float:  # noqa: ANN001
    """The notebook's loop on the same images; returns its test accuracy."""
    torch.manual_seed(seed)
    x, y = data.train.batch(slice(None))
    x = x.flatten(1)
    model = nn.Sequential(nn.Linear(x.shape[1], 512), nn.ReLU(), nn.Linear(512, data.num_classes))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_x, test_y = data.test.batch(slice(None))
    with torch.no_grad():
        return (model(test_x.flatten(1)).argmax(1) == test_y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--root", default="data")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-2, 0.1, 0.5])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[8, 32, 128])
    args = parser.parse_args()
    print("| lr | batch | sweep test_acc | plain loop test_acc | difference |\n|---|---|---|---|---|")
    worst = 0.0
    for lr in args.lr:
        for batch_size in args.batch_size:
            cfg, resolved = trial_config(
                "+experiment=lr_bs_grid", f"data={args.data}", f"data.root={args.root}", f"optimizer.lr={lr}",
                f"train.batch_size={batch_size}", f"train.epochs={args.epochs}", "deepfool.enabled=false",
                "objective=[test_acc]", "mlflow.enabled=false", "train.device=cpu")
            try:
                ours = run_trial(cfg, resolved, Path("/tmp/plain_loop_check"), "check")["test_acc"]
            except Exception as error:  # noqa: BLE001 - a diverged cell is a result here, not a crash
                ours = float("nan")
                print(f"<!-- sweep: {error} -->")
            theirs = plain_loop(load_dataset(cfg.data, torch.device("cpu")), lr, batch_size, args.epochs, seed=0)
            difference = ours - theirs
            worst = max(worst, abs(difference)) if difference == difference else worst
            print(f"| {lr:g} | {batch_size} | {ours:.3f} | {theirs:.3f} | {difference:+.3f} |", flush=True)
    print(f"\nlargest difference: {worst:.3f}")


if __name__ == "__main__":
    main()
