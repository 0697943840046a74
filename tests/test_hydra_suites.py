"""Hydra's own generic test suites for sweepers and launchers, run against our Optuna sweeper.

``IntegrationTestSuite`` runs small apps with ``-m`` and checks job names, working and output folders, and path
helpers; ``BatchedSweeperTestSuite`` sweeps two config groups x three values in batches of two and checks every
job's overrides, config and folder. Both are Hydra's code, imported as Hydra ships them.
"""

from __future__ import annotations

import pytest
from hydra.test_utils.launcher_common_tests import BatchedSweeperTestSuite, IntegrationTestSuite

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"),
    [({}, ["-m", "hydra/sweeper=optuna", "hydra/launcher=basic", "hydra/hydra_logging=disabled",
           "hydra/job_logging=disabled"])],
)
class TestOptunaSweeperIntegration(IntegrationTestSuite):
    """Jobs with no search space: the sweeper runs each once, as Hydra's basic sweeper does."""


@pytest.mark.parametrize(
    ("launcher_name", "overrides"),
    # hydra.job.chdir=True: the suite looks for each job's log in its working directory, Hydra's default before 1.2
    # (Hydra's own basic sweeper fails it without this too).
    [("basic", ["hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_jobs=2",
                "hydra.job.chdir=True"])],
)
class TestOptunaSweeperBatches(BatchedSweeperTestSuite):
    """A grid over group1=file1,file2 x bar=100,200,300, handed to the launcher two trials at a time."""
