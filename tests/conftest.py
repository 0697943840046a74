"""Shared fixtures: configs composed by real Hydra, small data sets written in torchvision's on-disk format."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sweep.cli import CONFIG_DIR
from sweep.config import GROUPS, TrialConfig, parse_config

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


def fresh_storage(spec: str):
    """A new reader of an Optuna storage (not the process's cached one): what is on disk now."""
    import optuna

    if spec.endswith(".journal"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(spec))
    return optuna.storages.RDBStorage(spec)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed ``sweep`` command as a user would."""
    full_env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([SWEEP, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PG_PASSWORD = "supersecret"  # tests grep every file a sweep leaves for it


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server whose database needs a password, started by the project's scripts/pg-server."""
    base = Path(tempfile.mkdtemp(prefix="sweep-pg-"))
    base.chmod(0o755)  # the server runs as the postgres user, which must reach its folder
    script = str(ROOT / "scripts" / "pg-server")
    start = [script, "start", str(base / "db"), str(free_port()), "sweepuser", PG_PASSWORD, "optuna_db"]
    url = subprocess.run(start, check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    yield url
    subprocess.run([script, "stop", str(base / "db")], capture_output=True, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


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
