"""Benchmark search space: LeNet5 on the MNIST sample, 16 fixed learning rates (a grid), 1 epoch each.

A grid, not random draws, so that every way of running it trains exactly the same 16 configs.
"""

from ray import tune

LEARNING_RATES = [round(3e-4 * 1.3**i, 6) for i in range(16)]  # 3e-4 to 1.6e-2
EPOCHS = 1
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
        "cache": "memory",
        "transforms": {"pre": [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [0.1307], "std": [0.3081]}}]},
    },
    "dataloaders": {"default": {"batch_size": 256, "num_workers": 0}, "train": {"batch_size": BATCH_SIZE}},
}

sweep = {"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo"}
