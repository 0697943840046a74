"""Data sets load from real on-disk formats, once per process, with fixed splits and training statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweep.data import DataConfig, load_dataset
from sweep.errors import SweepError

CPU = torch.device("cpu")


def test_digits_splits_are_disjoint_uint8_and_fixed() -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    assert data.train.x.dtype == torch.uint8 and data.input_shape == (1, 8, 8) and data.num_classes == 10
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert load_dataset(DataConfig(name="digits"), CPU) is data  # cached: read once per process
    x, _ = data.train.batch(slice(0, 5))
    assert x.dtype == torch.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert torch.allclose(data.mean, (data.train.x.float() / 16).mean(dim=(0, 2, 3)))


def test_train_subset_is_a_view_not_a_copy() -> None:
    data = load_dataset(DataConfig(name="digits"), CPU)
    subset = data.train.head(100)
    assert len(subset) == 100 and subset.x.data_ptr() == data.train.x.data_ptr()


@pytest.mark.parametrize(("name", "shape", "n_train", "n_test"), [
    ("mnist", (1, 28, 28), 300, 100),
    ("fashion_mnist", (1, 28, 28), 300, 100),
    ("cifar10", (3, 32, 32), 300, 60),
])
def test_torchvision_layouts_load(torchvision_root: Path, name: str, shape: tuple, n_train: int, n_test: int) -> None:
    data = load_dataset(DataConfig(name=name, root=str(torchvision_root), val_fraction=0.2), CPU)
    assert data.input_shape == shape
    assert len(data.train) + len(data.val) == n_train and len(data.test) == n_test
    assert data.train.x.dtype == torch.uint8 and data.train.y.dtype == torch.int64


def test_missing_data_names_path_and_flag(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"data.root: cifar10 not found at .*data.download=true"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), CPU)


def test_incomplete_cifar_names_missing_file(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(b"")
    with pytest.raises(SweepError, match="data_batch_1 is missing"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), CPU)
