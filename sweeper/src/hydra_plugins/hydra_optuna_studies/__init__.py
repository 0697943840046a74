"""The Optuna sweeper of hydra-optuna-studies for Hydra: select it with ``hydra/sweeper=optuna``; and its launcher
for slots on one machine, ``hydra/launcher=pool``."""
