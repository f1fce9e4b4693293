"""Names resolve as a class given directly, a dotted path, or a bare name in the slot's default modules."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from torchmate_ray import models
from torchmate_ray.lightning import ConfigError, list_names
from torchmate_ray.lightning.datasets import MagicData, MNISTSample
from torchmate_ray.lightning.lm import SupervisedLearner
from torchmate_ray.lightning.resolve import resolve_name


def local_function(x):
    return x


RESOLVES = [
    ("class-as-is", nn.Linear, "criterion", nn.Linear),
    ("function-as-is", local_function, "compile", local_function),
    ("dotted-class", "torchmate_ray.models.LeNet5BNMaxPool", "model", models.LeNet5BNMaxPool),
    ("dotted-function", "torch.compile", "compile", torch.compile),
    ("dotted-nested-attr", "torch.optim.lr_scheduler.StepLR", "lr_scheduler", torch.optim.lr_scheduler.StepLR),
    ("dotted-class-attribute", "torchmate_ray.lightning.datasets.MagicData.setup", "compile", MagicData.setup),
    ("bare-optimizer", "SGD", "optimizer", torch.optim.SGD),
    ("bare-ignores-case", "adamw", "optimizer", torch.optim.AdamW),
    ("bare-criterion", "MSELoss", "criterion", nn.MSELoss),
    ("bare-scheduler", "CosineAnnealingLR", "lr_scheduler", torch.optim.lr_scheduler.CosineAnnealingLR),
    ("bare-transform", "ToTensor", "transform", torchvision.transforms.ToTensor),
    ("bare-learner", "SupervisedLearner", "learner", SupervisedLearner),
    ("bare-data-module", "MagicData", "dataset", MagicData),
    ("bare-torchvision-dataset", "FashionMNIST", "dataset_class", torchvision.datasets.FashionMNIST),
    ("bare-offline-dataset", "MNISTSample", "dataset_class", MNISTSample),
    ("bare-model-in-models", "MLP", "model", models.MLP),
    ("bare-model-in-torch-nn", "Linear", "model", nn.Linear),
]


@pytest.mark.parametrize("name, slot, expected", [c[1:] for c in RESOLVES], ids=[c[0] for c in RESOLVES])
def test_resolve_name(name, slot, expected):
    assert resolve_name(name, slot, "x.name") is expected


def test_unknown_name_without_close_match_says_where_to_look():
    with pytest.raises(ConfigError) as caught:
        resolve_name("Zzzzzz", "optimizer", "optimizer.name")
    assert str(caught.value) == ("optimizer.name: unknown optimizer 'Zzzzzz' in torch.optim; choose one from "
                                 "list_names('optimizer') or give a dotted path")


def test_import_error_inside_a_module_is_reported_as_such(tmp_path, monkeypatch):
    (tmp_path / "broken_models.py").write_text("import not_installed_package\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        resolve_name("broken_models.Net", "model", "model.name")
    assert str(caught.value) == ("model.name: importing 'broken_models' failed: No module named "
                                 "'not_installed_package'; install the missing package or fix the path")


@pytest.mark.parametrize("slot, member", [("optimizer", "Adam"), ("criterion", "CrossEntropyLoss"),
                                          ("learner", "SupervisedLearner"), ("dataset", "MagicData"),
                                          ("callback", "EarlyStopping")])
def test_list_names_shows_what_exists(slot, member):
    assert member in list_names(slot)
