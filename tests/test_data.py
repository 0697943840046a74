"""Data sets load from real on-disk formats, once per process, with fixed splits and training statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra_optuna_studies.errors import SweepError

from sweep.data import DataConfig, load_dataset

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


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("images_8_bytes", "train-images-idx3-ubyte is not an idx file of uint8 with 3 dimension(s) (8 bytes"),
        ("images_empty", "train-images-idx3-ubyte is not an idx file of uint8 with 3 dimension(s) (0 bytes"),
        ("images_cut", "train-images-idx3-ubyte holds"),
        ("more_labels", "train-labels-idx1-ubyte has 301 labels for 300 images"),
        ("fewer_labels", "train-labels-idx1-ubyte has 299 labels for 300 images"),
        ("label_249", "train-labels-idx1-ubyte has label 249; mnist labels are 0..9"),
        ("labels_missing", "train-labels-idx1-ubyte is missing"),
    ],
)
def test_damaged_idx_files_are_one_line_naming_the_file(torchvision_root: Path, tmp_path: Path, damage: str,
                                                         message: str) -> None:
    """Real idx files (the fixture's, in MNIST's own format), copied and damaged the way disks and downloads do."""
    import shutil

    import numpy as np

    from tests.conftest import _write_idx

    root = tmp_path / "root"
    shutil.copytree(torchvision_root / "MNIST", root / "MNIST")
    raw = root / "MNIST" / "raw"
    images, labels = raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"
    original = np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8)
    if damage == "images_8_bytes":
        images.write_bytes(images.read_bytes()[:8])
    elif damage == "images_empty":
        images.write_bytes(b"")
    elif damage == "images_cut":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "more_labels":
        _write_idx(labels, np.append(original, 3))
    elif damage == "fewer_labels":
        _write_idx(labels, original[:-1])
    elif damage == "label_249":
        _write_idx(labels, np.where(np.arange(len(original)) == 7, 249, original))
    else:
        labels.unlink()
    with pytest.raises(SweepError) as raised:
        load_dataset(DataConfig(name="mnist", root=str(root)), CPU)
    assert message in str(raised.value) and str(raw) in str(raised.value) and "\n" not in str(raised.value)
