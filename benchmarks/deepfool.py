"""DeepFool speed: sweep's batched implementation vs a per-sample loop vs foolbox, same inputs and models.

    .venv/bin/python benchmarks/deepfool.py [--samples 1000]

Models: the 784-512-10 MLP of the Fashion-MNIST study and a small CNN (two conv blocks of 16 and 32 filters),
trained for 10 epochs on the bundled digits upsampled to 28x28 (no download; test accuracy in the table). Each
method measures the same 1000 inputs; times exclude model training and include everything else. foolbox clips its
iterates to [0, 1], which the paper and sweep do not, so its margins run larger. Each time is the best of up to 3
runs within 30 s. Margins are compared over the samples all three methods fooled (the per-sample loop's, when it
runs on fewer). "other gradient form s" times sweep's DeepFool with the ``replicate`` setting the device does not
use by default (one pass over replicated batches on CPU, per-class backward passes on GPU); "one block s" attacks all
rows at once instead of the CPU's cache-sized blocks.

"arithmetic floor s" is a lower bound on the time any exact implementation could take here: the matrix-product and
convolution FLOPs DeepFool cannot avoid (per sample, a forward pass at x and after every step, and k - 1 input-gradient
backward passes per step, for the steps sweep's implementation took) at the device's measured float32 matrix-product
rate. "loop / floor" is then the most any such implementation could gain over the per-sample loop.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import best_of, devices, digits_28, environment, table  # noqa: E402
from sweep.data import Dataset  # noqa: E402
from sweep.deepfool import deepfool  # noqa: E402
from sweep.models import CNNConfig, MLPConfig, build_model  # noqa: E402
from sweep.optimizers import SGDConfig, build_optimizer  # noqa: E402
from sweep.train import TrainConfig, fit  # noqa: E402
from tests.deepfool_reference import deepfool_one  # noqa: E402


def trained(cfg, data: Dataset, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(cfg, data.input_shape, data.num_classes, (data.mean, data.std)).to(device)
    fit(
        model,
        build_optimizer(SGDConfig(lr=0.01, momentum=0.9), model.parameters()),
        data,
        data.train,
        TrainConfig(epochs=10, batch_size=64),
        [],
    )
    return model.eval()


def matmul_rate(device: torch.device) -> float:
    """FLOP/s of a float32 2048 x 2048 matrix product on ``device``: the arithmetic peak DeepFool's passes can reach."""
    a, b = torch.randn(2, 2048, 2048, device=device)
    seconds, _ = best_of(device, lambda: [a @ b for _ in range(10)], runs=5)
    return 10 * 2 * 2048**3 / seconds


def arithmetic_floor(model: torch.nn.Module, x: torch.Tensor, iterations: torch.Tensor, rate: float) -> float:
    """Seconds the unavoidable FLOPs of exact DeepFool take at ``rate``: see the module docstring."""
    from torch.utils.flop_counter import FlopCounterMode

    row = x[:1].clone().requires_grad_(True)
    with FlopCounterMode(display=False) as forward:
        logits = model(row)
    with FlopCounterMode(display=False) as backward:
        torch.autograd.grad(logits[0, 0], row)
    steps, rows, gaps = int(iterations.sum()), len(x), logits.shape[1] - 1
    flops = (steps + rows) * forward.get_total_flops() + steps * gaps * backward.get_total_flops()
    return flops / rate


def foolbox_norms(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    import foolbox

    fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
    with torch.no_grad():
        labels = model(x).argmax(1)
    attack = foolbox.attacks.L2DeepFoolAttack(steps=50, candidates=None, overshoot=0.02, loss="logits")
    raw, _, success = attack(fmodel, x, foolbox.criteria.Misclassification(labels), epsilons=None)
    return (raw - x).flatten(1).norm(dim=1).where(success, float("nan"))


def per_sample(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Norms of the reference implementation's perturbations, NaN where it did not fool the model."""
    runs = [deepfool_one(model, sample) for sample in x]
    return torch.tensor([norm if steps < 50 else float("nan") for norm, steps in runs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--loop-samples", type=int, default=None, help="per-sample loop on fewer, scaled up")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the CPU, then the GPU if any)")
    args = parser.parse_args()
    rows = []
    for device in devices(args.device):
        rate = matmul_rate(device)
        print(f"{device.type}: float32 matrix products at {rate / 1e9:.0f} GFLOP/s", flush=True)
        data = digits_28(device)
        x, _ = data.train.batch(slice(0, args.samples))
        models = {"MLP 784-512-10": MLPConfig(hidden_dims=[512]), "CNN 16-32": CNNConfig(channels=[16, 32])}
        for label, cfg in models.items():
            model = trained(cfg, data, device)
            deepfool(model, x[:32])  # warm-up (allocator, kernels)
            t_ours, ours = best_of(device, deepfool, model, x)
            other = device.type != "cuda"  # the gradient form this device does not use by default
            t_other, _ = best_of(device, functools.partial(deepfool, replicate=other), model, x)
            one_block = functools.partial(deepfool, batch_size=len(x))  # a GPU's default already: CPU only
            t_block = best_of(device, one_block, model, x)[0] if device.type == "cpu" else None
            t_floor = arithmetic_floor(model, x, ours.iterations, rate)
            n = args.loop_samples or args.samples
            t_loop, loop = best_of(device, per_sample, model, x[:n])
            t_loop *= args.samples / n
            t_fb, fb = best_of(device, foolbox_norms, model, x)
            both = ours.success[:n].cpu() & loop.isfinite() & fb[:n].cpu().isfinite()  # fooled by all three
            with torch.no_grad():
                x_test, y_test = data.test.batch(slice(None))
                accuracy = (model(x_test).argmax(1) == y_test).float().mean()
            rows.append(
                [
                    device.type,
                    label,
                    f"{accuracy:.3f}",
                    f"{t_ours:.2f}",
                    f"{t_other:.2f}",
                    "-" if t_block is None else f"{t_block:.2f}",
                    f"{t_floor:.2f}",
                    f"{t_loop:.2f}",
                    f"{t_fb:.2f}",
                    f"{t_loop / t_ours:.1f}x",
                    f"{t_loop / t_floor:.1f}x",
                    f"{t_fb / t_ours:.1f}x",
                    f"{int(both.sum())}/{n}",
                    " / ".join(f"{norms[:n].cpu()[both].mean():.4f}" for norms in (ours.norm, loop, fb)),
                ]
            )
            print(rows[-1], flush=True)
    print(f"\nDeepFool on {args.samples} samples ({environment()})\n")
    print(
        table(
            [
                "device",
                "model",
                "test acc",
                "sweep s",
                "other gradient form s",
                "one block s",
                "arithmetic floor s",
                "per-sample loop s",
                "foolbox s",
                "vs loop",
                "loop / floor",
                "vs foolbox",
                "fooled by all",
                "their mean L2 margin (sweep / loop / foolbox)",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
