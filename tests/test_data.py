"""Data sets: the bundled digits, and torchvision's real MNIST loader on real-format files."""

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainables.data import DataUnavailable, check_available, get_spec, load_dataset


def test_mnist5k_is_4000_train_1000_val_real_digits_cached_as_npy(tmp_path):
    data = load_dataset("mnist5k", str(tmp_path))
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_val.shape == (1000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32
    assert sorted(data.y_train.unique().tolist()) == list(range(10))
    # shuffled before the split (the bundled CSV is sorted by label): every digit in val
    assert len(data.y_val.unique()) == 10
    assert abs(float(data.x_train.mean())) < 0.2  # normalised
    assert {p.name for p in (tmp_path / "mnist5k").glob("*.npy")} == {
        "x_train.npy",
        "y_train.npy",
        "x_val.npy",
        "y_val.npy",
    }
    again = get_spec("mnist5k").read(tmp_path)  # second load reads the cache
    assert torch.equal(again.y_val, data.y_val)


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, rows, cols) + images.tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


def test_torchvision_mnist_loader_reads_real_idx_files_offline(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 8)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        if prefix == "train":
            train_images, train_labels = images, labels
    check_available("mnist", str(tmp_path))
    data = load_dataset("mnist", str(tmp_path))
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_val.shape == (8, 1, 28, 28)
    assert data.y_train.tolist() == train_labels.tolist()
    expected = (torch.as_tensor(train_images[3], dtype=torch.float32) / 255 - 0.1307) / 0.3081
    assert torch.allclose(data.x_train[3, 0], expected)


def test_missing_torchvision_data_says_how_to_fetch_it(tmp_path):
    with pytest.raises(DataUnavailable, match="python -m trainables.data fetch mnist"):
        check_available("mnist", str(tmp_path))


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="choose from mnist5k, mnist, fashion_mnist"):
        get_spec("imagenet")


def test_fetch_command_prepares_the_bundled_digits(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "trainables.data", "fetch", "mnist5k", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "ready" in out.stdout
    assert (tmp_path / "mnist5k" / "x_train.npy").is_file()
