"""hydra-optuna-studies: an Optuna 5 sweeper for any Hydra app, and the tools that read its studies.

The sweeper itself is the Hydra plugin ``hydra_plugins.hydra_optuna_studies`` (``hydra/sweeper=optuna``). This
package is what an app and a user touch: the contract between the sweeper and a job (:mod:`.contract`), the API a
job reports through (:mod:`.reporting`), and the study tools (``sweep-report``, ``sweep-export``).
"""
