"""The Optuna sweeper of hydra-optuna-studies for Hydra: select it with ``hydra/sweeper=optuna``."""
