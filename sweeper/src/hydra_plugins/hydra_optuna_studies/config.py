"""The ``hydra/sweeper=optuna`` config node, and one node per sampler (``hydra/sweeper/sampler=<name>``).

The keys of hydra-optuna-sweeper keep their names and meaning, so its configs run unchanged, ``_target_`` samplers
included; where a default differs on purpose the comment says so (and the docs' "Switching from
hydra-optuna-sweeper"). Hydra imports this module for every app at start-up: it holds dataclasses only.
"""

import importlib.util
import logging
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


# --- samplers: `hydra/sweeper/sampler=tpe` then `hydra.sweeper.sampler.seed=1`, ... -----------------------------
# Each node names the Optuna class it builds and every option that class takes in Optuna 5. None means the class's
# own default (Optuna stays the one source of truth for them). A node is stored as a plain dict, so a config may also
# give a `_target_` of another class (an OptunaHub sampler, the user's own) with that class's options.
@dataclass
class GridSamplerConf:
    # Every point of a discrete space once, claimed through the storage by whichever worker is free (the sweeper
    # enumerates the points itself: a resumed or conditional grid runs exactly its missing, valid points).
    _target_: str = "optuna.samplers.GridSampler"
    seed: int | None = None


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    n_startup_trials: int | None = None
    n_ei_candidates: int | None = None
    gamma: str | None = None  # dotpath of a callable (n) -> int
    weights: str | None = None  # dotpath of a callable (n) -> weights
    multivariate: bool | None = None
    group: bool | None = None
    warn_independent_sampling: bool | None = None
    constant_liar: bool | None = None  # Optuna 5: true by default, what concurrent workers need
    constraints_func: str | None = None  # dotpath of a callable (FrozenTrial) -> sequence of floats


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: int | None = None
    independent_sampler: Any = None  # a {_target_: ...} node
    n_startup_trials: int | None = None
    deterministic_objective: bool | None = None
    constraints_func: str | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class CmaEsSamplerConf:
    multi_objective: ClassVar[bool] = False
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int | None = None
    independent_sampler: Any = None
    warn_independent_sampling: bool | None = None
    consider_pruned_trials: bool | None = None
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int | None = None
    use_separable_cma: bool | None = None
    with_margin: bool | None = None
    lr_adapt: bool | None = None
    source_trials: Any = None  # a {_target_: ...} node that returns the trials


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int | None = None
    mutation: Any = None
    mutation_prob: float | None = None
    crossover: Any = None  # a {_target_: optuna.samplers.nsgaii.SBXCrossover} node
    crossover_prob: float | None = None
    swapping_prob: float | None = None
    constraints_func: str | None = None
    elite_population_selection_strategy: Any = None
    child_generation_strategy: Any = None
    after_trial_strategy: Any = None


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None
    qmc_type: str | None = None
    scramble: bool | None = None
    independent_sampler: Any = None
    warn_asynchronous_seeding: bool | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class MOTPESamplerConf:
    # Removed in Optuna 4.0: kept so the sweeper can say so in one line.
    _target_: str = "optuna.samplers.MOTPESampler"


SAMPLERS: dict[str, type] = {
    "grid": GridSamplerConf,
    "random": RandomSamplerConf,
    "tpe": TPESamplerConf,
    "gp": GPSamplerConf,
    "cmaes": CmaEsSamplerConf,
    "nsgaii": NSGAIISamplerConf,
    "nsga2": NSGAIISamplerConf,
    "qmc": QMCSamplerConf,
    "motpe": MOTPESamplerConf,
}

# --- pruners: `hydra.sweeper.pruner=median`, options in `hydra.sweeper.pruner_options` --------------------------
PRUNERS: dict[str, str] = {
    "none": "optuna.pruners.NopPruner",
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "threshold": "optuna.pruners.ThresholdPruner",
    "wilcoxon": "optuna.pruners.WilcoxonPruner",
}


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.hydra_optuna_studies.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # the sweeper builds the sampler and pruner nodes itself, with its own checks
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])

    # A sampler node (hydra/sweeper/sampler=tpe, then hydra.sweeper.sampler.seed=1, or a {_target_: ...} node of
    # any class), or just a name (hydra.sweeper.sampler=grid): grid | random | tpe | gp | cmaes | nsgaii (nsga2) | qmc.
    sampler: Any = MISSING  # filled by the defaults list above
    # Seed of the sampler when its node sets none: the same seed and storage replay the same suggestions.
    seed: int | None = None
    # More keyword arguments for the sampler class, e.g. {n_startup_trials: 5} for tpe.
    sampler_options: dict[str, Any] = field(default_factory=dict)

    # A name (none | median | percentile | successive_halving | hyperband | threshold | wilcoxon), or a
    # {_target_: ...} node of any pruner: stops trials whose reported values lag (the task reports them with
    # hydra_optuna_studies.reporting.report).
    pruner: Any = "none"
    # Keyword arguments for a named pruner, e.g. {n_startup_trials: 2, n_warmup_steps: 1}
    # (on the command line add keys with +: +hydra.sweeper.pruner_options.n_warmup_steps=1).
    pruner_options: dict[str, Any] = field(default_factory=dict)

    # minimize | maximize, or a list with one per objective. null: what the app's StudySpec says, else minimize
    # (hydra-optuna-sweeper's default).
    direction: Any = None

    # Optuna storage: a database URL (sqlite:///x.db, postgresql://...) or a *.journal file path.
    # null: <sweep dir>/optuna.journal, so rerunning the same command resumes the study (hydra-optuna-sweeper:
    # in memory, lost at exit).
    storage: str | None = None
    # null: the app's StudySpec name, else the job name (hydra.job.name).
    study_name: str | None = None

    # Finished trials the study should hold, counted across every worker (resuming counts those already there).
    # null: the grid's size for sampler=grid, else 20.
    n_trials: int | None = None
    # Trials in flight at once in this process: each slot starts the next trial as soon as its own ends (with an
    # in-process launcher such as basic, trials run one after another). hydra-optuna-sweeper: 2, in batches.
    n_jobs: int = 1
    # Worker processes this command starts on the one study (each with its own n_jobs slots), pinned to one GPU each
    # where several are visible, CPU threads split between them. Workers started by separate commands (other hosts,
    # SLURM, containers) join the same way: the same storage and study_name.
    workers: int = 1
    # null: a failed trial is recorded and the sweep goes on; the sweep exits non-zero only if every trial failed.
    # A number: hydra-optuna-sweeper's meaning: stop (non-zero exit) once the share of failed trials exceeds it;
    # 1.0 never stops and exits 0 whatever failed.
    max_failure_rate: float | None = None

    # Search space in Hydra's override grammar, e.g. {optimizer.lr: "tag(log, interval(1e-4, 0.5))"}, or
    # conditional: {optimizer.momentum: {when: {optimizer: sgd}, values: "interval(0, 0.99)"}}.
    # Command-line sweeps add to it and win on the same key.
    params: dict[str, Any] | None = None
    # Dotpath of a callable (config, optuna.Trial) -> None or {key: value}: define-by-run additions to each
    # trial's search space (trial.suggest_*), and optionally overrides derived from them.
    custom_search_space: str | None = None
    # A resumed study whose swept key was sampled from another space is refused, naming both spaces; true goes on
    # with the space the study already holds for such keys.
    keep_study_space: bool = False
    # Seconds between heartbeats of the trials a worker runs (at least 1): a RUNNING trial silent for three of them
    # is taken for orphaned (its worker killed, its container or machine gone), failed and retried once by any live
    # worker. Hosts sharing a study need clocks in step (NTP) to well within this.
    heartbeat_interval: float = 30.0
    # Seconds a database storage that stops answering (a restart, a failover, a SQLite file another process holds
    # locked) is waited out before the sweep gives up; a result it could not store is then kept in
    # <sweep dir>/pending/ and recorded by the next run of the command.
    storage_patience: float = 120.0


def sampler_node(name: str) -> dict[str, Any]:
    """The plain node of sampler ``name`` (a key of SAMPLERS): what ``hydra/sweeper/sampler=<name>`` selects."""
    return asdict(SAMPLERS[name]())


OFFICIAL_PACKAGE = "hydra_plugins.hydra_optuna_sweeper"


def official_installed() -> bool:
    """Whether hydra-optuna-sweeper itself is installed (not the stand-in for its class path: optuna_sweeper.py)."""
    module = sys.modules.get(OFFICIAL_PACKAGE)
    if module is not None:
        return not getattr(module, "STAND_IN", False)
    return importlib.util.find_spec(OFFICIAL_PACKAGE) is not None


def _warn_if_shadowed() -> None:
    """Both this sweeper and hydra-optuna-sweeper register ``hydra/sweeper=optuna``; the one imported last wins."""
    if official_installed():
        logging.getLogger(__name__).warning(
            "hydra-optuna-sweeper is installed beside hydra-optuna-studies and both register hydra/sweeper=optuna; "
            "uninstall one of them (pip uninstall hydra-optuna-sweeper) to be sure which one runs"
        )


_warn_if_shadowed()
_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="hydra-optuna-studies")
for _name in SAMPLERS:  # plain dicts: a config may add the options of another class it names as _target_
    _store.store(group="hydra/sweeper/sampler", name=_name, node=OmegaConf.create(sampler_node(_name)),
                 provider="hydra-optuna-studies")


@dataclass
class PoolLauncherConf:
    _target_: str = "hydra_plugins.hydra_optuna_studies.pool_launcher.PoolLauncher"
    # Worker processes: by default the sweeper's slots (hydra.sweeper.n_jobs), else 1.
    n_jobs: int = "${oc.select:hydra.sweeper.n_jobs,1}"  # type: ignore[assignment]


_store.store(group="hydra/launcher", name="pool", node=PoolLauncherConf, provider="hydra-optuna-studies")
