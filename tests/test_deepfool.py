"""DeepFool against an exact oracle, an independent per-sample implementation, and the trial's measurement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.data import DataConfig, load_dataset
from sweep.deepfool import DeepFoolConfig, deepfool, measure
from sweep.models import CNNConfig, MLPConfig, build_model
from sweep.optimizers import SGDConfig, build_optimizer
from sweep.train import TrainConfig, fit
from tests.conftest import CUDA
from tests.deepfool_reference import deepfool_one

CPU = torch.device("cpu")


@pytest.mark.parametrize("replicate", [False, True], ids=["per-class-backward", "replicated-batch"])
def test_linear_model_matches_closed_form_in_one_step(replicate: bool) -> None:
    """For f(x) = Wx + b the minimal L2 step is min_k |f_k - f_y| / ||w_k - w_y||, reached in one iteration."""
    gen = torch.Generator().manual_seed(0)
    dim, classes, overshoot = 64, 10, 0.02
    model = nn.Linear(dim, classes).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, dim, generator=gen, dtype=torch.float64) * 0.05)
        model.bias.copy_(torch.randn(classes, generator=gen, dtype=torch.float64) * 3)
    x = torch.rand(256, dim, generator=gen, dtype=torch.float64)
    result = deepfool(model, x, overshoot=overshoot, replicate=replicate)

    logits = model(x).detach()
    y = logits.argmax(1)
    w, f = model.weight.detach(), logits
    dist = (f - f.gather(1, y[:, None])).abs() / (w[None] - w[y][:, None]).norm(dim=2)
    dist[torch.arange(len(y)), y] = float("inf")
    expected = (1 + overshoot) * dist.min(dim=1).values
    torch.testing.assert_close(result.norm, expected, rtol=1e-4, atol=0)
    assert (result.iterations == 1).all() and result.success.all()
    torch.testing.assert_close(result.rho, result.norm / x.norm(dim=1))


def test_candidates_restrict_the_search_to_top_k_classes() -> None:
    gen = torch.Generator().manual_seed(1)
    model = nn.Linear(20, 10).double()
    x = torch.rand(64, 20, generator=gen, dtype=torch.float64)
    full = deepfool(model, x)
    top2 = deepfool(model, x, candidates=2)
    assert (top2.norm >= full.norm - 1e-9).all()  # fewer candidates can only find a farther boundary
    assert top2.success.all()


@pytest.fixture(scope="module")
def trained() -> dict[str, nn.Module]:
    """An MLP and a CNN trained a few epochs on digits: real, non-linear decision boundaries."""
    data = load_dataset(DataConfig(name="digits"), CPU)
    models = {}
    for name, cfg in (("mlp", MLPConfig(hidden_dims=[64])), ("cnn", CNNConfig(channels=[8, 16], hidden_dims=[32]))):
        torch.manual_seed(0)
        model = build_model(cfg, data.input_shape, data.num_classes, data.mean, data.std)
        optimizer = build_optimizer(SGDConfig(lr=0.05, momentum=0.9), model.parameters())
        fit(model, optimizer, data, data.train, TrainConfig(epochs=4, batch_size=32), [])
        models[name] = model
    return models


@pytest.mark.parametrize("replicate", [False, True], ids=["per-class-backward", "replicated-batch"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_agrees_with_per_sample_reference_within_one_percent(trained: dict, name: str, replicate: bool) -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    x, _ = data.train.batch(slice(0, 60))
    model = trained[name]
    batched = deepfool(model, x, replicate=replicate)
    reference = torch.tensor([deepfool_one(model, sample)[0] for sample in x])
    assert batched.success.all()
    assert abs(batched.norm.mean() / reference.mean() - 1) < 0.01
    torch.testing.assert_close(batched.norm, reference.float(), rtol=0.05, atol=1e-3)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_successful_perturbations_change_the_prediction(trained: dict, name: str) -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    x, _ = data.test.batch(slice(0, 200))
    model = trained[name]
    result = deepfool(model, x)
    with torch.no_grad():
        before = model(x).argmax(1)
        after = model(result.perturbed).argmax(1)
    assert result.success.float().mean() > 0.99
    assert (after[result.success] != before[result.success]).all()
    assert torch.equal(result.original, before)


def test_measured_in_eval_mode_and_mode_restored() -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    torch.manual_seed(0)
    cfg = CNNConfig(channels=[4], batchnorm=True, dropout=0.5, hidden_dims=[16])
    model = build_model(cfg, data.input_shape, data.num_classes, data.mean, data.std)
    fit(model, build_optimizer(SGDConfig(lr=0.05), model.parameters()), data, data.train, TrainConfig(epochs=1), [])
    x, _ = data.val.batch(slice(0, 30))
    model.train()
    in_train_mode = deepfool(model, x)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    model.eval()
    in_eval_mode = deepfool(model, x)
    assert not model.training
    torch.testing.assert_close(in_train_mode.norm, in_eval_mode.norm)  # dropout off, batchnorm running stats


def test_measure_counts_misclassified_apart(trained: dict) -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    model = trained["mlp"]
    cfg = DeepFoolConfig(samples=300, split="test", batch_size=128)
    stats = measure(model, data, cfg)
    index = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(cfg.seed))[:300]
    x, y = data.test.batch(index)
    with torch.no_grad():
        wrong = model(x).argmax(1) != y
    result = deepfool(model, x)
    ok = result.success & ~wrong
    assert stats["deepfool_misclassified"] == wrong.sum().item() > 0
    assert stats["deepfool_margin"] == pytest.approx(result.norm[ok].mean().item(), rel=1e-5)
    assert stats["deepfool_rho"] == pytest.approx(result.rho[ok].mean().item(), rel=1e-5)
    assert stats["deepfool_success_rate"] == pytest.approx(result.success.float().mean().item())
    assert stats["deepfool_seconds"] > 0


def test_bad_arguments_are_refused() -> None:
    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="deepfool.candidates"):
        deepfool(model, torch.rand(2, 4), candidates=1)
    with pytest.raises(ValueError, match="deepfool.overshoot"):
        deepfool(model, torch.rand(2, 4), overshoot=-1)


@CUDA
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_cuda_margins_match_cpu(trained: dict, name: str) -> None:
    """The same model and inputs on the GPU find the same perturbations (up to float rounding)."""
    import copy

    data = load_dataset(DataConfig(name="digits"), CPU)
    x, _ = data.train.batch(slice(0, 200))
    on_cpu = deepfool(trained[name], x)
    on_gpu = deepfool(copy.deepcopy(trained[name]).cuda(), x.cuda())
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"  # the TF32 default is back after the measurement
    assert on_gpu.norm.device.type == "cuda"
    assert torch.equal(on_gpu.original.cpu(), on_cpu.original)
    both = on_cpu.success & on_gpu.success.cpu()
    assert both.float().mean() > 0.99
    assert abs(on_gpu.norm.cpu()[both].mean().item() / on_cpu.norm[both].mean().item() - 1) < 1e-3
