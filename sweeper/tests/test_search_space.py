"""Override grammar -> Optuna distributions, and conditional spaces, as input -> expected tables.

The first table holds every case of hydra-optuna-sweeper's own distribution test (same inputs, same expected
distributions), plus ours. One case differs on purpose: ``range`` excludes its stop value, as Hydra's grammar
defines it and as Hydra's basic sweeper runs it (``range(1,3)`` is 1 and 2); hydra-optuna-sweeper includes it.
"""

from __future__ import annotations

import optuna
import pytest
from hydra.errors import OverrideParseException
from hydra_optuna_studies.errors import ConfigError
from hydra_optuna_studies.search_space import override_text, parse_search_space
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        # hydra-optuna-sweeper's cases
        ("key=choice(1,2)", CategoricalDistribution((1, 2))),
        ("key=choice(true, false)", CategoricalDistribution((True, False))),
        ("key=choice('hello', 'world')", CategoricalDistribution(("hello", "world"))),
        ("key=shuffle(range(1,3))", CategoricalDistribution((1, 2))),
        ("key=range(1,3)", IntDistribution(1, 2)),  # theirs: IntDistribution(1, 3); see the module docstring
        ("key=interval(1, 5)", FloatDistribution(1, 5)),
        ("key=int(interval(1, 5))", IntDistribution(1, 5)),
        ("key=tag(log, interval(1, 5))", FloatDistribution(1, 5, log=True)),
        ("key=tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
        ("key=range(0.5, 5.5, step=1)", FloatDistribution(0.5, 4.5, step=1)),  # theirs: high 5.5
        # ours
        ("optimizer.lr=choice(1e-3,1e-2)", CategoricalDistribution((0.001, 0.01))),
        ("optimizer=choice(sgd,adam)", CategoricalDistribution(("sgd", "adam"))),
        ("train.batch_size=range(16,65,16)", IntDistribution(16, 64, step=16)),
        ("model.dropout=range(0.0,0.5,0.25)", FloatDistribution(0.0, 0.25, step=0.25)),
        ("model.dropout=range(0.1,0.4,0.1)", FloatDistribution(0.1, 0.3, step=0.1)),
        ("x=float(range(1,4))", FloatDistribution(1.0, 3.0, step=1.0)),
        ("x=int(choice(1.5,2.5))", CategoricalDistribution((1, 2))),
        ("x=sort(choice(3,1,2))", CategoricalDistribution((1, 2, 3))),
        ("x=shuffle(choice(a,b))", CategoricalDistribution(("a", "b"))),
        ("optimizer.lr=tag(log,interval(1e-4,0.5))", FloatDistribution(1e-4, 0.5, log=True)),
        ("model.dropout=interval(0,0.6)", FloatDistribution(0.0, 0.6)),
        ("train.epochs=tag(int,interval(5,20))", IntDistribution(5, 20)),
        ("train.epochs=int(interval(1,3))", IntDistribution(1, 3)),
        ("train.batch_size=tag(int,log,interval(8,512))", IntDistribution(8, 512, log=True)),
        ("model.hidden_dims=choice([512],[100,100])", CategoricalDistribution(("[512]", "[100,100]"))),
    ],
)
def test_sweep_overrides_become_distributions(argument: str, expected) -> None:
    space = parse_search_space({}, [argument])
    actual = list(space.distributions.values())
    if isinstance(expected, CategoricalDistribution) and "shuffle" in argument:
        assert set(actual[0].choices) == set(expected.choices)  # the order of shuffled choices is not promised
    else:
        assert actual == [expected]
    assert space.fixed == []


@pytest.mark.parametrize(
    ("arguments", "swept", "fixed"),
    [  # hydra-optuna-sweeper's create_params_from_overrides cases: which keys are swept, which pass unchanged
        (["key=choice(1,2)"], {"key": CategoricalDistribution((1, 2))}, []),
        (["key=5"], {}, ["key=5"]),
        (["key1=choice(1,2)", "key2=5"], {"key1": CategoricalDistribution((1, 2))}, ["key2=5"]),
        (["key1=choice(1,2)", "key2=5", "key3=range(1,3)"],
         {"key1": CategoricalDistribution((1, 2)), "key3": IntDistribution(1, 2)}, ["key2=5"]),
        (["~z"], {}, ["~z"]),
        (["~z=10"], {}, ["~z=10"]),
        (["+w=choice(1,2)"], {"+w": CategoricalDistribution((1, 2))}, []),
        (["db@src=choice(a,b)"], {"db@src": CategoricalDistribution(("a", "b"))}, []),
    ],
)
def test_swept_and_fixed_overrides(arguments: list[str], swept: dict, fixed: list[str]) -> None:
    space = parse_search_space({}, arguments)
    assert space.distributions == swept and space.fixed == fixed


def test_added_key_travels_with_its_plus() -> None:
    space = parse_search_space({}, ["+model.extra=choice(1,2)"])
    assert space.overrides({"+model.extra": 2}) == ["+model.extra=2"]


def test_int_interval_sends_integers_to_the_trial() -> None:
    """The bug that made every trial fail: int(interval(1,3)) used to send train.epochs=2.0976..."""
    space = parse_search_space({}, ["train.epochs=int(interval(1,3))"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        (line,) = space.overrides(space.sample(study.ask()))
        assert line in ("train.epochs=1", "train.epochs=2", "train.epochs=3")


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
    assert space.params["model.hidden_dims"].textual
    assert space.overrides({"model.hidden_dims": "[512]"}) == ["model.hidden_dims=[512]"]


def test_grid_is_the_full_product_in_order() -> None:
    space = parse_search_space({}, ["a=choice(1,2)", "b=range(0,3)"])
    assert list(space.points()) == [{"a": 1, "b": 0}, {"a": 1, "b": 1}, {"a": 1, "b": 2},
                            {"a": 2, "b": 0}, {"a": 2, "b": 1}, {"a": 2, "b": 2}]


def test_grid_refuses_continuous_interval() -> None:
    space = parse_search_space({}, ["a=choice(1,2)", "optimizer.lr=interval(0.1,1)"])
    with pytest.raises(ConfigError, match="grid needs discrete values, but optimizer.lr is a continuous interval"):
        space.points()


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("optimizer.lr=interval(0.5,0.1)", "low < high"),
        ("optimizer.lr=tag(log,interval(0,1))", "log interval needs low > 0"),
        ("a=tag(log,choice(1,2))", "apply to interval"),
        ("a=range(5,5)", "is empty"),
        ("a=tag(cubic,interval(1,2))", "unknown tags"),
        ("a=glob(*)", "cannot be a search dimension; use choice, range or interval"),
        ("~a=choice(1,2)", r"a deleted key \(~\) cannot be swept"),
    ],
)
def test_unrepresentable_sweeps_are_refused(argument: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_search_space({}, [argument])


def test_malformed_grammar_is_refused() -> None:
    with pytest.raises(OverrideParseException):
        parse_search_space({}, ["optimizer.lr=choice(0.1"])


# --- conditional spaces --------------------------------------------------------------------------------------
CONDITIONAL = {
    "optimizer": "choice(sgd, adam)",
    "optimizer.lr": "choice(0.01, 0.1)",
    "optimizer.momentum": {"when": {"optimizer": "sgd"}, "values": "choice(0.0, 0.9)"},
    "optimizer.betas": {"when": {"optimizer": ["adam"]}, "values": "choice([0.9,0.999],[0.5,0.9])"},
}


def test_grid_over_a_conditional_space_enumerates_exactly_the_valid_points() -> None:
    grid = list(parse_search_space(CONDITIONAL, []).points())
    sgd = [p for p in grid if p["optimizer"] == "sgd"]
    adam = [p for p in grid if p["optimizer"] == "adam"]
    assert len(grid) == 8 and len(sgd) == 4 and len(adam) == 4
    assert all(set(p) == {"optimizer", "optimizer.lr", "optimizer.momentum"} for p in sgd)
    assert all(set(p) == {"optimizer", "optimizer.lr", "optimizer.betas"} for p in adam)
    assert len({tuple(sorted(p.items())) for p in grid}) == 8


def test_sampled_trials_hold_only_the_params_of_their_branch() -> None:
    space = parse_search_space(CONDITIONAL, [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        point = space.sample(trial)
        assert trial.params == point
        expected = "optimizer.momentum" if point["optimizer"] == "sgd" else "optimizer.betas"
        assert set(point) == {"optimizer", "optimizer.lr", expected}
        seen.add(point["optimizer"])
        study.tell(trial, 0.0)
    assert seen == {"sgd", "adam"}


def test_conditions_may_chain_and_the_command_line_keeps_them() -> None:
    params = {**CONDITIONAL, "optimizer.nesterov": {"when": {"optimizer.momentum": 0.9}, "values": "choice(true)"}}
    space = parse_search_space(params, ["optimizer.momentum=choice(0.5,0.9)"])
    assert list(space.params).index("optimizer.nesterov") > list(space.params).index("optimizer.momentum")
    grid = list(space.points())
    assert [p.get("optimizer.nesterov") for p in grid if p.get("optimizer.momentum") == 0.9] == [True, True]
    assert all("optimizer.nesterov" not in p for p in grid if p.get("optimizer.momentum") != 0.9)


RESNET_GRIDS = {  # study 4: K = [32] with L in {8, 16, 32}; K = [64, 128, 256] with L in {2, 4, 8}
    "model.channels": "choice([32],[64,128,256])",
    "model.layers_per_block": [{"when": {"model.channels": "[32]"}, "values": "choice(8,16,32)"},
                               {"when": {"model.channels": "[64,128,256]"}, "values": "range(2,9,3)"}],
}


def test_a_union_of_grids_enumerates_each_case_and_stores_the_union() -> None:
    space = parse_search_space(RESNET_GRIDS, [])
    points = [(p["model.channels"], p["model.layers_per_block"]) for p in space.points()]
    assert points == [("[32]", 8), ("[32]", 16), ("[32]", 32), ("[64,128,256]", 2), ("[64,128,256]", 5),
                      ("[64,128,256]", 8)]
    assert space.params["model.layers_per_block"].distribution == CategoricalDistribution((8, 16, 32, 2, 5))
    assert space.grid_only == ["model.layers_per_block"]
    override = parse_search_space(RESNET_GRIDS, ["model.layers_per_block=choice(1,2)"])  # the command line wins
    assert override.grid_only == [] and len(list(override.points())) == 4


def test_cases_need_a_condition_each() -> None:
    with pytest.raises(ConfigError, match="a list of cases needs a {when: ..., values: ...} in each"):
        parse_search_space({"a": "choice(1,2)", "b": [{"values": "choice(1,2)"}]}, [])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"b": {"when": {"a": 1}, "values": "choice(1,2)"}}, "a is not swept"),
        ({"a": "interval(0,1)", "b": {"when": {"a": 0.5}, "values": "choice(1,2)"}}, "a is a continuous interval"),
        ({"a": {"when": {"b": 1}, "values": "choice(1,2)"}, "b": {"when": {"a": 1}, "values": "choice(1,2)"}},
         "conditions form a cycle among a, b"),
        ({"a": {"values": "choice(1,2)", "if": {"b": 1}}}, "must be a sweep like"),
        ({"a": {"when": {"b": 1}, "values": "5"}, "b": "choice(1,2)"}, "needs a sweep as values"),
    ],
)
def test_bad_conditions_are_refused(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_search_space(params, [])


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.001, "0.001"), (True, "true"), (None, "null"), ([512, 256], "[512,256]"), ("adam", "adam"),
     ("a b", "'a b'"), ("postgresql://u:p@h/db", "'postgresql://u:p@h/db'"), ({"a": 1}, "{a:1}")],
)
def test_override_text(value, text: str) -> None:
    assert override_text(value) == text


def test_a_huge_grid_is_enumerated_lazily_and_sized_without_building_it() -> None:
    """range(0, 10**8): the first points come at once, the size is a product, and nothing holds 10**8 points."""
    import itertools
    import tracemalloc

    space = parse_search_space({}, ["a=range(0,100000000)", "b=choice(x,y)", "c=range(0.5,2.5,0.5)"])
    tracemalloc.start()
    first = list(itertools.islice(space.points(), 3))
    size = space.size(limit=10**12)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert first == [{"a": 0, "b": "x", "c": 0.5}, {"a": 0, "b": "x", "c": 1.0}, {"a": 0, "b": "x", "c": 1.5}]
    assert size == 10**8 * 2 * 4 and space.size(limit=10**6) is None
    assert peak < 10_000_000  # bytes: far below what 10**8 points would take


@pytest.mark.parametrize(
    ("params", "arguments", "message"),
    [
        ({}, ["x=interval(0.01,inf)"], r"x: interval\(low, high\) needs finite numbers"),
        ({}, ["x=choice(choice(1,2),3)"], r"x: a choice\(...\) holds plain values, not another sweep"),
        (["x=choice(1,2)"], [], r"hydra.sweeper.params: must map keys to sweeps"),
        ({}, ["x=choice(1,2)", "x=3"], r"x: given twice on the command line, 'x=choice\(1,2\)' and 'x=3'"),
        ({}, ["hydra.verbose=true,false"], r"Sweeping over Hydra's configuration is not supported : 'hydra.verbose"),
    ],
)
def test_sweeps_that_cannot_be_meant_are_refused_in_one_line(params, arguments: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_search_space(params, arguments)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("params", [{"x": "choice(1,2)"}, {"x": [{"when": {"y": 3}, "values": "choice(1,2)"},
                                                                 {"when": {"y": 4}, "values": "choice(6,7)"}]}],
                         ids=["sweep", "cases"])
def test_a_command_line_value_pins_a_key_the_config_sweeps_and_says_so(params, caplog) -> None:
    """``sweep -m +experiment=lr_bs_grid optimizer.lr=0.1``: the grid over lr becomes lr=0.1, in one info line."""
    import logging

    with caplog.at_level(logging.INFO):
        space = parse_search_space({**params, "y": "choice(3,4)"}, ["x=5"])
    assert list(space.params) == ["y"] and "x=5" in space.fixed
    (said,) = [r.getMessage() for r in caplog.records if "replaces" in r.getMessage()]
    assert said.startswith("x=5: the command line's value replaces the config's sweep (") and "choice(1,2)" in said


def test_a_plain_value_given_twice_is_hydras_last_one_wins() -> None:
    assert parse_search_space({}, ["x=1", "x=2"]).fixed == ["x=2"]

