"""The stacked launcher's config, registered as ``hydra/launcher=stacked`` (Hydra imports every module of a plugin
package while scanning, without registering it as a module: a dataclass with postponed annotations would not load
there, so this module keeps plain annotations)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.sweep_stacked_launcher.stacked_launcher.StackedLauncher"
    batch: int = 64  # trials handed over at once, unless hydra.sweeper.n_jobs is above 1: stacks form among them


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="sweep")
