"""Epoch time inside a trial against its limit: a pure PyTorch loop over tensors on the same device.

LeNet5 on 60,000 MNIST-shaped images (28x28 uint8, served as PIL images like torchvision's MNIST),
batch 512, Adam, one training epoch without validation, timed four ways in this process:

1. the limit: a pure PyTorch loop, the images already normalized tensors on the device, batches by index;
2. a trial's Lightning fit (configure_all with the trial's Trainer settings) with ``dataset.cache``
   ``none`` (PIL -> ToTensor -> Normalize per sample, the torchvision way), ``memory`` and ``device``.

    .venv/bin/python bench/epoch_time.py [--size 60000] [--epochs 2] [--caches none,memory,device]

Each is timed over ``--epochs`` epochs and the last (warm) one is kept. Prints each against the limit:
want ``memory`` <= 1.5 on a CPU and ``device`` <= 1.3 on a GPU.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TORCHMATE_OFFLINE", "1")

import lightning.pytorch as pl
import torch
from torch.nn import functional as F

from torchmate_ray.lightning.configure import configure_all
from torchmate_ray.models import LeNet5BNMaxPool
from torchmate_ray.tune.trial.setup import TRIAL_TRAINER_DEFAULTS

import lenet_shaped  # noqa: E402  (bench/ is this script's directory)
from lenet_shaped import MNISTShaped  # noqa: E402

BATCH_SIZE, LR, MEAN, STD, VAL_SHARE = 512, 1e-3, 0.1307, 0.3081, 0.01
class EpochTimer(pl.Callback):
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        synchronize()
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        synchronize()
        self.seconds.append(time.perf_counter() - self.started)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pure_loop(epochs: int, device: torch.device) -> float:
    """The limit: the last of ``epochs`` epochs over normalized tensors already on ``device``."""
    dataset, count = MNISTShaped("", train=True), int(lenet_shaped.SIZE * (1 - VAL_SHARE))  # as many as the trial's train split
    x = ((dataset.data[:count].float() / 255 - MEAN) / STD).unsqueeze(1).to(device)
    y = dataset.targets[:count].to(device)
    torch.manual_seed(0)
    model = LeNet5BNMaxPool(10).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    seconds = []
    for _ in range(epochs):
        synchronize()
        started = time.perf_counter()
        order = torch.randperm(len(y), device=device)
        for start in range(0, len(y), BATCH_SIZE):
            index = order[start:start + BATCH_SIZE]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        synchronize()
        seconds.append(time.perf_counter() - started)
    return seconds[-1]


def trial_epoch(cache: str, epochs: int) -> float:
    """The last of ``epochs`` training epochs of a trial's fit with ``dataset.cache: cache``."""
    config = {
        "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
        "criterion": {"name": "CrossEntropyLoss"},
        "model": {"name": "torchmate_ray.models.LeNet5BNMaxPool", "cfg": {"num_classes": 10}},
        "optimizer": {"name": "Adam", "cfg": {"lr": LR}},
        "training": {"max_epochs": epochs, "limit_val_batches": 0},
        "seed": 0,
        "dataset": {"name": "MagicData", "cfg": {"name": MNISTShaped, "val_percentage": VAL_SHARE},
                    "kwargs": {"root": "."}, "cache": cache,
                    "transforms": {"pre": [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [MEAN], "std": [STD]}}]}},
        "dataloaders": {"default": {"batch_size": BATCH_SIZE, "num_workers": 0}},
    }
    timer = EpochTimer()
    trainer, model, data = configure_all(config, {**TRIAL_TRAINER_DEFAULTS, "callbacks": [timer]})
    trainer.fit(model, data)
    return timer.seconds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=lenet_shaped.SIZE, help="training images (default 60,000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per way; the last one is timed")
    parser.add_argument("--caches", default="none,memory,device", help="the dataset.cache modes to time, by commas")
    args = parser.parse_args()
    lenet_shaped.SIZE = args.size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    limit = pure_loop(args.epochs, device)
    print(f"LeNet5, {lenet_shaped.SIZE:,} MNIST-shaped images, batch {BATCH_SIZE}, one training epoch, on "
          f"{torch.cuda.get_device_name() if device.type == 'cuda' else f'{os.cpu_count()} CPUs'}")
    print(f"  pure PyTorch loop over tensors (the limit)  {limit:7.2f} s")
    trials = {cache: trial_epoch(cache, args.epochs) for cache in args.caches.split(",")}
    again = pure_loop(args.epochs, device)  # timed before and after: the limit is the faster of the two
    print(f"  pure PyTorch loop, timed again             {again:7.2f} s")
    limit = min(limit, again)
    for cache, seconds in trials.items():
        print(f"  trial, dataset.cache: {cache:<22} {seconds:7.2f} s   {seconds / limit:5.2f} x the limit")
    print("want: memory <= 1.5 x (CPU), device <= 1.3 x (GPU)")


if __name__ == "__main__":
    main()
