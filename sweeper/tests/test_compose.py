"""The sweeper's reusing config loader composes exactly what Hydra composes, and skips Hydra when it can."""

from __future__ import annotations

import pickle

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from hydra_plugins.hydra_optuna_studies._compose import ReusingConfigLoader
from omegaconf import OmegaConf

from sweeper.tests.helpers import APPS

CONFIG_DIR = str(APPS / "grouped" / "conf")


class CountingLoader:
    """Hydra's real loader, counting the full compositions asked of it."""

    def __init__(self, loader) -> None:
        self.loader, self.calls = loader, 0

    def load_sweep_config(self, master, overrides):
        self.calls += 1
        return self.loader.load_sweep_config(master, overrides)


@pytest.fixture
def loader():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


TRIALS = {
    "values": [["optimizer.lr=0.1", "train.batch_size=16"], ["optimizer.lr=0.01", "train.batch_size=64"],
               ["optimizer.lr=1e-3", "train.batch_size=256"]],
    "fixed group, lists and strings": [["net=wide", "net.channels=[8,16]", "tracking.experiment='a b'"],
                                       ["net=wide", "net.channels=[4]", "tracking.experiment=c"]],
    "group varies": [["net=small", "optimizer.lr=0.1"], ["net=wide", "optimizer.lr=0.1"],
                     ["net=small", "optimizer.lr=0.2"]],
    "added keys": [["+experiment=quick", "+tag=1", "optimizer.lr=0.3"],
                   ["+experiment=quick", "+tag=2", "optimizer.lr=0.4"]],
    "deleted key": [["~extra", "optimizer.lr=0.3"], ["~extra", "optimizer.lr=0.5"]],
    "contract environment": [["optimizer.lr=0.3", "++hydra.job.env_set.SWEEP_TRIAL_NUMBER=0"],
                             ["optimizer.lr=0.5", "++hydra.job.env_set.SWEEP_TRIAL_NUMBER=1"]],
}
FULL_COMPOSITIONS = {"values": 1, "fixed group, lists and strings": 1, "group varies": 2, "added keys": 2,
                     "deleted key": 1, "contract environment": 1}


@pytest.mark.parametrize("case", list(TRIALS))
def test_same_config_as_hydra_with_fewer_compositions(loader, case: str) -> None:
    master = loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
    counting = CountingLoader(loader)
    reusing = ReusingConfigLoader(counting)
    for overrides in TRIALS[case]:
        fast = reusing.load_sweep_config(master, overrides)
        hydra = loader.load_sweep_config(master, overrides)
        assert OmegaConf.to_container(fast) == OmegaConf.to_container(hydra), overrides
    assert counting.calls == FULL_COMPOSITIONS[case]


def test_a_config_handed_out_is_not_shared(loader) -> None:
    """Launchers write hydra.job.num into each config; that must not leak into the next trial's."""
    master = loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
    reusing = ReusingConfigLoader(loader)
    first = reusing.load_sweep_config(master, ["optimizer.lr=0.1"])
    first.hydra.job.num = 7
    first.optimizer.lr = 5.0
    second = reusing.load_sweep_config(master, ["optimizer.lr=0.2"])
    assert second.optimizer.lr == 0.2 and OmegaConf.is_missing(second.hydra.job, "num")
    assert second.hydra.overrides.task == ["optimizer.lr=0.2"]
    assert second.hydra.job.override_dirname == "optimizer.lr=0.2"


def test_a_job_process_reuses_its_sweeps_compositions_from_job_to_job(loader) -> None:
    """joblib sends each job its own pickled copy of the loader, to worker processes it keeps: the copies of one
    sweep in one process share their compositions; another sweep's loader composes its own."""
    master = loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
    sweep = ReusingConfigLoader(CountingLoader(loader))
    first, second = (pickle.loads(pickle.dumps(sweep)) for _ in range(2))  # two jobs of the sweep, one process
    first.load_sweep_config(master, TRIALS["values"][0])
    job = second.load_sweep_config(master, TRIALS["values"][1])
    assert (first.calls, second.calls) == (1, 0)
    assert OmegaConf.to_container(job) == OmegaConf.to_container(loader.load_sweep_config(master, TRIALS["values"][1]))
    other = pickle.loads(pickle.dumps(ReusingConfigLoader(CountingLoader(loader))))
    other.load_sweep_config(master, TRIALS["values"][2])
    assert other.calls == 1


def test_a_password_is_masked_in_full_compositions_and_in_their_copies(loader) -> None:
    """Hydra writes each job's config to ``.hydra/``: a password from the master config stays masked in the copies
    made from a kept composition, and one an override brings is masked where that override is."""
    url = "postgresql://sweep:hunter2secret@db/optuna"
    master = loader.load_configuration("config", ["hydra/sweeper=optuna", f"hydra.sweeper.storage='{url}'"],
                                       RunMode.MULTIRUN)
    reusing = ReusingConfigLoader(loader)
    for lr in (0.1, 0.2):  # the first composed by Hydra, the second a copy
        config = reusing.load_sweep_config(master, [f"optimizer.lr={lr}", f"tracking.experiment='{url}'"])
        text = OmegaConf.to_yaml(config)
        assert "hunter2secret" not in text and config.optimizer.lr == lr
        assert config.hydra.sweeper.storage == config.tracking.experiment != url
    clean = reusing.load_sweep_config(master, ["optimizer.lr=0.3", "tracking.experiment=plain"])
    assert clean.tracking.experiment == "plain" and "hunter2secret" not in OmegaConf.to_yaml(clean)


def test_a_password_in_a_config_file_stays_masked_in_every_copy(tmp_path) -> None:
    """With no override bringing one, a copy is not masked again: the composition it is copied from must be."""
    (tmp_path / "config.yaml").write_text("db: postgresql://sweep:hunter2secret@db/optuna\nlr: 0.1\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["hydra/sweeper=optuna"], RunMode.MULTIRUN)
        reusing = ReusingConfigLoader(loader)
        for lr in (0.2, 0.3, 0.4):
            config = reusing.load_sweep_config(master, [f"lr={lr}"])
            assert config.lr == lr and "hunter2secret" not in OmegaConf.to_yaml(config)
