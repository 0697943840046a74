"""Data sets as tensors on the training device, loaded once per process.

Every data set is held as uint8 images ``(N, C, H, W)`` plus int64 labels, split once into train / validation /
test, and cached per (data set, device): a sweep of many trials in one process reads the disk once and never
copies the images again. Trials turn a batch into floats in [0, 1] on the device (``Split.batch``); with
``data.preprocess=standardize`` the model normalises them with the training statistics itself, so DeepFool
perturbations live in this [0, 1] input space whatever the preprocessing.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra_optuna_studies.errors import SweepError

from sweep.config import TORCHVISION_DIRS, DataConfig, missing_data


@dataclass(frozen=True)
class Split:
    """One split of a data set: uint8 images and int64 labels on one device."""

    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64
    scale: float  # multiplies the uint8 values into [0, 1]
    rows: torch.Tensor  # (N,) int64 on the CPU: each example's position in the data set's own file order

    def __len__(self) -> int:
        return self.y.shape[0]

    def batch(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Float inputs in [0, 1] and labels for ``index``; the only place images become float."""
        return self.x[index].float().mul_(self.scale), self.y[index]

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples as a view (no copy); the split is pre-shuffled, so this is a random subset."""
        return self if n is None or n >= len(self) else Split(self.x[:n], self.y[:n], self.scale, self.rows[:n])

    def first_in_file(self, n: int) -> torch.Tensor:
        """Indices of the ``n`` examples that come first in the data set's file (the studies' "first 1,000")."""
        return torch.argsort(self.rows)[:n]


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    num_classes: int
    mean: torch.Tensor  # (C,) per-channel mean of the training inputs in [0, 1]
    std: torch.Tensor  # (C,)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


_CACHE: dict[tuple, Dataset] = {}


def load_dataset(cfg: DataConfig, device: torch.device) -> Dataset:
    """The data set of ``cfg`` on ``device``, read from disk only the first time in this process."""
    key = (cfg.name, str(Path(cfg.root).resolve()), cfg.val_fraction, str(device))
    if key not in _CACHE:
        for old in [k for k in _CACHE if k[-1] == str(device) and k[:3] != key[:3]]:
            del _CACHE[old]  # one data set per device at a time keeps memory flat across a mixed sweep
        _CACHE[key] = _build(cfg, device)
    return _CACHE[key]


def _build(cfg: DataConfig, device: torch.device) -> Dataset:
    (x_train, y_train), (x_test, y_test), scale = _READERS[cfg.name](cfg)
    # One fixed shuffle (seed 0) so validation is the same for every trial and train_subset is random.
    order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))
    n_val = round(cfg.val_fraction * len(order))
    if cfg.val_fraction > 0:
        n_val = max(1, n_val)
    val_idx, train_idx = order[:n_val], order[n_val:]
    train_x = x_train[train_idx]
    floats = train_x.float() * scale
    mean = floats.mean(dim=(0, 2, 3))
    std = floats.std(dim=(0, 2, 3)).clamp_min(1e-6)
    del floats

    def split(x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> Split:
        return Split(x.to(device), y.to(device), scale, rows)

    return Dataset(
        train=split(train_x, y_train[train_idx], train_idx),
        val=split(x_train[val_idx], y_train[val_idx], val_idx),
        test=split(x_test, y_test, torch.arange(len(y_test))),
        num_classes=int(max(y_train.max(), y_test.max())) + 1,
        mean=mean.to(device),
        std=std.to(device),
    )


Arrays = tuple[torch.Tensor, torch.Tensor]


def _read_digits(cfg: DataConfig) -> tuple[Arrays, Arrays, float]:
    """scikit-learn's bundled 8x8 digits (0..16 grey levels): a fixed 20% test split, no download ever."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test]), 1.0 / 16.0


def _require(cfg: DataConfig) -> Path:
    """The data set's folder under data.root, downloading it only when data.download is set."""
    problem = missing_data(cfg)
    if problem and not cfg.download:
        raise SweepError(problem)
    if problem:
        _download(cfg)
    return Path(cfg.root) / TORCHVISION_DIRS[cfg.name]


def _download(cfg: DataConfig) -> None:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}
    try:
        for train in (True, False):
            cls[cfg.name](cfg.root, train=train, download=True)
    except Exception as error:  # noqa: BLE001 - any network or disk failure means the same thing to the user
        raise SweepError(f"data.download: could not fetch {cfg.name} into {cfg.root}: {error}") from error


_MNIST_CLASSES = 10  # MNIST and Fashion-MNIST label their images 0..9


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file as the MNIST distribution writes it: magic (0, 0, 0x08 = uint8, ndim), ``ndim`` big-endian uint32
    sizes, then the bytes. Anything else is one line naming the file (torchvision's reader fails with a traceback)."""
    if not path.is_file():
        raise SweepError(f"data.root: {path} is missing; set data.download=true to fetch it")
    data = path.read_bytes()
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 8, ndim)):
        raise SweepError(f"data.root: {path} is not an idx file of uint8 with {ndim} dimension(s) "
                         f"({len(data)} bytes, starting {data[:4].hex() or 'empty'})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != int(np.prod(shape)):
        raise SweepError(f"data.root: {path} holds {len(data) - header} bytes of data, its header says {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_mnist_like(cfg: DataConfig) -> tuple[Arrays, Arrays, float]:
    """MNIST and Fashion-MNIST from torchvision's layout of their idx files, each checked as it is read."""
    folder = _require(cfg)

    def read(prefix: str) -> Arrays:
        images = _read_idx(folder / f"{prefix}-images-idx3-ubyte", 3)
        labels_path = folder / f"{prefix}-labels-idx1-ubyte"
        labels = _read_idx(labels_path, 1)
        if len(labels) != len(images):
            raise SweepError(f"data.root: {labels_path} has {len(labels)} labels for {len(images)} images")
        if labels.size and labels.max() >= _MNIST_CLASSES:
            raise SweepError(f"data.root: {labels_path} has label {labels.max()}; {cfg.name} labels are 0..9")
        return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))

    return read("train"), read("t10k"), 1.0 / 255.0


def _read_cifar10(cfg: DataConfig) -> tuple[Arrays, Arrays, float]:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py`` pickles.

    Read here rather than through ``torchvision.datasets.CIFAR10``, whose md5 check refuses every copy but the
    official archive, so small files in the same format can exercise this code in tests.
    """
    folder = _require(cfg)

    def read(names: list[str]) -> Arrays:
        xs, ys = [], []
        for name in names:
            path = folder / name
            if not path.is_file():
                raise SweepError(f"data.root: {path} is missing; set data.download=true to fetch CIFAR-10")
            with path.open("rb") as f:
                entry = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry["labels"], dtype=np.int64))
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    return read([f"data_batch_{i}" for i in range(1, 6)]), read(["test_batch"]), 1.0 / 255.0


_READERS = {
    "digits": _read_digits,
    "mnist": _read_mnist_like,
    "fashion_mnist": _read_mnist_like,
    "cifar10": _read_cifar10,
}
