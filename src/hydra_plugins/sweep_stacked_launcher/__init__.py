"""sweep's stacked launcher for Hydra: select it with ``hydra/launcher=stacked`` (see ``stacked_launcher``)."""
