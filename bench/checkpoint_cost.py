"""What a checkpoint per epoch costs a trial's training thread: the old way against the trial's writer.

A trial of the default sweep (LeNet5 on the 5,000-digit MNIST sample, batch 64, Adam, ``cache: memory``, or
``--model tiny``) fits ``--epochs`` epochs three ways in this process, and the time spent in the epoch's
end-of-epoch checkpoint is measured on the training thread:

1. none: no checkpoint (the floor);
2. what Ray's ``TuneReportCheckpointCallback`` does: ``trainer.save_checkpoint`` into a temporary
   directory, then the directory copied into the trial's storage (``tune.report(checkpoint=...)``);
3. the trial's ``BackgroundCheckpointIO``: the state copied where it lies, written by a background thread.

    .venv/bin/python bench/checkpoint_cost.py [--epochs 5] [--model lenet|tiny]

Prints the milliseconds per epoch each way and the share of the epoch's time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TORCHMATE_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Checkpoint  # noqa: E402

from torchmate_ray.lightning.configure import configure_all  # noqa: E402
from torchmate_ray.tune.records.files import CHECKPOINT_FILE  # noqa: E402
from torchmate_ray.tune.trial.checkpoint_writer import BackgroundCheckpointIO
from torchmate_ray.tune.trial.setup import TRIAL_TRAINER_DEFAULTS  # noqa: E402

CONFIG = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "model": {"name": "torchmate_ray.models.LeNet5BNMaxPool", "cfg": {"num_classes": 10}},
    "optimizer": {"name": "Adam", "cfg": {"lr": 1e-3}},
    "seed": 1234,
    "dataset": {"name": "MagicData", "cfg": {"name": "MNIST", "val_percentage": 0.1}, "cache": "memory",
                "kwargs": {"root": "./data", "download": True},
                "transforms": {"pre": [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [0.1307],
                                                                                             "std": [0.3081]}}]}},
    "dataloaders": {"default": {"batch_size": 256, "num_workers": 0}, "train": {"batch_size": 64}},
}
TINY = {"name": "torchmate_ray.models.MLP", "cfg": {"in_features": 784, "hidden": [], "out_features": 10}}


class TimedCheckpoint(Checkpoint):
    """Saves at every epoch's end ``way``s way, timing the training thread; also times the epochs."""

    def __init__(self, way: str, storage: Path):
        self.way, self.storage, self.saving, self.epochs = way, storage, [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        started = time.perf_counter()
        epochs = trainer.current_epoch + 1
        target = self.storage / f"checkpoint_{epochs:06d}"
        if self.way == "tune":
            with tempfile.TemporaryDirectory() as directory:
                trainer.save_checkpoint(os.path.join(directory, CHECKPOINT_FILE), weights_only=False)
                shutil.copytree(directory, target)
        elif self.way == "background":
            record = {"epochs": epochs, "metrics": {}}
            trainer.save_checkpoint(target / CHECKPOINT_FILE, weights_only=False, storage_options=record)
        self.saving.append(time.perf_counter() - started)
        self.epochs.append(time.perf_counter() - self.epoch_started)


def fit(way: str, epochs: int, model: str) -> tuple[float, float]:
    """(seconds on the training thread per epoch-end checkpoint, seconds per epoch), the first epoch left out."""
    config = {**CONFIG, "training": {"max_epochs": epochs}, **({"model": TINY} if model == "tiny" else {})}
    with tempfile.TemporaryDirectory() as storage:
        timer = TimedCheckpoint(way, Path(storage))
        kwargs = {**TRIAL_TRAINER_DEFAULTS, "enable_checkpointing": True, "callbacks": [timer],
                  **({"plugins": [BackgroundCheckpointIO()]} if way == "background" else {})}
        trainer, module, data = configure_all(config, kwargs)
        trainer.fit(module, data)
    return sum(timer.saving[1:]) / (epochs - 1), sum(timer.epochs[1:]) / (epochs - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--model", choices=["lenet", "tiny"], default="lenet")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a trial of the sweep has one CPU
    pl.seed_everything(0, verbose=False)
    print(f"checkpoint per epoch, {args.model}, {args.epochs} epochs (the first left out), {os.cpu_count()} CPUs, "
          f"1 thread")
    for way in ("none", "tune", "background"):
        saving, epoch = fit(way, args.epochs, args.model)
        print(f"  {way:<11} {saving * 1000:7.1f} ms per epoch on the training thread, {saving / epoch:6.1%} of a "
              f"{epoch:.2f} s epoch")


if __name__ == "__main__":
    main()
