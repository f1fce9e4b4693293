"""Benchmark search space: LeNet5 on the MNIST sample, 8 fixed learning rates (a grid), 2 epochs each.

A grid, not random draws, so that every way of running it trains exactly the same 8 configs.
"""

from ray import tune

LEARNING_RATES = [3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7e-3, 1e-2]
EPOCHS = 2
BATCH_SIZE = 64

config = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "model": {"name": "torchmate_ray.models.LeNet5BNMaxPool", "cfg": {"num_classes": 10}},
    "optimizer": {"name": "Adam", "cfg": {"lr": tune.grid_search(LEARNING_RATES)}},
    "training": {"max_epochs": EPOCHS},
    "seed": 1234,
    "dataset": {
        "name": "MagicData",
        "cfg": {"name": "MNIST", "val_percentage": 0.1},
        "kwargs": {"root": "./data", "download": True},
        "transforms": {"pre": [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [0.1307], "std": [0.3081]}}]},
    },
    "dataloaders": {"default": {"batch_size": 256, "num_workers": 0}, "train": {"batch_size": BATCH_SIZE}},
}

sweep = {"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo"}
