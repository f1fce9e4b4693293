"""Shared fixtures: a tiny real config over the offline MNIST sample, and Trainer settings for speed."""

from __future__ import annotations

import os

os.environ["TORCHMATE_OFFLINE"] = "1"  # tests never try to download anything

import copy
from typing import Any

import pytest

FAST_TRAINER = {
    "max_epochs": 1,
    "limit_train_batches": 2,
    "limit_val_batches": 2,
    "limit_test_batches": 2,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
}

TINY_CONFIG: dict[str, Any] = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "model": {"name": "torchmate_ray.models.MLP", "cfg": {"in_features": 784, "hidden": [16], "out_features": 10}},
    "optimizer": {"name": "Adam", "cfg": {"lr": 0.01}},
    "training": {"max_epochs": 1},
    "seed": 7,
    "dataset": {
        "name": "MagicData",
        "cfg": {"name": "MNIST", "val_percentage": 0.1},
        "kwargs": {"root": "./data", "download": True},
        "transforms": {"pre": [{"name": "ToTensor"}]},
    },
    "dataloaders": {"default": {"batch_size": 32}},
}


@pytest.fixture
def tiny_config(tmp_path) -> dict[str, Any]:
    """A real, fast config: an MLP on the offline MNIST sample, data root in a temporary directory."""
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"]["kwargs"]["root"] = str(tmp_path / "data")
    return config


@pytest.fixture
def fast_trainer(tmp_path) -> dict[str, Any]:
    return {**FAST_TRAINER, "default_root_dir": str(tmp_path)}


@pytest.fixture(autouse=True)
def no_early_ray_left():
    """An in-process ``tune_main`` that refuses leaves its early Ray shutting down in its own thread (the command
    does not wait for it): the next test begins once it is down, so that it never meets the Ray of the one
    before (Ray's registry, ``ray.is_initialized()``)."""
    yield
    import sys

    local_ray = sys.modules.get("torchmate_ray.tune.local_ray")
    last = local_ray.EarlyRay._last if local_ray else None
    if last is not None:
        last._thread.join(timeout=120)
