"""Per-step framework overhead (the CPU proxy for a GPU's): a tiny model's epoch in a trial vs a pure loop.

A tiny model (Flatten -> Linear 784 -> 10) does so little work per step that what a step costs beyond it
is the framework's: Lightning's loops, hooks, logging and metrics, the loader. On a GPU a LeNet5 step is
as cheap, so what this measures on a CPU is what a GPU epoch pays. 60,000 MNIST-shaped 28x28 images
(bench/lenet_shaped.py, 1% held out as the trial's validation split, which is not run), batch 512, Adam,
cross entropy, one training epoch, one thread, timed two ways in this process:

1. the limit: a pure PyTorch loop over normalized tensors, batches by index;
2. a trial's Lightning fit as bench/epoch_time.py builds it (configure_all with the trial's Trainer
   settings, SupervisedLearner, ``dataset.cache: memory``, no validation batches).

    .venv/bin/python bench/tiny_epoch.py [--size 60000] [--epochs 3] [--threads 1]

The trial is timed over ``--epochs`` epochs and the last (warm) one is kept; the pure loop is timed before
and after it and the faster is kept. Prints the trial against the limit (want <= 1.3).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TORCHMATE_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from torchmate_ray.lightning.configure import configure_all  # noqa: E402
from torchmate_ray.tune.trial.setup import TRIAL_TRAINER_DEFAULTS  # noqa: E402

import lenet_shaped  # noqa: E402  (bench/ is this script's directory)
from epoch_time import EpochTimer  # noqa: E402
from first_epoch import quiet_lightning  # noqa: E402
from lenet_shaped import MNISTShaped  # noqa: E402

BATCH_SIZE, LR, MEAN, STD, VAL_SHARE = 512, 1e-3, 0.1307, 0.3081, 0.01


class Tiny(nn.Sequential):
    """Flatten -> Linear(784, num_classes): next to no work per step."""

    def __init__(self, num_classes: int = 10):
        super().__init__(nn.Flatten(), nn.Linear(28 * 28, num_classes))


def pure_loop(epochs: int, index_select: bool = False) -> float:
    """The limit: the last of ``epochs`` epochs over normalized tensors (as many as the trial's train split),
    batches gathered by ``x[index]`` as an expert writes it, or with ``index_select`` (as a cached split does)."""
    dataset, count = MNISTShaped("", train=True), int(lenet_shaped.SIZE * (1 - VAL_SHARE))
    x = ((dataset.data[:count].float() / 255 - MEAN) / STD).unsqueeze(1)
    y = dataset.targets[:count]
    torch.manual_seed(0)
    model = Tiny(10)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(y))
        for start in range(0, len(y), BATCH_SIZE):
            index = order[start:start + BATCH_SIZE]
            inputs, targets = (x.index_select(0, index), y.index_select(0, index)) if index_select else (x[index], y[index])
            loss = F.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds[-1]


def trial_epoch(epochs: int) -> float:
    """The last of ``epochs`` training epochs of a trial's fit (``dataset.cache: memory``, no validation)."""
    config = {
        "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
        "criterion": {"name": "CrossEntropyLoss"},
        "model": {"name": Tiny, "cfg": {"num_classes": 10}},
        "optimizer": {"name": "Adam", "cfg": {"lr": LR}},
        "training": {"max_epochs": epochs, "limit_val_batches": 0},
        "seed": 0,
        "dataset": {"name": "MagicData", "cfg": {"name": MNISTShaped, "val_percentage": VAL_SHARE},
                    "kwargs": {"root": "."}, "cache": "memory",
                    "transforms": {"pre": [{"name": "ToTensor"},
                                           {"name": "Normalize", "cfg": {"mean": [MEAN], "std": [STD]}}]}},
        "dataloaders": {"default": {"batch_size": BATCH_SIZE, "num_workers": 0}},
    }
    timer = EpochTimer()
    trainer, model, data = configure_all(config, {**TRIAL_TRAINER_DEFAULTS, "accelerator": "cpu",
                                                  "callbacks": [timer]})
    trainer.fit(model, data)
    return timer.seconds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=lenet_shaped.SIZE, help="images (default 60,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per way; the last one is timed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    args = parser.parse_args()
    quiet_lightning()
    if args.size < BATCH_SIZE or args.epochs < 1 or args.threads < 1:
        parser.error(f"--size must be at least {BATCH_SIZE}, --epochs and --threads at least 1")
    lenet_shaped.SIZE = args.size
    torch.set_num_threads(args.threads)
    before = pure_loop(args.epochs)
    trial = trial_epoch(args.epochs)
    after = pure_loop(args.epochs)
    selecting = pure_loop(args.epochs, index_select=True)
    limit = min(before, after)
    steps = -(-int(args.size * (1 - VAL_SHARE)) // BATCH_SIZE)
    print(f"Linear 784->10, {args.size:,} MNIST-shaped images, batch {BATCH_SIZE} ({steps} steps), one "
          f"training epoch, CPU, {args.threads} thread(s)")
    print(f"  pure PyTorch loop over tensors (the limit)  {before:6.3f} s, timed again {after:6.3f} s")
    print(f"  trial, dataset.cache: memory                {trial:6.3f} s   {trial / limit:5.2f} x the limit, "
          f"{(trial - limit) / steps * 1e3:5.2f} ms per step over it")
    print(f"  pure loop, batches by index_select         {selecting:6.3f} s   (the trial / it: {trial / selecting:.2f})")
    print(f"tiny-model epoch, trial / pure loop: {trial / limit:.2f}  (want <= 1.3)")


if __name__ == "__main__":
    main()
