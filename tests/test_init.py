"""Initialisation schemes: what each touches, the std only ``normal`` takes, and layers no scheme knows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sweep.errors import ConfigError
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
