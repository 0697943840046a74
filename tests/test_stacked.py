"""Stacked trials: every trial of a stack trains as its own unstacked run would, to float32 exactness on the CPU.

Each test trains the same configs twice, one by one through ``sweep.train.fit`` (as ``run_trial`` builds them) and
together through ``fit_stacked``, and holds every per-epoch metric to 1e-5 relative and the final weights (and
batchnorm statistics) to 1e-5; on this machine they agree bitwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sweep.config import DataConfig, TrialConfig
from sweep.data import Dataset, load_dataset
from sweep.errors import TrialDiverged
from sweep.init import init_weights
from sweep.models import build_model
from sweep.optimizers import build_optimizer
from sweep.stacked.dropout import dropout, trial_stream
from sweep.stacked.key import stack_key
from sweep.stacked.loop import Outcome, Trained, fit_stacked
from sweep.stacked.memory import split, stack_cap, trial_bytes
from sweep.train import FitResult, fit
from tests.conftest import CUDA, trial_config

CPU = torch.device("cpu")
SMALL_MLP = ("model.hidden_dims=[32,16]", "train.epochs=2", "train.batch_size=64")
SMALL_CNN = ("model=cnn", "model.channels=[4,8]", "model.hidden_dims=[16]", "train.epochs=2", "train.batch_size=64")

Expected = tuple[FitResult, nn.Module] | Exception


def _configs(common: Sequence[str], *trials: Sequence[str]) -> list[TrialConfig]:
    return [trial_config(*common, *overrides)[0] for overrides in trials]


def _unstacked(cfg: TrialConfig, data: Dataset, on_epoch: Sequence[Callable[..., None]] = (),
               on_eval: Sequence[Callable[..., None]] = ()) -> Expected:
    """One trial trained alone, built as ``run_trial`` builds it: its result and model, or what it raised."""
    torch.manual_seed(cfg.train.seed)
    stats = (data.mean, data.std) if cfg.data.preprocess == "standardize" else None
    model = build_model(cfg.model, data.input_shape, data.num_classes, stats)
    init_weights(model, cfg.init)
    model.to(data.train.y.device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    try:
        return fit(model, optimizer, data, data.train.head(cfg.data.train_subset), cfg.train, list(on_epoch),
                   on_eval), model
    except Exception as error:  # noqa: BLE001 - the stacked run must end the same trial with the same error
        return error


def _assert_same(expected: Expected, outcome: Outcome, rel: float = 1e-5, abs_: float = 1e-12) -> None:
    if isinstance(expected, Exception):
        assert type(outcome) is type(expected) and str(outcome) == str(expected)
        return
    result, model = expected
    assert isinstance(outcome, Trained), outcome
    assert outcome.result.stopped == result.stopped
    for mine, theirs in [*zip(outcome.result.history, result.history, strict=True),
                         *zip(outcome.result.evaluations, result.evaluations, strict=True)]:
        assert mine.keys() == theirs.keys()
        for key in theirs.keys() - {"epoch_seconds", "seconds"}:  # wall-clock: the stack's trials share it
            assert mine[key] == pytest.approx(theirs[key], rel=rel, abs=abs_), key
    _assert_close(outcome.model.state_dict(), model.state_dict(), rel)
    assert (outcome.result.best_state is None) == (result.best_state is None)
    if result.best_state is not None and outcome.result.best_state is not None:
        _assert_close(outcome.result.best_state, result.best_state, rel)


def _assert_close(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], rel: float) -> None:
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        torch.testing.assert_close(mine[key], value, rtol=rel, atol=rel * 1e-2, msg=key)


def _check(cfgs: list[TrialConfig], on_epoch: Sequence[Callable[..., None]] | None = None, rel: float = 1e-5,
           abs_: float = 1e-12, device: torch.device = CPU) -> list[Outcome]:
    """Train ``cfgs`` alone and as one stack; assert every trial's numbers agree; return the stack's outcomes."""
    data = load_dataset(cfgs[0].data, device)
    callbacks = on_epoch or [None] * len(cfgs)
    expected = [_unstacked(cfg, data, [cb] if cb else []) for cfg, cb in zip(cfgs, callbacks, strict=True)]
    outcomes = fit_stacked(cfgs, data, on_epoch=on_epoch)
    for want, got in zip(expected, outcomes, strict=True):
        _assert_same(want, got, rel, abs_)
    return outcomes


def test_an_mlp_stack_of_sgd_trials_trains_each_trial_as_alone() -> None:
    """Learning rates, momentum (0 too), weight decay, init schemes, seeds, dropout and per-layer activations."""
    cfgs = _configs(
        (*SMALL_MLP, "model.activation=[relu,tanh]"),
        ("optimizer.lr=0.05", "train.seed=0"),
        ("optimizer.lr=0.2", "optimizer.momentum=0.0", "train.seed=1", "init=kaiming_normal"),
        ("optimizer.lr=0.01", "optimizer.weight_decay=0.001", "init=normal", "init.std=0.1", "train.seed=2",
         "model.dropout=[0.3,0.0]"),
        ("optimizer.lr=0.1", "model.input_dropout=0.2", "model.dropout=0.5", "init=xavier_uniform", "train.seed=3"),
        ("model.keep_prob=[0.9,0.8,0.7]", "init=heuristic", "train.seed=4"),
    )
    assert all(isinstance(o, Trained) for o in _check(cfgs))


@pytest.mark.parametrize(
    "optimizer",
    [
        ("optimizer.nesterov=true", "optimizer.lr=0.05", "optimizer.lr=0.01 optimizer.momentum=0.5"),
        ("optimizer=adam", "optimizer.lr=0.003", "optimizer.lr=0.01 optimizer.betas=[0.8,0.99] optimizer.eps=1e-6",
         "optimizer.weight_decay=0.01"),
        ("optimizer=adam optimizer.amsgrad=true", "optimizer.lr=0.003", "optimizer.lr=0.01 optimizer.weight_decay=0.1"),
        ("optimizer=adamw", "optimizer.lr=0.003", "optimizer.lr=0.01 optimizer.weight_decay=0.0"),
        ("optimizer=rmsprop", "optimizer.lr=0.001", "optimizer.alpha=0.9 optimizer.weight_decay=0.001"),
        ("optimizer=rmsprop optimizer.momentum=0.9 optimizer.centered=true", "optimizer.lr=0.001",
         "optimizer.momentum=0.5 optimizer.eps=1e-5"),
    ],
    ids=["sgd-nesterov", "adam", "adam-amsgrad", "adamw", "rmsprop", "rmsprop-momentum-centered"],
)
def test_each_optimizer_family_steps_every_trial_with_its_own_hyperparameters(optimizer: tuple[str, ...]) -> None:
    family, *trials = optimizer
    cfgs = _configs((*SMALL_MLP, *family.split()),
                    *((*t.split(), f"train.seed={i}", "model.dropout=0.2") for i, t in enumerate(trials)))
    _check(cfgs)


@pytest.mark.parametrize("variant", ["sgd", "adam", "batchnorm"])
def test_a_cnn_stack_trains_each_trial_as_alone(variant: str) -> None:
    common = {"sgd": (), "adam": ("optimizer=adam",), "batchnorm": ("model.batchnorm=true",)}[variant]
    cfgs = _configs((*SMALL_CNN, *common),
                    ("optimizer.lr=0.05" if variant != "adam" else "optimizer.lr=0.003",),
                    ("optimizer.lr=0.01", "train.seed=1", "init=kaiming_normal"),
                    ("model.dropout=0.3", "model.input_dropout=0.1", "train.seed=2", "init=lecun_uniform"))
    _check(cfgs)


def test_a_cnn_stack_on_colour_images_trains_each_trial_as_alone(torchvision_root: Path) -> None:
    """Three input channels, which the unstacked model takes channels-first and the stack channels-last."""
    cfgs = _configs((*SMALL_CNN, "data=cifar10", f"data.root={torchvision_root}", "model.batchnorm=true"),
                    ("optimizer.lr=0.05",), ("optimizer.lr=0.01", "model.input_dropout=0.2", "train.seed=1"))
    _check(cfgs)


def test_a_stack_of_one_trial_is_that_trial() -> None:
    """One input channel and one trial: every tensor's memory fits both layouts, and the convolutions must still
    pick the kernels of the unstacked model's channels-last weights."""
    _check(_configs(("model=cnn", "train.epochs=1", "train.batch_size=64"), ("optimizer.lr=0.05", "train.seed=3")))


def test_a_diverging_trial_fails_alone_and_the_others_stay_exact() -> None:
    """Checked every 25 steps as fit checks it: the trial leaves mid-epoch with fit's own TrialDiverged."""
    cfgs = _configs(("model.hidden_dims=[32]", "train.epochs=2", "train.batch_size=16"),
                    ("optimizer.lr=0.05",), ("optimizer.lr=1e12", "train.seed=1"),
                    ("optimizer.lr=0.01", "train.seed=2"))
    outcomes = _check(cfgs)
    assert isinstance(outcomes[1], TrialDiverged) and "in epoch 1" in str(outcomes[1])


def test_a_trial_whose_callback_raises_leaves_the_stack_with_that_exception() -> None:
    def prune_at_epoch_2(metrics: dict[str, float]) -> None:
        if metrics["epoch"] == 2:
            raise optuna.TrialPruned(f"pruned at epoch {metrics['epoch']}")

    seen: list[int] = []
    cfgs = _configs((*SMALL_MLP[:1], "train.epochs=3", "train.batch_size=64"), (), ("train.seed=1",), ("train.seed=2",))
    outcomes = _check(cfgs, on_epoch=[lambda m: seen.append(int(m["epoch"])), prune_at_epoch_2, None])
    assert isinstance(outcomes[1], optuna.TrialPruned) and seen == [1, 2, 3, 1, 2, 3]  # alone, then stacked


def test_stopping_rules_and_checkpoints_are_per_trial() -> None:
    """Early stopping, a training-accuracy target and the best checkpoint, each trial by its own rule."""
    cfgs = _configs(("model.hidden_dims=[32]", "train.epochs=8", "train.batch_size=64"),
                    ("optimizer.lr=0.5", "train.early_stopping=1"),
                    ("train.target_train_acc=0.9", "train.seed=1"),
                    ("train.checkpoint=best", "train.early_stopping=2", "train.early_stopping_metric=val_acc",
                     "train.seed=2"),
                    ("train.seed=3",))
    outcomes = _check(cfgs)
    stopped = [o.result.stopped for o in outcomes if isinstance(o, Trained)]
    assert stopped[:2] == ["early_stopping", "target_train_acc"] and stopped[3] == "epochs"


def test_evaluations_between_epochs_match_fits() -> None:
    cfgs = _configs((*SMALL_MLP, "train.eval_every=7"), ("optimizer.lr=0.05",), ("optimizer.lr=0.2", "train.seed=1"))
    outcomes = _check(cfgs)
    assert all(isinstance(o, Trained) and len(o.result.evaluations) == 6 for o in outcomes)


def test_dropout_masks_are_those_f_dropout_draws_from_the_global_stream() -> None:
    x = torch.randn(3, 16, 40)
    torch.manual_seed(7)
    streams = [trial_stream(CPU)]
    expected = [F.dropout(x[0], 0.3, training=True), F.dropout(x[0], 0.5, training=True)]
    streams += [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    first = dropout(x, [0.3, 0.0, 0.2], streams)
    second = dropout(x, [0.5, 0.0, 0.2], streams)
    assert torch.equal(first[0], expected[0]) and torch.equal(second[0], expected[1])
    assert torch.equal(first[1], x[1]) and not torch.equal(first[2], second[2])


def test_stack_keys_ignore_per_trial_values_and_separate_the_rest() -> None:
    base = ("model.hidden_dims=[32]",)
    same = [trial_config(*base, *o)[0] for o in [(), ("optimizer.lr=0.3", "optimizer.momentum=0.0",
                                                       "optimizer.weight_decay=0.01", "model.dropout=0.4",
                                                       "init=normal", "init.std=0.2", "train.seed=5",
                                                       "train.early_stopping=3", "train.checkpoint=best")]]
    assert stack_key(same[0]) == stack_key(same[1])
    different = [("train.batch_size=16",), ("model.hidden_dims=[64]",), ("optimizer=adam",),
                 ("optimizer.nesterov=true",), ("train.epochs=3",), ("data.val_fraction=0.2",),
                 ("train.eval_every=5",), ("deepfool.samples=10",), ("model.activation=tanh",)]
    keys = {stack_key(trial_config(*base, *o)[0]) for o in different}
    assert len(keys) == len(different) and stack_key(same[0]) not in keys
    one_model = [("model.activation=swish",), ("model.activation=silu",), ("model.activation=[silu]",)]
    assert len({stack_key(trial_config(*base, *o)[0]) for o in one_model}) == 1


@pytest.mark.parametrize(("overrides", "reason"), [
    (("model=resnet",), "model=resnet: only mlp and cnn models are stacked"),
    (("train.time_budget_s=10",), "train.time_budget_s: trials in a stack share one clock"),
])
def test_stack_key_refuses_what_a_stack_cannot_reproduce(overrides: tuple[str, ...], reason: str) -> None:
    key = stack_key(trial_config(*overrides)[0])
    assert isinstance(key, str) and key.startswith(reason)
    with pytest.raises(ValueError, match=reason.split(":")[0]):
        fit_stacked([trial_config(*overrides)[0]], load_dataset(DataConfig(), CPU))


def test_trials_of_different_keys_are_refused_one_stack() -> None:
    cfgs = [trial_config()[0], trial_config("train.batch_size=16")[0]]
    with pytest.raises(ValueError, match="stack keys differ"):
        fit_stacked(cfgs, load_dataset(DataConfig(), CPU))


def test_a_stack_that_fails_as_a_whole_fails_each_of_its_trials_and_returns(tmp_path: Path) -> None:
    """The stacked launcher's training of one stack: a stack that fails as a whole (here trials of different keys,
    as a stack out of memory would) gives each of its jobs the error, and returns, so the batch's other stacks go
    on."""
    from hydra_plugins.sweep_stacked_launcher.stacked_launcher import _train
    from sweep.trial import TrialJob

    jobs = [TrialJob(cfg, resolved, tmp_path / name, name) for name, (cfg, resolved) in
            (("a", trial_config("mlflow.enabled=false")), ("b", trial_config("mlflow.enabled=false",
                                                                              "train.batch_size=16")))]
    results = _train(jobs)
    assert [type(r) for r in results] == [ValueError, ValueError] and "stack keys differ" in str(results[0])


def test_the_memory_cap_splits_a_large_group_evenly() -> None:
    data = load_dataset(DataConfig(), CPU)
    cfg = trial_config("model.hidden_dims=[256,256]")[0]
    per_trial = trial_bytes(cfg, data)
    assert stack_cap(cfg, data, budget=3 * per_trial + 1) == 3
    stacks = split(list(range(10)), 3)
    assert stacks == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert split(list(range(10)), 8) == [list(range(5)), list(range(5, 10))] and split([], 4) == []
    wide = trial_config("model.hidden_dims=[2048,2048]")[0]  # 17 MB of weights: past the CPU's budget alone
    assert stack_cap(wide, data) == 1 < stack_cap(cfg, data)


def test_an_unstacked_model_is_an_ordinary_model_the_measures_run_on() -> None:
    from sweep.measures import MEASURES

    cfgs = _configs(("model.hidden_dims=[32]", "train.epochs=1", "deepfool.samples=40"), (), ("train.seed=1",))
    data = load_dataset(DataConfig(), CPU)
    deepfool = MEASURES["deepfool"]
    for cfg, outcome in zip(cfgs, fit_stacked(cfgs, data), strict=True):
        expected = _unstacked(cfg, data)
        assert isinstance(outcome, Trained) and not isinstance(expected, Exception)
        assert isinstance(outcome.model, nn.Sequential) and type(outcome.model[0]) is type(expected[1][0])
        mine, theirs = deepfool(outcome.model, data, cfg.measures["deepfool"]), deepfool(expected[1], data,
                                                                                       cfg.measures["deepfool"])
        assert {k: v for k, v in mine.items() if "seconds" not in k} == pytest.approx(
            {k: v for k, v in theirs.items() if "seconds" not in k}, nan_ok=True)


@CUDA
@pytest.mark.parametrize("common", [SMALL_MLP, SMALL_CNN], ids=["mlp", "cnn"])
def test_a_cuda_stack_agrees_with_unstacked_cuda_runs(common: tuple[str, ...]) -> None:
    """On CUDA the batched kernels are cuBLAS's and cuDNN's own, which round apart from the single ones: the
    trials agree to float32 rounding grown over an epoch (within 1%: a few predictions may flip), not bitwise.
    cuDNN's TF32 is off for both runs: it rounds a grouped and a single convolution far apart."""
    cfgs = _configs((*common, "train.device=cuda", "train.epochs=1"), ("optimizer.lr=0.05", "model.dropout=0.3"),
                    ("optimizer.lr=0.01", "train.seed=1"), ("optimizer.lr=0.1", "init=kaiming_normal", "train.seed=2"))
    flags: Any = torch.backends.cudnn.flags(enabled=True, allow_tf32=False)
    with flags:
        _check(cfgs, rel=1e-2, abs_=1e-2, device=torch.device("cuda"))
