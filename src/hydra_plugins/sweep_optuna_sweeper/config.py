"""The ``hydra/sweeper=optuna`` config node, and one options node per sampler (``hydra/sweeper/sampler=<name>``).

The keys of hydra-optuna-sweeper keep their names and meaning, so its configs run unchanged; where a default
differs on purpose the comment says so (and the README's "Switching from hydra-optuna-sweeper"). Hydra imports this
module for every app at start-up: it holds dataclasses only.
"""

import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


# --- samplers: `hydra/sweeper/sampler=tpe` then `hydra.sweeper.sampler.seed=1`, ... -----------------------------
# Every option defaults to None, which means Optuna's own default: Optuna stays the one source of truth for them.
@dataclass
class GridSamplerConf:
    name: str = "grid"  # every point of a discrete space once (the sweeper enqueues them; see sweep.study.registry)
    seed: int | None = None


@dataclass
class RandomSamplerConf:
    name: str = "random"  # optuna.samplers.RandomSampler
    seed: int | None = None


@dataclass
class TPESamplerConf:
    name: str = "tpe"  # optuna.samplers.TPESampler
    seed: int | None = None
    n_startup_trials: int | None = None
    n_ei_candidates: int | None = None
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool | None = None
    consider_prior: bool | None = None
    prior_weight: float | None = None
    consider_magic_clip: bool | None = None
    consider_endpoints: bool | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class GPSamplerConf:
    name: str = "gp"  # optuna.samplers.GPSampler
    seed: int | None = None
    n_startup_trials: int | None = None
    deterministic_objective: bool | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class CmaEsSamplerConf:
    name: str = "cmaes"  # optuna.samplers.CmaEsSampler
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int | None = None
    consider_pruned_trials: bool | None = None
    restart_strategy: str | None = None
    popsize: int | None = None
    inc_popsize: int | None = None
    use_separable_cma: bool | None = None
    with_margin: bool | None = None
    lr_adapt: bool | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class NSGAIISamplerConf:
    name: str = "nsgaii"  # optuna.samplers.NSGAIISampler (also spelled nsga2)
    seed: int | None = None
    population_size: int | None = None
    mutation_prob: float | None = None
    crossover_prob: float | None = None
    swapping_prob: float | None = None


@dataclass
class QMCSamplerConf:
    name: str = "qmc"  # optuna.samplers.QMCSampler
    seed: int | None = None
    qmc_type: str | None = None
    scramble: bool | None = None
    warn_asynchronous_seeding: bool | None = None
    warn_independent_sampling: bool | None = None


@dataclass
class MOTPESamplerConf:
    name: str = "motpe"  # removed in Optuna 4.0: kept so the sweeper can say so in one line
    seed: int | None = None


SAMPLER_NODES: dict[str, type] = {
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


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.sweep_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}])

    # A sampler options node (hydra/sweeper/sampler=tpe, then hydra.sweeper.sampler.seed=1), or just its name
    # (hydra.sweeper.sampler=grid): grid | random | tpe | gp | cmaes | nsgaii (nsga2) | qmc.
    sampler: Any = MISSING  # filled by the defaults list above; MISSING does not override it
    # Seed of the sampler when its node sets none: the same seed and storage replay the same suggestions.
    seed: int | None = None
    # More keyword arguments for the Optuna sampler class, e.g. {n_startup_trials: 5} for tpe.
    sampler_options: dict[str, Any] = field(default_factory=dict)

    # none | median | percentile | successive_halving | hyperband | threshold: stops trials whose reported
    # values lag (the task reports them with sweep.reporting.report).
    pruner: str = "none"
    # Keyword arguments for the Optuna pruner class, e.g. {n_startup_trials: 2, n_warmup_steps: 1}
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

    # Trials the study should hold when done (resuming counts those already finished).
    # null: the grid's size for sampler=grid, else 20.
    n_trials: int | None = None
    # Trials handed to the launcher at a time (hydra-optuna-sweeper: 2).
    n_jobs: int = 1
    # Stop the sweep once the share of failed trials exceeds this (hydra-optuna-sweeper: 0.0, the first failure
    # stops it). 1.0: a failed trial is recorded and the sweep goes on.
    max_failure_rate: float = 1.0

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
    # Seconds between heartbeats of the trials a sweep runs: a RUNNING trial silent for three of them is taken for
    # orphaned (its sweep killed, its container or machine gone) and failed and redone by the next sweep anywhere.
    # Hosts sharing a study need clocks in step (NTP) to well within this.
    heartbeat_interval: float = 30.0


def _warn_if_shadowed() -> None:
    """Both this sweeper and hydra-optuna-sweeper register ``hydra/sweeper=optuna``; the one imported last wins."""
    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None:
        logging.getLogger(__name__).warning(
            "hydra-optuna-sweeper is installed beside sweep's Optuna sweeper and both register hydra/sweeper=optuna; "
            "uninstall one of them (pip uninstall hydra-optuna-sweeper) to be sure which one runs"
        )


_warn_if_shadowed()
_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="sweep")
for _name, _node in SAMPLER_NODES.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node(name=_name), provider="sweep")
