"""A plain PyTorch training loop (DataLoader, augmentation, a small CNN) as it might exist in
a user's project, and `run(trial)`: the few lines that make it the sweep's training function
(`trainable: "examples.torch_loop.train:run"` in sweep.yaml).

What changed against the loop as it was: the batch size, the learning rate, the seed and the
number of epochs come from `trial`; the lr follows the sweep's warmup (`WarmupSchedule`); and
each epoch yields its metrics and the state a resumed trial continues from. The sweep adds the
rest (checkpoints, divergence, the TensorBoard axis, the analysis).

The data: scikit-learn's bundled 8x8 digits (offline) as 1x8x8 images, 1,437 for training
(shifted by up to one pixel at random: the augmentation) and 360 held out.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainables.own_loop import Trial, WarmupSchedule


# ---------------------------------------------------------------------------- the user's code
def digits(val_fraction: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    images = torch.tensor(x[order] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    labels = torch.tensor(y[order])
    n_val = int(round(val_fraction * len(labels)))
    return (
        TensorDataset(images[n_val:], labels[n_val:]),
        TensorDataset(images[:n_val], labels[:n_val]),
    )


class SmallCNN(nn.Module):
    def __init__(self, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(self.drop(x).view(x.size(0), -1))


def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augmentation: roll each batch by up to one pixel in each direction."""
    dy, dx = torch.randint(-1, 2, (2,), generator=generator).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_one_epoch(model, loader, opt, sched, generator, device) -> float:
    model.train()
    total = 0.0
    for x, y in loader:
        x, y = shift(x, generator).to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item()
    return total / len(loader)


@torch.no_grad()
def evaluate(model, dataset, device) -> tuple[float, float]:
    model.eval()
    x, y = (t.to(device) for t in dataset.tensors)
    out = model(x)
    return F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


# ---------------------------------------------------------------------------- the wrapper
def run(trial: Trial):
    train_set, val_set = digits()
    order = torch.Generator().manual_seed(trial.seed)  # batch order and augmentation
    loader = DataLoader(
        train_set, batch_size=trial.batch_size, shuffle=True, drop_last=True, generator=order
    )
    model = SmallCNN(**trial.params).to(trial.device)  # params: {width: 16, dropout: 0.1}
    opt = torch.optim.SGD(
        model.parameters(), lr=trial.lr, momentum=trial.momentum, weight_decay=trial.weight_decay
    )
    if trial.resume:  # the state this function yielded after epoch trial.start_epoch
        model.load_state_dict(trial.resume["model"])
        opt.load_state_dict(trial.resume["optimizer"])
        order.set_state(trial.resume["order"])
        torch.set_rng_state(trial.resume["torch_rng"])
    sched = WarmupSchedule(opt, trial, steps_per_epoch=len(loader))
    for _ in range(trial.start_epoch + 1, trial.epochs + 1):
        train_loss = train_one_epoch(model, loader, opt, sched, order, trial.device)
        val_loss, val_acc = evaluate(model, val_set, trial.device)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "order": order.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        yield metrics, state
