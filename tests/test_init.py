"""Initialisation schemes: what each touches, the std only ``normal`` takes, and layers no scheme knows."""

from __future__ import annotations

import pytest
import torch
from hydra_optuna_studies.errors import ConfigError
from torch import nn

from sweep.init import InitConfig, NormalInitConfig, init_weights


def test_a_layer_no_scheme_knows_is_an_error_unless_left_at_its_default() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Embedding(3, 4))
    with pytest.raises(ConfigError, match="init.unknown_layers: the init schemes do not know Embedding"):
        init_weights(model, InitConfig(name="xavier_normal"))
    before = model[1].weight.detach().clone()
    init_weights(model, InitConfig(name="xavier_normal", unknown_layers="default"))
    assert torch.equal(model[1].weight, before) and torch.all(model[0].bias == 0)


def test_normalisation_layers_are_known_and_keep_their_identity_init() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    init_weights(model, InitConfig(name="kaiming_normal"))
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)


def test_normal_scheme_draws_with_its_std() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 400))
    init_weights(model, NormalInitConfig(std=0.5))
    assert abs(model[0].weight.std().item() - 0.5) < 0.01


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (InitConfig, {"name": "orthogonal"}, "init.name: got 'orthogonal'"),
    (InitConfig, {"unknown_layers": "skip"}, "init.unknown_layers: got 'skip', allowed: error, default"),
    (NormalInitConfig, {"std": -1.0}, "init.std: must be > 0"),
])
def test_bad_settings_are_refused(cls: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**kwargs)


@pytest.mark.parametrize(("name", "std"), [
    ("lecun_normal", (1 / 512) ** 0.5), ("lecun_uniform", (1 / 512) ** 0.5),
    ("kaiming_normal", (2 / 512) ** 0.5), ("xavier_normal", (2 / (512 + 256)) ** 0.5),
])
def test_schemes_draw_with_the_variance_their_name_promises(name: str, std: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 256), nn.ReLU())
    init_weights(model, InitConfig(name=name))
    assert model[0].weight.std().item() == pytest.approx(std, rel=0.02)


def test_the_heuristic_is_he_after_relu_and_lecun_elsewhere() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.CELU(), nn.Linear(512, 10))
    init_weights(model, InitConfig(name="heuristic"))
    stds = [model[i].weight.std().item() for i in (0, 2, 4)]
    assert stds == pytest.approx([(2 / 512) ** 0.5, (1 / 512) ** 0.5, (1 / 512) ** 0.5], rel=0.02)
