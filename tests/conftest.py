"""Shared fixtures: configs composed by real Hydra, small data sets written in torchvision's on-disk format."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sweep.cli import CONFIG_DIR
from sweep.config import GROUPS, TrialConfig, parse_config
from sweeper.tests.helpers import fresh_storage  # noqa: F401 - shared with the app's tests
from sweeper.tests.servers import PG_PASSWORD, free_port  # noqa: F401 - shared with the app's tests

ROOT = Path(__file__).resolve().parent.parent
SWEEP = str(Path(sys.executable).parent / "sweep")
CUDA = pytest.mark.gpu  # skipped below where no CUDA device is available (CI has none)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def composed(*overrides: str) -> dict:
    """The plain config real Hydra composes from conf/ with ``overrides`` (as in ``sweep ...``)."""
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)


def trial_config(*overrides: str) -> tuple[TrialConfig, dict]:
    resolved = composed(*overrides)
    return parse_config(resolved), resolved


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed ``sweep`` command as a user would."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([SWEEP, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the session (a new store costs seconds to create)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file as in the MNIST distribution: magic (0, 0, 0x08 = uint8, ndim), big-endian dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...], classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake images: each class brightens its own band of pixels."""
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, *shape)).astype(np.uint8)
    flat = images.reshape(n, -1)
    band = flat.shape[1] // classes
    for i, label in enumerate(labels):
        flat[i, label * band : (label + 1) * band] += 150
    return images, labels


@pytest.fixture(scope="session")
def torchvision_root(tmp_path_factory) -> Path:
    """MNIST, Fashion-MNIST and CIFAR-10 in torchvision's layout, a few hundred images each."""
    root = tmp_path_factory.mktemp("torchvision")
    rng = np.random.default_rng(0)
    for folder in ("MNIST", "FashionMNIST"):
        raw = root / folder / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", 300), ("t10k", 100)):
            images, labels = _images(rng, n, (28, 28), 10)
            _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images, labels = _images(rng, 60, (3, 32, 32), 10)
        with (cifar / name).open("wb") as f:
            pickle.dump({"data": images.reshape(60, -1), "labels": labels.tolist()}, f)
    with (cifar / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


# Every option of every config group, as overrides ("model=cnn"); data sets other than digits use the
# torchvision-layout fixture files.
GROUPS_OPTIONS = [f"{group}={option}" for group, choices in GROUPS.items() for option in sorted(choices)]
