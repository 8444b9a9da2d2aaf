"""The tutorial-style baseline of `make bench`: the article grid as a Ray Tune tutorial writes it.

What makes it "tutorial style" (the Ray Tune + PyTorch tutorials' pattern, kept on purpose):
- a torchvision-style `Dataset` over the uint8 images that decodes every sample through PIL
  (`Image.fromarray`, as torchvision's MNIST does) and applies `ToTensor` + `Normalize`;
- a `DataLoader` (shuffle, `num_workers=0`: each trial has one CPU) for training and validation;
- the article's CNN defined inline, plain SGD, per-step linear warmup through `LambdaLR`;
- a fresh trainable per trial (`reuse_actors` left at Ray's default, False): every trial starts a
  new worker process, imports torch and reads its data set again;
- one `tune.report` with a checkpoint per epoch; Ray's default resources (1 CPU per trial), and
  torch's threads left to Ray's default (OMP_NUM_THREADS = the trial's CPUs).
The work is the same as the project's grid (same model, data, lr, warmup, epochs, batches).

Run the grid alone (bench.py does this, beside the project's sweep):
    python -m benchmarks.tutorial --storage /tmp/bench --name tutorial [--quick]
The pieces without Ray (`MNISTImages`, `Net`, `run_epochs`) are also used by bench.py and
gpu_check.py for the per-trial samples/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from trainables.contract import DEFAULT_DATA_DIR

MEAN, STD = 0.1307, 0.3081
BATCH_MULTIPLES = [1, 2, 3, 4, 5, 6, 7]  # the article's grid: B = 8k, lr = 0.001k
WARMUPS = [0, 1]  # warmup epochs


class MNISTImages(Dataset):
    """uint8 digits decoded per sample through PIL, as torchvision.datasets.MNIST does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i])  # 2-D uint8: mode "L"
        return self.transform(img), int(self.labels[i])


class Net(nn.Module):
    """The article's CNN: conv 3x3 (32) -> ReLU -> maxpool 2 -> dropout 0.25 -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.dropout = nn.Dropout(0.25)
        self.fc1 = nn.Linear(5408, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc1(torch.flatten(self.dropout(x), 1))


def load_arrays(data_dir: str) -> tuple[np.ndarray, ...]:
    """The mnist5k digits' uint8 files (the counterpart of torchvision's raw MNIST files)."""
    folder = Path(data_dir) / "mnist5k"
    return tuple(np.load(folder / f"{n}.npy") for n in ("x_train", "y_train", "x_val", "y_val"))


def run_epochs(
    arrays: tuple[np.ndarray, ...],
    batch_size: int,
    lr: float,
    warmup_epochs: float,
    epochs: int,
    device: str,
    n_train: int = 0,
    seed: int = 0,
) -> Iterator[dict[str, float]]:
    """The tutorial's training loop; yields metrics after every epoch (train + validation)."""
    x_tr, y_tr, x_va, y_va = arrays
    if n_train:
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    torch.manual_seed(seed)
    train_loader = DataLoader(
        MNISTImages(x_tr, y_tr, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=0,
        drop_last=True,
    )
    val_loader = DataLoader(
        MNISTImages(x_va, y_va, transform), batch_size=batch_size, shuffle=False, num_workers=0
    )
    net = Net().to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    warmup_steps = round(warmup_epochs * len(train_loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup_steps) if warmup_steps else 1.0
    )
    train_time = 0.0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        running, steps = 0.0, 0
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(net(inputs), labels)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            steps += 1
        net.eval()
        val_loss, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for inputs, labels in val_loader:
                inputs, labels = inputs.to(device), labels.to(device)
                outputs = net(inputs)
                val_loss += F.cross_entropy(outputs, labels, reduction="sum").item()
                correct += (outputs.argmax(1) == labels).sum().item()
                total += labels.size(0)
        train_time += time.perf_counter() - t0
        yield {
            "epoch": epoch,
            "train_loss": running / steps,
            "val_loss": val_loss / total,
            "val_acc": correct / total,
            "examples_seen": epoch * steps * batch_size,
            "train_time_s": train_time,
            "threads": torch.get_num_threads(),
            "net": net,
            "optimizer": optimizer,
        }


def tune_trainable(config: dict[str, Any], data_dir: str, epochs: int, n_train: int) -> None:
    """A Ray Tune function trainable, written the tutorial's way."""
    from ray import tune

    device = "cuda" if torch.cuda.is_available() else "cpu"
    k = config["k"]
    arrays = load_arrays(data_dir)
    for m in run_epochs(
        arrays, 8 * k, 0.001 * k, config["warmup_epochs"], epochs, device, n_train
    ):
        with tempfile.TemporaryDirectory() as folder:
            torch.save(
                (m["net"].state_dict(), m["optimizer"].state_dict()),
                os.path.join(folder, "checkpoint.pt"),
            )
            tune.report(
                {key: v for key, v in m.items() if key not in ("net", "optimizer")},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def run_grid(
    storage: str,
    name: str,
    data_dir: str,
    epochs: int,
    n_train: int,
    multiples: list[int],
    warmups: list[float],
) -> None:
    import functools

    import ray
    from ray import tune

    ray.init(include_dashboard=False, logging_level="warning")
    print(f"[tutorial] '{name}': {len(multiples) * len(warmups)} trials planned", flush=True)
    tuner = tune.Tuner(
        functools.partial(tune_trainable, data_dir=data_dir, epochs=epochs, n_train=n_train),
        param_space={"k": tune.grid_search(multiples), "warmup_epochs": tune.grid_search(warmups)},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min"),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    print(f"[tutorial] finished {len(results)} trials", flush=True)
    ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--storage", required=True)
    p.add_argument("--name", default="tutorial")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-train", type=int, default=0, help="first n training digits (0 = all)")
    p.add_argument("--k", type=int, nargs="+", default=BATCH_MULTIPLES)
    p.add_argument("--warmup", type=float, nargs="+", default=WARMUPS)
    a = p.parse_args(argv)
    run_grid(
        str(Path(a.storage).resolve()), a.name, a.data_dir, a.epochs, a.n_train, a.k, a.warmup
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
