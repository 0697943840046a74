"""Trainer speed: sweep's trainer vs the plain notebook loop, same model, data, epochs and seed.

    .venv/bin/python benchmarks/trainer.py [--epochs 3]

The plain loop is what most notebooks do: a ``DataLoader`` over a ``TensorDataset`` of float inputs and
``loss.item()`` every step, then an evaluation pass per epoch through DataLoaders too. sweep's trainer indexes
uint8 tensors already on the device, keeps running sums on the device and reads them once per epoch. Both
evaluate validation and test sets every epoch. Two workloads: sweep's default trial (the 64-128-10 MLP on the
bundled 8x8 digits) and the 784-512-10 MLP of the Fashion-MNIST study (on the digits upsampled to 28x28); the
training split is repeated 4x (5,176 images) so epochs are long enough to time. Times are wall-clock for all
epochs, after one warm-up epoch each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import devices, digits_28, environment, table, timed  # noqa: E402
from sweep.data import Dataset, Split  # noqa: E402
from sweep.models import MLPConfig, build_model  # noqa: E402
from sweep.optimizers import SGDConfig, build_optimizer  # noqa: E402
from sweep.train import TrainConfig, fit  # noqa: E402


def fresh(data: Dataset, width: int, device: torch.device):
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden_dims=[width]), data.input_shape, 10, (data.mean, data.std)).to(device)
    return model, build_optimizer(SGDConfig(lr=0.02, momentum=0.9), model.parameters())


def plain_loop(data: Dataset, width: int, device: torch.device, epochs: int, batch_size: int) -> float:
    """The notebook baseline; returns the final test accuracy."""
    model, optimizer = fresh(data, width, device)

    def loader(split: Split, shuffle: bool) -> DataLoader:
        x, y = split.batch(slice(None))
        return DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch_size, shuffle=shuffle)

    train, val, test = loader(data.train, True), loader(data.val, False), loader(data.test, False)
    accuracy = 0.0
    for _ in range(epochs):
        model.train()
        running = 0.0
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        model.eval()
        with torch.no_grad():
            for split in (val, test):
                correct = total = 0
                for x, y in split:
                    x, y = x.to(device), y.to(device)
                    correct += (model(x).argmax(1) == y).sum().item()
                    total += len(y)
                accuracy = correct / total
    return accuracy


def sweep_trainer(data: Dataset, width: int, device: torch.device, epochs: int, batch_size: int) -> float:
    model, optimizer = fresh(data, width, device)
    result = fit(model, optimizer, data, data.train, TrainConfig(epochs=epochs, batch_size=batch_size), [])
    return result.history[-1]["test_acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 128, 512])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the CPU, then the GPU if any)")
    args = parser.parse_args()
    rows = []
    for device in devices(args.device):
        workloads = {"MLP 64-128-10, 8x8": (digits_28(device, copies=4, side=8), 128),
                     "MLP 784-512-10, 28x28": (digits_28(device, copies=4), 512)}
        for label, (data, width) in workloads.items():
            for batch_size in args.batch_sizes:
                common = (data, width, device)
                plain_loop(*common, 1, batch_size)  # warm-up
                sweep_trainer(*common, 1, batch_size)
                t_plain, acc_plain = timed(device, plain_loop, *common, args.epochs, batch_size)
                t_ours, acc_ours = timed(device, sweep_trainer, *common, args.epochs, batch_size)
                rows.append([device.type, label, batch_size, f"{t_plain:.2f}", f"{t_ours:.2f}",
                             f"{t_plain / t_ours:.2f}x", f"{acc_plain:.3f} / {acc_ours:.3f}"])
                print(rows[-1], flush=True)
    print(f"\n{args.epochs} epochs on 5,176 training images ({environment()})\n")
    print(table(["device", "model", "batch", "plain loop s", "sweep s", "speed-up", "test acc (plain / sweep)"],
                rows))


if __name__ == "__main__":
    main()
