"""The trial's own error; the one-line user errors (``SweepError``, ``ConfigError``) are the sweeper library's."""

from __future__ import annotations

from hydra_optuna_studies.errors import SweepError


class TrialDiverged(SweepError):
    """The loss became NaN or infinite: the trial stops at once and is recorded as failed."""
