"""configure_all end to end: the seed README's config, config keys, seeding, classes as names (that it runs without
Ray: test_structure.py)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torchvision
from dotmap import DotMap
from torch import nn

from torchmate_ray import models
from torchmate_ray.lightning import ConfigError, configure_all, configure_data, configure_model
from torchmate_ray.lightning.datasets import MagicData, MNISTSample
from torchmate_ray.lightning.lm import SupervisedLearner

# The seed README's plain-dict config, with the model path changed and StepLR's `verbose` left out
# (torch 2.14 removed it). The README's dump shows an older dataset section; this is the code's.
README_DICT = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "lr_scheduler": {"scheduler": {"name": "StepLR", "cfg": {"step_size": 2}}},
    "model": {"name": "torchmate_ray.models.LeNet5BNMaxPool", "cfg": {"num_classes": 10},
              "extra": {"compile": {"name": "torch.compile"}}},
    "optimizer": {"name": "Adam", "cfg": {"lr": 0.007}},
    "training": {"max_epochs": 100, "early_stopping": {"monitor": "val/loss", "patience": 10, "mode": "min"}},
    "seed": 4223747124,
    "dataset": {"name": "MagicData", "cfg": {"name": "MNIST", "val_percentage": 0.1},
                "kwargs": {"root": "./data", "download": True},
                "transforms": {"pre": [{"name": "ToTensor"}, {"name": "Resize", "cfg": {"size": (28, 28)}}]}},
    "dataloaders": {"default": {"num_workers": 4, "prefetch_factor": 16, "persistent_workers": True,
                                "batch_size": 256},
                    "train": {"batch_size": 512}},
}


def readme_dotmap() -> DotMap:
    """The seed README's DotMap construction, line by line (model path changed, no `verbose`)."""
    cfg = DotMap()
    cfg.learner.name = "SupervisedLearner"
    cfg.learner.cfg = DotMap({"classification": True})
    cfg.criterion.name = "CrossEntropyLoss"
    cfg.lr_scheduler.scheduler = DotMap({"name": "StepLR", "cfg": DotMap({"step_size": 2})})
    cfg.model.name = "torchmate_ray.models.LeNet5BNMaxPool"
    cfg.model.cfg = DotMap({"num_classes": 10})
    cfg.model.extra.compile = DotMap({"name": "torch.compile"})
    cfg.optimizer.name = "Adam"
    cfg.optimizer.cfg = DotMap({"lr": 0.007})
    cfg.training = DotMap({"max_epochs": 100,
                           "early_stopping": DotMap({"monitor": "val/loss", "patience": 10, "mode": "min"})})
    cfg.seed = 4223747124
    cfg.dataset.name = "MagicData"
    cfg.dataset.cfg = DotMap({"name": "MNIST", "val_percentage": 0.1})
    cfg.dataset.kwargs = DotMap({"root": "./data", "download": True})
    cfg.dataset.transforms.pre = [DotMap({"name": "ToTensor"}), DotMap({"name": "Resize", "cfg": {"size": (28, 28)}})]
    cfg.dataloaders = DotMap({"default": DotMap({"num_workers": 4, "prefetch_factor": 16, "persistent_workers": True,
                                                 "batch_size": 256}),
                              "train": DotMap({"batch_size": 512})})
    return cfg


@pytest.mark.slow
@pytest.mark.parametrize("make_config", [lambda: copy.deepcopy(README_DICT), readme_dotmap], ids=["dict", "dotmap"])
def test_seed_readme_config_fits_unchanged(make_config, fast_trainer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's root is ./data
    config = make_config()
    before = copy.deepcopy(config.toDict() if isinstance(config, DotMap) else config)
    trainer, model, data = configure_all(config, fast_trainer)
    trainer.fit(model, data)
    assert set(trainer.callback_metrics) == {"train/loss", "train/accuracy", "val/loss", "val/accuracy"}
    assert type(model.get_model()).__name__ == "OptimizedModule"  # model.extra.compile ran torch.compile
    assert [type(c).__name__ for c in trainer.callbacks if type(c).__name__ == "EarlyStopping"] == ["EarlyStopping"]
    assert (config.toDict() if isinstance(config, DotMap) else config) == before


def test_seed_readme_config_with_steplr_verbose_is_refused():
    config = copy.deepcopy(README_DICT)
    config["lr_scheduler"]["scheduler"]["cfg"]["verbose"] = True
    with pytest.raises(ConfigError, match=r"^lr_scheduler\.scheduler\.cfg\.verbose: unexpected argument 'verbose'"):
        configure_all(config)


def test_configure_all_never_changes_the_callers_config(tiny_config, fast_trainer):
    tiny_config["learner"]["kwargs"] = {}
    before = copy.deepcopy(tiny_config)
    configure_all(tiny_config, fast_trainer)
    configure_data(tiny_config)
    configure_model(tiny_config)
    assert tiny_config == before


def test_dataset_kwargs_stay_out_of_hparams_and_learner_kwargs_are_passed(tiny_config, fast_trainer):
    class Learner(SupervisedLearner):
        def __init__(self, cfg, note):
            super().__init__(cfg)
            self.note = note

    tiny_config["learner"] = {"name": Learner, "cfg": {"classification": True}, "kwargs": {"note": "from config"}}
    _, model, data = configure_all(tiny_config, fast_trainer)
    assert "kwargs" not in model.hparams.dataset and "kwargs" not in data.hparams.dataset
    assert data.root == tiny_config["dataset"]["kwargs"]["root"]
    assert model.note == "from config"
    _, model, data = configure_all(tiny_config, fast_trainer, model_kwargs={"note": "caller"},
                                   data_kwargs={"root": "elsewhere"})
    assert model.note == "caller" and data.root == "elsewhere"
    model.hparams.dataset["cfg"]["val_percentage"] = 0.5  # the two modules do not share nested dicts
    assert data.hparams.dataset["cfg"]["val_percentage"] == 0.1


def split_indices(config):
    _, _, data = configure_all(config, {"logger": False})
    data.setup("fit")
    return data.get_dataset("val").indices


@pytest.mark.parametrize("seed", [0, 123])
def test_seed_fixes_the_split_and_the_weights(tiny_config, seed):
    tiny_config["seed"] = seed
    first = split_indices(tiny_config)
    assert split_indices(tiny_config) == first
    tiny_config["seed"] = seed + 1
    assert split_indices(tiny_config) != first
    tiny_config["seed"] = seed
    weights = [configure_all(tiny_config)[1].get_model().layers[1].weight for _ in range(2)]
    assert torch.equal(*weights)


def test_classes_work_wherever_names_do(tiny_config, fast_trainer):
    from lightning.pytorch.callbacks import LearningRateMonitor

    config = {
        "learner": {"name": SupervisedLearner, "cfg": {"classification": True}},
        "criterion": {"name": nn.CrossEntropyLoss},
        "model": {"name": models.MLP, "cfg": {"in_features": 784, "hidden": [8], "out_features": 10},
                  "extra": {"compile": {"name": torch.jit.script}}},
        "optimizer": {"name": torch.optim.SGD, "cfg": {"lr": 0.1}},
        "lr_scheduler": {"scheduler": {"name": torch.optim.lr_scheduler.StepLR, "cfg": {"step_size": 1}}},
        "training": {"callbacks": [{"name": LearningRateMonitor}]},
        "dataset": {"name": MagicData, "cfg": {"name": MNISTSample, "val_percentage": 0.1},
                    "kwargs": {"root": tiny_config["dataset"]["kwargs"]["root"]},
                    "transforms": {"pre": [{"name": torchvision.transforms.ToTensor}]}},
        "dataloaders": {"batch_size": 16},
    }
    trainer, model, data = configure_all(config, {**fast_trainer, "logger": True})
    trainer.fit(model, data)
    assert isinstance(model.get_model(), torch.jit.ScriptModule)
    assert isinstance(model.criteria, nn.CrossEntropyLoss)
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)
    assert any(isinstance(c, LearningRateMonitor) for c in trainer.callbacks)
    assert data.dataset_class is MNISTSample


TOPK = [
    ("no-topk", {"classification": True}, {"val/loss", "val/accuracy"}),
    ("topk", {"classification": True, "topk": [1, 3]}, {"val/loss", "val/accuracy@1", "val/accuracy@3"}),
    ("regression", {"classification": False}, {"val/loss"}),
]


@pytest.mark.parametrize("options, val_keys", [t[1:] for t in TOPK], ids=[t[0] for t in TOPK])
def test_supervised_learner_logs(tiny_config, fast_trainer, options, val_keys):
    tiny_config["learner"]["cfg"] = options
    trainer, model, data = configure_all(tiny_config, fast_trainer)
    trainer.fit(model, data)
    assert {k for k in trainer.callback_metrics if k.startswith("val/")} == val_keys
    assert {k for k in trainer.callback_metrics if k.startswith("train/")} == {k.replace("val/", "train/")
                                                                              for k in val_keys}
    if "topk" in options:
        assert trainer.callback_metrics["val/accuracy@3"] >= trainer.callback_metrics["val/accuracy@1"]


def test_val_accuracy_is_the_whole_validation_sets(tiny_config, fast_trainer):
    tiny_config["dataloaders"] = {"default": {"batch_size": 37}}  # uneven last batch
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "limit_val_batches": 1.0})
    trainer.fit(model, data)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in data.val_dataloader():
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    assert total == 400
    assert trainer.callback_metrics["val/accuracy"].item() == pytest.approx(correct / total, abs=1e-6)


def test_predict_returns_outputs_and_logs_nothing(tiny_config, fast_trainer):
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "limit_predict_batches": 2})
    batches = trainer.predict(model, data)
    assert [tuple(b.shape) for b in batches] == [(32, 10), (32, 10)]


def test_test_split_is_the_official_one(tiny_config, fast_trainer):
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "limit_test_batches": 1.0})
    results = trainer.test(model, data, verbose=False)
    assert set(results[0]) == {"test/loss", "test/accuracy"}
    assert len(data.get_dataset("test")) == 1000


def test_module_survives_pickling_without_rebuilding_its_model(tiny_config):
    _, model, _ = configure_all(tiny_config)
    clone = pickle.loads(pickle.dumps(model))
    assert "configure_model" in clone.__dict__  # Lightning's configure_model hook stays a no-op
    assert torch.equal(clone.get_model().layers[1].weight, model.get_model().layers[1].weight)

