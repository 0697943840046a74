"""Hydra's own generic test suites for sweepers and launchers, run against this Optuna sweeper, in one process.

``IntegrationTestSuite`` runs small apps with ``-m`` and checks job names, working and output folders, and path
helpers; ``BatchedSweeperTestSuite`` sweeps two config groups x three values with two jobs at a time and checks every
job's overrides, config and folder; ``LauncherTestSuite`` sweeps with each launcher (the in-process basic one,
joblib's processes, this package's pool) and checks the same. All three are Hydra's code, imported as Hydra ships
them, and pytest runs them in this one process, one after another: nothing a sweep does may leak into the next
(Hydra's version base, its config singleton, the working directory, logging, a storage object of an earlier sweep,
a pool process's context).

What differs on purpose is set here, in the parameters: a search needs hydra/sweeper=optuna and, for Hydra's
comma-separated values to run each once, the grid sampler.
"""

from __future__ import annotations

import pytest
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)

pytestmark = pytest.mark.slow
GRID = ["hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_jobs=2"]


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
    [("basic", [*GRID, "hydra.job.chdir=True"]), ("pool", [*GRID, "hydra.job.chdir=True"])],
)
class TestOptunaSweeperBatches(BatchedSweeperTestSuite):
    """A grid over group1=file1,file2 x bar=100,200,300, two jobs at a time, returned in batches of two."""


@pytest.mark.parametrize(
    ("launcher_name", "overrides"),
    [("basic", [*GRID, "hydra.job.chdir=True"]), ("joblib", [*GRID, "hydra.job.chdir=True"]),
     ("pool", [*GRID, "hydra.job.chdir=True"])],
)
class TestOptunaSweeperLaunchers(LauncherTestSuite):
    """Each launcher under the sweeper: one job, two jobs, two config groups, keys a group brings, resolvers."""


@pytest.mark.parametrize(("launcher_name", "overrides"), [("pool", ["hydra.job.chdir=True"])])
class TestPoolLauncherUnderHydrasBasicSweeper(LauncherTestSuite):
    """The pool launcher is a launcher for any sweeper: under Hydra's basic one (no ``n_jobs`` to follow: one
    process), batches of several jobs in one ``launch``."""
