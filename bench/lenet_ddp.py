"""Benchmark search space: a 4-trial x 2-epoch LeNet5 sweep whose trials each run 2 DDP workers (see ddp_overhead.py)."""

from ray import tune

LEARNING_RATES = [1e-3, 3e-3, 1e-2, 3e-2]
EPOCHS = 2

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
    "dataloaders": {"default": {"batch_size": 256, "num_workers": 0}, "train": {"batch_size": 64}},
}

sweep = {"metric": "val/accuracy", "mode": "max", "num_samples": 1,
         "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 2}}}
