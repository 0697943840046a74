"""The ``hydra/sweeper=optuna`` config node. Keys shared with hydra-optuna-sweeper keep its names."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.sweep_optuna_sweeper.optuna_sweeper.OptunaSweeper"

    # grid | random | tpe | gp | cmaes | nsga2 | qmc
    sampler: str = "tpe"
    # Seed of the sampler: the same seed and storage replay the same suggestions.
    seed: int | None = None
    # Extra keyword arguments for the Optuna sampler class, e.g. {n_startup_trials: 5} for tpe.
    sampler_options: dict[str, Any] = field(default_factory=dict)

    # none | median | successive_halving | hyperband: stops trials whose objective lags, epoch by epoch.
    pruner: str = "none"
    # Extra keyword arguments for the Optuna pruner class, e.g. {n_startup_trials: 2, n_warmup_steps: 1}.
    # (On the command line add keys with +: +hydra.sweeper.pruner_options.n_warmup_steps=1.)
    pruner_options: dict[str, Any] = field(default_factory=dict)

    # minimize | maximize, one per objective metric; null: maximize, except *_loss and *_seconds metrics.
    direction: Any = None

    # Optuna storage: a database URL (sqlite:///x.db, postgresql://...) or a *.journal file path.
    # null: <sweep dir>/optuna.journal, so rerunning the same command resumes the study.
    storage: str | None = None
    # null: the trial config's `name`.
    study_name: str | None = None

    # Trials the study should hold when done (resuming counts those already finished).
    # null: the grid's size for sampler=grid, else 20.
    n_trials: int | None = None
    # Trials handed to the launcher at a time.
    n_jobs: int = 1

    # Search space in Hydra's override grammar, e.g. {optimizer.lr: "tag(log, interval(1e-4, 0.5))"}.
    # Command-line sweeps add to it and win on the same key.
    params: dict[str, str] = field(default_factory=dict)

ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="sweep")
