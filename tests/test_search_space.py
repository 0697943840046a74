"""Override grammar -> Optuna distributions, as input -> expected tables."""

from __future__ import annotations

import pytest
from hydra.errors import OverrideParseException
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweep.errors import ConfigError
from sweep.search_space import override_text, parse_search_space


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("optimizer.lr=choice(1e-3,1e-2)", CategoricalDistribution((0.001, 0.01))),
        ("optimizer=choice(sgd,adam)", CategoricalDistribution(("sgd", "adam"))),
        ("train.batch_size=range(16,65,16)", IntDistribution(16, 64, step=16)),
        ("model.dropout=range(0.0,0.5,0.25)", FloatDistribution(0.0, 0.25, step=0.25)),
        ("optimizer.lr=tag(log,interval(1e-4,0.5))", FloatDistribution(1e-4, 0.5, log=True)),
        ("model.dropout=interval(0,0.6)", FloatDistribution(0.0, 0.6)),
        ("train.epochs=tag(int,interval(5,20))", IntDistribution(5, 20)),
        ("train.batch_size=tag(int,log,interval(8,512))", IntDistribution(8, 512, log=True)),
        ("model.hidden_dims=choice([512],[100,100])", CategoricalDistribution(("[512]", "[100,100]"))),
    ],
)
def test_sweep_overrides_become_distributions(argument: str, expected) -> None:
    space = parse_search_space({}, [argument])
    assert list(space.distributions.values()) == [expected]
    assert space.fixed == []


def test_fixed_overrides_pass_through_and_command_line_wins() -> None:
    space = parse_search_space(
        {"optimizer.lr": "interval(0.001, 0.1)", "train.batch_size": "choice(16, 32)"},
        ["train.epochs=5", "optimizer.lr=choice(0.5)", "+model.extra=1"],
    )
    assert space.fixed == ["train.epochs=5", "+model.extra=1"]
    assert space.distributions["optimizer.lr"] == CategoricalDistribution((0.5,))
    assert space.distributions["train.batch_size"] == CategoricalDistribution((16, 32))


def test_list_choices_travel_as_override_text() -> None:
    space = parse_search_space({}, ["model.hidden_dims=choice([512],[100,100,100])"])
    assert space.textual == {"model.hidden_dims"}


def test_grid_is_the_full_product_in_order() -> None:
    space = parse_search_space({}, ["a=choice(1,2)", "b=range(0,3)"])
    assert space.grid() == [{"a": 1, "b": 0}, {"a": 1, "b": 1}, {"a": 1, "b": 2},
                            {"a": 2, "b": 0}, {"a": 2, "b": 1}, {"a": 2, "b": 2}]


def test_grid_refuses_continuous_interval() -> None:
    space = parse_search_space({}, ["a=choice(1,2)", "optimizer.lr=interval(0.1,1)"])
    with pytest.raises(ConfigError, match="grid needs discrete values, but optimizer.lr is a continuous interval"):
        space.grid()


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("optimizer.lr=interval(0.5,0.1)", "low < high"),
        ("optimizer.lr=tag(log,interval(0,1))", "log interval needs low > 0"),
        ("a=tag(log,choice(1,2))", "apply to interval"),
        ("a=range(5,5)", "is empty"),
        ("a=tag(cubic,interval(1,2))", "unknown tags"),
    ],
)
def test_unrepresentable_sweeps_are_refused(argument: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_search_space({}, [argument])


def test_malformed_grammar_is_refused() -> None:
    with pytest.raises(OverrideParseException):
        parse_search_space({}, ["optimizer.lr=choice(0.1"])


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.001, "0.001"), (True, "true"), (None, "null"), ([512, 256], "[512,256]"), ("adam", "adam"),
     ("a b", "'a b'"), ("postgresql://u:p@h/db", "'postgresql://u:p@h/db'"), ({"a": 1}, "{a:1}")],
)
def test_override_text(value, text: str) -> None:
    assert override_text(value) == text

