"""Model builders: shapes, the input normalisation inside every model, layer counts from K / L / P / H."""

from __future__ import annotations

import pytest
import torch
from hydra_optuna_studies.errors import ConfigError
from torch import nn

from sweep.models import CNNConfig, MLPConfig, ResidualBlock, ResNetConfig, build_model

SHAPE = (3, 16, 16)
MEAN, STD = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.5, 0.5])


@pytest.mark.parametrize(
    "cfg", [MLPConfig(hidden_dims=[32, 16]), CNNConfig(channels=[4, 8]), ResNetConfig(channels=[4, 8])]
)
def test_every_model_maps_a_batch_to_class_logits(cfg) -> None:
    model = build_model(cfg, SHAPE, 7, (MEAN, STD))
    assert model(torch.rand(5, *SHAPE)).shape == (5, 7)


def test_models_normalise_their_input_with_the_training_statistics() -> None:
    model = build_model(MLPConfig(hidden_dims=[]), SHAPE, 2, (MEAN, STD))
    x = torch.rand(4, *SHAPE)
    expected = (x - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)
    torch.testing.assert_close(model[0](x), expected)


def test_mlp_layers_follow_hidden_dims_and_dropout() -> None:
    model = build_model(MLPConfig(hidden_dims=[32, 16], dropout=0.5, activation="celu"), SHAPE, 10, (MEAN, STD))
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(768, 32), (32, 16), (16, 10)]
    assert sum(isinstance(m, nn.Dropout) for m in model) == 2 and sum(isinstance(m, nn.CELU) for m in model) == 2


def test_cnn_has_k_by_l_convolutions_and_a_pool_every_p() -> None:
    model = build_model(CNNConfig(channels=[4, 8], layers_per_block=3, pool_every=2, hidden_dims=[]), SHAPE, 10,
                        (MEAN, STD))
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [4, 4, 4, 8, 8, 8]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model) == 3
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)


def test_resnet_has_l_blocks_per_stage() -> None:
    model = build_model(ResNetConfig(channels=[4, 8, 16], layers_per_block=2), SHAPE, 10, (MEAN, STD))
    assert sum(isinstance(m, ResidualBlock) for m in model) == 6


def test_too_many_pools_for_the_input_are_refused() -> None:
    with pytest.raises(ConfigError, match="model.pool_every"):
        build_model(CNNConfig(channels=[2] * 6, layers_per_block=1, pool_every=1), SHAPE, 10, (MEAN, STD))
