"""Planning a sweep: every check of the command, before any storage, folder or run is touched.

A bad command (grammar, sampler, pruner, directions, a swept value the app's config cannot take, a broken
``custom_search_space`` hook) is one line and a non-zero exit here, so it leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from hydra_optuna_studies.contract import StudySpec
from hydra_optuna_studies.errors import ConfigError, check, check_choice
from hydra_optuna_studies.instantiate import build, locate
from hydra_optuna_studies.search_space import SearchSpace, override_text, parse_search_space

from .config import PRUNERS, SAMPLERS, OptunaSweeperConf, sampler_node

DEFAULT_N_TRIALS = 20
MAX_GRID = 1_000_000  # a grid larger than this needs n_trials: run part of it, or use a sampler
MAX_PROBES = 100  # swept values of one key composed up front
MIN_HEARTBEAT = 1.0  # seconds: a faster heartbeat writes more records than it can tell anything by
DIRECTIONS = ("minimize", "maximize")
REMOVED_MOTPE = "The 'motpe' sampler was removed in Optuna 4.0; tpe handles several objectives itself"
GRID_TARGET = sampler_node("grid")["_target_"]
Hook = Callable[[DictConfig, Any], Any]  # custom_search_space: (config, optuna.Trial) -> None | {key: value}
Describe = Callable[[DictConfig], StudySpec]


def settings_of(options: Mapping[str, Any]) -> OptunaSweeperConf:
    """The sweeper's keys as Hydra passes them, in its config dataclass (the one source of their defaults)."""
    known = {f.name for f in fields(OptunaSweeperConf)} - {"_target_", "defaults"}
    return OptunaSweeperConf(**{k: plain(v) for k, v in options.items() if k in known})


@dataclass
class Plan:
    """Everything a sweep needs, checked."""

    space: SearchSpace
    spec: StudySpec
    metrics: list[str] | None  # objective names, when the app names them
    directions: list[str]
    study_name: str
    storage: str
    grid: bool  # claim the points of space.points() rather than asking the sampler
    n_trials: int
    sampler_name: str
    sampler: Any  # the Optuna sampler
    pruner: dict[str, Any]  # the pruner's node, kept with the study for the jobs that report
    hook: Hook | None

    @property
    def names(self) -> list[str]:
        """The objectives' names: the app's, else ``objective_0``, ... as Optuna's tools call them."""
        return self.metrics or [f"objective_{i}" for i in range(len(self.directions))]


def make_plan(settings: OptunaSweeperConf, config: DictConfig, arguments: list[str], loader: Any,
              describe: Describe | None, sweep_dir: Path) -> Plan:
    """Check the whole command and work out the study; raises a one-line error on any bad input."""
    check_settings(settings)
    sampler_name, node = sampler_of(settings)
    space = parse_search_space(settings.params, arguments)
    spec = probe_values(space, config, loader, describe)
    directions = directions_of(settings.direction, spec)
    pruner = pruner_of(settings, spec, directions)
    multi_objective = getattr(SAMPLERS.get(sampler_name), "multi_objective", True)
    check(len(directions) == 1 or multi_objective, "hydra.sweeper.sampler",
          f"{sampler_name} is single-objective; for {len(directions)} objectives use nsgaii, tpe, gp or random")
    grid = node["_target_"] == GRID_TARGET
    if grid:
        space.points()  # refuses a continuous dimension now (the points themselves come one at a time, later)
    for key in space.grid_only:
        check(grid, f"hydra.sweeper.params.{key}",
              f"values that differ by case (a list of {{when, values}}) need sampler=grid, not {sampler_name}")
    hook = hook_of(settings.custom_search_space, space, config, loader, directions)
    return Plan(
        space=space,
        spec=spec,
        metrics=spec.metrics,
        directions=directions,
        study_name=settings.study_name or spec.name or str(config.hydra.job.name),
        storage=settings.storage or str(sweep_dir / "optuna.journal"),
        grid=grid,
        n_trials=settings.n_trials or (grid_size(space) if grid else DEFAULT_N_TRIALS),
        sampler_name=sampler_name,
        sampler=build_sampler(node, grid),
        pruner=pruner,
        hook=hook,
    )


def check_settings(settings: OptunaSweeperConf) -> None:
    check(settings.n_jobs >= 1, "hydra.sweeper.n_jobs", f"must be >= 1, got {settings.n_jobs}")
    check(settings.workers >= 1, "hydra.sweeper.workers", f"must be >= 1, got {settings.workers}")
    n_trials = settings.n_trials
    check(n_trials is None or 1 <= n_trials <= 10**9, "hydra.sweeper.n_trials",
          f"must be between 1 and 1e9, got {n_trials}")
    beat = settings.heartbeat_interval
    check(MIN_HEARTBEAT <= beat <= 24 * 3600, "hydra.sweeper.heartbeat_interval",
          f"must be between {MIN_HEARTBEAT:g} and 86400 seconds, got {beat}")
    patience = settings.storage_patience
    check(0 <= patience <= 24 * 3600, "hydra.sweeper.storage_patience", f"must be between 0 and 86400 seconds, got "
          f"{patience}")
    rate = settings.max_failure_rate
    check(rate is None or 0.0 <= rate <= 1.0, "hydra.sweeper.max_failure_rate", f"must be in [0, 1], got {rate}")


def sampler_of(settings: OptunaSweeperConf) -> tuple[str, dict[str, Any]]:
    """(its name for messages, the node to build) of the configured sampler, with ``sampler_options`` and the seed."""
    sampler = settings.sampler
    if isinstance(sampler, str):
        check(sampler != "motpe", "hydra.sweeper.sampler", REMOVED_MOTPE)
        check_choice(sampler, "hydra.sweeper.sampler", tuple(n for n in SAMPLERS if n != "motpe"))
        node = sampler_node(sampler)
    else:
        check(isinstance(sampler, Mapping) and "_target_" in sampler, "hydra.sweeper.sampler",
              f"must be a sampler name ({', '.join(SAMPLERS)}) or a {{_target_: ...}} node, got {sampler!r}")
        node = dict(sampler)
    node |= dict(settings.sampler_options)
    name = next((n for n in SAMPLERS if sampler_node(n)["_target_"] == node["_target_"]),
                str(node["_target_"]).rsplit(".", 1)[-1])
    check(name != "motpe", "hydra.sweeper.sampler", REMOVED_MOTPE)
    if settings.seed is not None and node.get("seed") is None:
        node["seed"] = settings.seed
    return name, node


def build_sampler(node: dict[str, Any], grid: bool) -> Any:
    """The Optuna sampler of ``node``. A grid's points are claimed by the sweeper, so the sampler behind them is a
    random one (seeded as the node says) that never draws."""
    if grid:
        return build({"_target_": "optuna.samplers.RandomSampler", "seed": node.get("seed")}, "hydra.sweeper.sampler")
    return build(node, "hydra.sweeper.sampler")


def pruner_of(settings: OptunaSweeperConf, spec: StudySpec, directions: list[str]) -> dict[str, Any]:
    """The pruner's node (built once here, to check it); pruning needs one objective, reported every step."""
    pruner = settings.pruner
    if isinstance(pruner, str):
        check_choice(pruner, "hydra.sweeper.pruner", tuple(PRUNERS))
        node = {"_target_": PRUNERS[pruner]}
    else:
        check(isinstance(pruner, Mapping) and "_target_" in pruner, "hydra.sweeper.pruner",
              f"must be a pruner name ({', '.join(PRUNERS)}) or a {{_target_: ...}} node, got {pruner!r}")
        node = dict(pruner)
    node |= dict(settings.pruner_options)
    build(node, "hydra.sweeper.pruner_options" if isinstance(pruner, str) else "hydra.sweeper.pruner")
    if node["_target_"] != PRUNERS["none"]:
        check(len(directions) == 1, "hydra.sweeper.pruner", "pruning needs a single objective")
        if spec.metrics and spec.reported is not None:
            check(spec.metrics[0] in spec.reported, "hydra.sweeper.pruner",
                  f"pruning needs the objective reported every step; {spec.metrics[0]} is not "
                  f"(reported: {', '.join(spec.reported)})")
    return node


def directions_of(direction: Any, spec: StudySpec) -> list[str]:
    """One direction per objective: as configured, else as the app says, else minimize (the official default)."""
    if direction is None:
        given = list(spec.directions or ["minimize"] * len(spec.metrics or [None]))
    else:
        given = [direction] if isinstance(direction, str) else list(direction)
    for d in given:
        check_choice(d, "hydra.sweeper.direction", DIRECTIONS)
    if spec.metrics is not None:
        check(len(set(spec.metrics)) == len(spec.metrics), "objective",
              f"names a metric twice ({', '.join(spec.metrics)}); each objective once")
        check(len(given) == len(spec.metrics), "hydra.sweeper.direction",
              f"{len(given)} direction(s) {given} for {len(spec.metrics)} objective(s) {spec.metrics}; "
              "give one per objective")
    return given


def probe_values(space: SearchSpace, config: DictConfig, loader: Any, describe: Describe | None) -> StudySpec:
    """Compose a job's config for each swept value (every choice, a range's two ends; a conditional key with the
    values that make it apply), and let the app check each one: a key the config lacks, a group option that does
    not exist or a value the app refuses stops the sweep before any study, folder or run exists.

    Value assignments reuse one composition (``_compose``), so this costs milliseconds but for group choices.
    Returns what the app says of its study (its description of the command's fixed config)."""
    spec = describe(without_hydra(config)) if describe else StudySpec()
    for key, param in space.params.items():
        context = [f"{k}={text_of(v, space.params[k].textual)}" for k, v in activating(space, key).items()]
        for value in probe_list(param.distribution):
            text = text_of(value, param.textual)
            composed = loader.load_sweep_config(config, [*space.fixed, *context, f"{key}={text}"])
            if describe is not None:
                try:
                    describe(without_hydra(composed))
                except ConfigError as error:
                    raise ConfigError(key, f"the swept value {text} is refused: {error}") from None
    return spec


def hook_of(path: str | None, space: SearchSpace, config: DictConfig, loader: Any,
            directions: list[str]) -> Hook | None:
    """The ``custom_search_space`` hook, called once on a throwaway in-memory trial so that a hook that raises, has
    the wrong signature or returns the wrong type, or derives a key the config lacks, stops the sweep now."""
    if not path:
        return None
    import optuna

    hook = cast(Hook, locate(path, "hydra.sweeper.custom_search_space"))
    key = "hydra.sweeper.custom_search_space"
    check(callable(hook), key, f"{path} is not callable")
    trial = optuna.create_study(directions=cast(Any, directions)).ask()
    point = space.sample(trial)
    try:
        derived = hook(config, trial)
    except Exception as error:  # noqa: BLE001 - whatever the hook raises, the user must see it before the sweep
        raise ConfigError(key, f"{path}(config, trial) raised {type(error).__name__}: {error}") from None
    check(derived is None or isinstance(derived, Mapping), key,
          f"{path} must return None or a mapping of overrides, got {type(derived).__name__}")
    extra = {k: v for k, v in trial.params.items() if k not in point}
    overrides = [f"{k}={override_text(v)}" for k, v in {**extra, **(derived or {})}.items()]
    try:
        loader.load_sweep_config(config, [*space.overrides(point), *overrides])
    except Exception as error:  # noqa: BLE001 - Hydra's composition errors, said in one line
        reason = " ".join(str(error).split())
        raise ConfigError(key, f"{path} gives overrides the config cannot take ({' '.join(overrides)}): "
                          f"{reason}") from None
    return hook


def grid_size(space: SearchSpace) -> int:
    size = space.size(MAX_GRID)
    check(size is not None, "hydra.sweeper.params",
          f"the grid has more than {MAX_GRID:,} points; set hydra.sweeper.n_trials to run part of it, or use a sampler")
    return cast(int, size)


def probe_list(distribution: Any) -> list[Any]:
    """The values that show whether a job config can take a swept key: the choices (up to MAX_PROBES), or a range's
    two ends."""
    if hasattr(distribution, "choices"):
        return list(distribution.choices[:MAX_PROBES])
    return [distribution.low, distribution.high]


def activating(space: SearchSpace, key: str) -> dict[str, Any]:
    """Values of the keys ``key`` depends on (and theirs) under which it is sampled."""
    values: dict[str, Any] = {}
    for parent, allowed in space.params[key].when.items():
        values |= activating(space, parent) | {parent: allowed[0]}
    return values


def text_of(value: Any, textual: bool) -> str:
    return str(value) if textual else override_text(value)


def plain(node: Any) -> Any:
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def without_hydra(config: DictConfig) -> DictConfig:
    trial = cast(DictConfig, OmegaConf.create(OmegaConf.to_container(config, resolve=False)))
    with open_dict(trial):
        trial.pop("hydra", None)
    return trial

