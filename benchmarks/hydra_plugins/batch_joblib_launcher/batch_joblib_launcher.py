"""hydra/launcher=batch_joblib: joblib's launcher, handed its jobs in batches of n_jobs and waiting for the slowest of
each, as hydra-optuna-sweeper and this sweeper before its slots did: the baseline of benchmarks/workers.py. The
sweeper hands batches to a launcher that sets SWEEP_BATCHES (the contract a stacked launcher uses)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


class BatchJoblibLauncher(JoblibLauncher):
    SWEEP_BATCHES = True


@dataclass
class BatchJoblibLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.batch_joblib_launcher.batch_joblib_launcher.BatchJoblibLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="batch_joblib", node=BatchJoblibLauncherConf,
                             provider="benchmarks")
