"""DeepFool against an exact oracle, an independent per-sample implementation, and the trial's measurement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.data import DataConfig, load_dataset
from sweep.deepfool import deepfool
from sweep.measures.deepfool import DeepFoolConfig, margins
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
        model = build_model(cfg, data.input_shape, data.num_classes, (data.mean, data.std))
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


@pytest.mark.parametrize("replicate", [False, True], ids=["per-class-backward", "replicated-batch"])
def test_success_is_exactly_a_changed_prediction_when_steps_run_out(trained: dict, replicate: bool) -> None:
    """With one step allowed some samples do not cross: those fooled and those not are both reported truly."""
    data = load_dataset(DataConfig(name="digits"), CPU)
    x, _ = data.test.batch(slice(0, 200))
    model = trained["cnn"]
    result = deepfool(model, x, max_iter=1, replicate=replicate)
    with torch.no_grad():
        changed = model(result.perturbed).argmax(1) != model(x).argmax(1)
    assert 0 < result.success.sum() < len(x)
    assert torch.equal(result.success, changed)
    assert (result.iterations == 1).all()


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_blocks_of_rows_give_the_whole_batch_result(trained: dict, name: str) -> None:
    """Attacking the batch in blocks (as on a CPU by default, or with batch_size) changes nothing but speed."""
    data = load_dataset(DataConfig(name="digits"), CPU)
    x, _ = data.train.batch(slice(0, 150))
    model = trained[name]
    whole = deepfool(model, x, batch_size=len(x))
    for blocks in (deepfool(model, x, batch_size=17), deepfool(model, x, batch_size=100)):
        torch.testing.assert_close(blocks.norm, whole.norm, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(blocks.perturbed, whole.perturbed, rtol=1e-4, atol=1e-6)
        assert torch.equal(blocks.success, whole.success) and torch.equal(blocks.original, whole.original)
        assert torch.equal(blocks.iterations, whole.iterations)


@pytest.mark.parametrize("replicate", [False, True], ids=["per-class-backward", "replicated-batch"])
def test_cpu_attacks_in_cache_sized_blocks(replicate: bool) -> None:
    """On a CPU, by default, no pass holds an activation over 8 MB (so it stays in cache and in malloc's reuse)."""
    torch.manual_seed(0)
    model = build_model(CNNConfig(channels=[16], hidden_dims=[]), (1, 28, 28), 10, (torch.zeros(1), torch.ones(1)))
    largest = {"rows": 0, "bytes": 0}

    def record(_module: nn.Module, _args: object, out: torch.Tensor) -> None:
        largest["rows"] = max(largest["rows"], len(out))
        largest["bytes"] = max(largest["bytes"], out.numel() * out.element_size())

    for layer in model:
        layer.register_forward_hook(record)
    deepfool(model, torch.rand(400, 1, 28, 28), max_iter=2, replicate=replicate)
    assert 100 < largest["rows"] < 400  # 16 x 28 x 28 floats a row: 167 rows (or 18 rows of 9 copies) make 8 MB
    assert largest["bytes"] <= 8 << 20


def test_measured_in_eval_mode_and_mode_restored() -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    torch.manual_seed(0)
    cfg = CNNConfig(channels=[4], batchnorm=True, dropout=0.5, hidden_dims=[16])
    model = build_model(cfg, data.input_shape, data.num_classes, (data.mean, data.std))
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
    stats = margins(model, data, cfg)
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
    with pytest.raises(ValueError, match="deepfool.batch_size"):
        deepfool(model, torch.rand(2, 4), batch_size=0)
    with pytest.raises(ValueError, match="empty batch"):
        deepfool(model, torch.rand(0, 4))


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
