"""Every kind of bad config gives a ConfigError naming its key path and a fix, before anything trains."""

from __future__ import annotations

import copy

import pytest

from torchmate_ray.lightning import ConfigError, configure_all
from torchmate_ray.lightning.files import set_path

DELETE = object()

CASES = [
    ("unknown-optimizer", "optimizer.name", "Adamm",
     "optimizer.name: unknown optimizer 'Adamm' in torch.optim; did you mean 'Adam'?"),
    ("optimizer-bad-kwarg", "optimizer.cfg.lrr", 0.1,
     "optimizer.cfg.lrr: unexpected argument 'lrr' for Adam; did you mean 'lr'?"),
    ("optimizer-bad-value", "optimizer.cfg.lr", -1.0,
     "optimizer.cfg: Adam rejected its arguments: Invalid learning rate: -1.0; fix the values under optimizer.cfg"),
    ("optimizer-cfg-not-dict", "optimizer.cfg", [0.1],
     "optimizer.cfg: expected a dict of keyword arguments, got [0.1] (list); write it as {'argument': value}"),
    ("optimizer-name-not-str", "optimizer.name", 3,
     "optimizer.name: expected the optimizer's name or class, got 3 (int); give a name such as 'Adam' or the class itself"),
    ("model-typo-kwarg", "model.cfg.out_feature", 10,
     "model.cfg.out_feature: unexpected argument 'out_feature' for MLP; did you mean 'out_features'?"),
    ("model-missing-kwarg", "model.cfg.in_features", DELETE,
     "model.cfg: missing required argument 'in_features' for MLP; add it under model.cfg"),
    ("model-bad-module", "model.name", "torchmate_ray.modelz.MLP",
     "model.name: 'torchmate_ray' has no attribute 'modelz'; did you mean 'models'?"),
    ("model-no-package", "model.name", "torchmatee.models.MLP",
     "model.name: cannot import 'torchmatee.models.MLP': no module 'torchmatee'; install it or fix the path"),
    ("model-bad-attr", "model.name", "torchmate_ray.models.MPL",
     "model.name: 'torchmate_ray.models' has no attribute 'MPL'; did you mean 'MLP'?"),
    ("model-missing", "model", DELETE,
     "model: missing; add {'name': 'torchmate_ray.models.LeNet5BNMaxPool', 'cfg': {...}} or override configure_model"),
    ("criterion-unknown", "criterion.name", "CrossEntropy",
     "criterion.name: unknown criterion 'CrossEntropy' in torch.nn; did you mean 'CrossEntropyLoss'?"),
    ("criterion-missing", "criterion", DELETE,
     "criterion: missing; add e.g. {'name': 'CrossEntropyLoss'} or override configure_criteria"),
    ("criterion-tuple", "criterion", ({"name": "MSELoss"},),
     "criterion: a tuple of specs is ambiguous; use a list (ModuleList) or a dict (ModuleDict)"),
    ("scheduler-verbose", "lr_scheduler", {"scheduler": {"name": "StepLR", "cfg": {"step_size": 2, "verbose": True}}},
     "lr_scheduler.scheduler.cfg.verbose: unexpected argument 'verbose' for StepLR; remove it (StepLR takes "
     "step_size, gamma, last_epoch)"),
    ("scheduler-flat-spec", "lr_scheduler", {"name": "StepLR", "cfg": {"step_size": 2}},
     "lr_scheduler: expected {'scheduler': {'name': ..., 'cfg': {...}}, 'interval': ...}, got {'name': 'StepLR', "
     "'cfg': {'step_size': 2}} (dict); move name/cfg under 'scheduler'"),
    ("scheduler-bad-key", "lr_scheduler", {"scheduler": {"name": "StepLR", "cfg": {"step_size": 2}}, "intervall": "step"},
     "lr_scheduler.intervall: unknown scheduler setting 'intervall'; did you mean 'interval'?"),
    ("scheduler-bad-interval", "lr_scheduler", {"scheduler": {"name": "StepLR", "cfg": {"step_size": 2}}, "interval": "batch"},
     "lr_scheduler.interval: expected 'epoch' or 'step', got 'batch' (str); use one of those"),
    ("too-many-schedulers", "lr_scheduler", [{"scheduler": {"name": "StepLR", "cfg": {"step_size": 2}}}] * 2,
     "lr_scheduler: 2 schedulers for 1 optimizer(s); give at most one scheduler per optimizer"),
    ("learner-unknown", "learner.name", "SupervisedLearnr",
     "learner.name: unknown learner 'SupervisedLearnr' in torchmate_ray.lightning.lm; did you mean 'SupervisedLearner'?"),
    ("learner-missing", "learner", DELETE,
     "learner.name: missing; add learner = {'name': 'SupervisedLearner', 'cfg': {'classification': True}}"),
    ("learner-option-typo", "learner.cfg.topK", [1],
     "learner.cfg.topK: unknown SupervisedLearner option 'topK'; did you mean 'topk'?"),
    ("learner-topk-type", "learner.cfg.topk", 5,
     "learner.cfg.topk: expected a list of positive ints, got 5 (int); write e.g. [1, 5]"),
    ("learner-not-module", "learner.name", "torch.nn.Identity",
     "learner.name: Identity is not a LightningModule; name a learner such as 'SupervisedLearner'"),
    ("dataset-missing", "dataset", DELETE,
     "dataset.name: missing; add dataset = {'name': 'MagicData', 'cfg': {...}, 'kwargs': {'root': './data'}}"),
    ("dataset-unknown", "dataset.name", "MagikData",
     "dataset.name: unknown data module 'MagikData' in torchmate_ray.lightning.datasets; did you mean 'MagicData'?"),
    ("dataset-root-missing", "dataset.kwargs.root", DELETE,
     "dataset.kwargs.root: MagicData needs the directory of the dataset; add dataset.kwargs.root, e.g. './data'"),
    ("dataset-class-unknown", "dataset.cfg.name", "MNST",
     "dataset.cfg.name: unknown dataset 'MNST' in torchvision.datasets or torchmate_ray.lightning.datasets; "
     "did you mean 'MNIST'?"),
    ("dataset-class-no-train-flag", "dataset.cfg.name", "EMNIST",
     "dataset.cfg.name: EMNIST is not called as (root, train, ...) (its parameters start with root, split); "
     "use a dataset with a 'train' flag or subclass ConfigurableLightningDataModule"),
    ("dataset-kwarg-unknown", "dataset.kwargs.downlaod", True,
     "dataset.kwargs.downlaod: unexpected argument 'downlaod' for MNIST; did you mean 'download'?"),
    ("val-percentage", "dataset.cfg.val_percentage", 1.5,
     "dataset.cfg.val_percentage: expected a fraction between 0 and 1, got 1.5 (float); use e.g. 0.1"),
    ("transform-unknown", "dataset.transforms.pre", [{"name": "ToTensr"}],
     "dataset.transforms.pre.0.name: unknown transform 'ToTensr' in torchvision.transforms; did you mean 'ToTensor'?"),
    ("transform-not-list", "dataset.transforms.pre", "ToTensor",
     "dataset.transforms.pre: expected a transform spec or a list of them, got 'ToTensor' (str); "
     "write e.g. [{'name': 'ToTensor'}]"),
    ("dataloader-typo", "dataloaders.default.batch_sise", 8,
     "dataloaders.default.batch_sise: unexpected argument 'batch_sise' for DataLoader; did you mean 'batch_size'?"),
    ("dataloader-stage-typo", "dataloaders.train.shuffel", True,
     "dataloaders.train.shuffel: unexpected argument 'shuffel' for DataLoader; did you mean 'shuffle'?"),
    ("dataloader-bad-combination", "dataloaders.default.prefetch_factor", 4,
     "dataloaders.train: DataLoader rejected its arguments: prefetch_factor option could only be specified in "
     "multiprocessing.let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.; fix "
     "dataloaders.train (or dataloaders.default)"),
    ("training-typo", "training.max_epoch", 3,
     "training.max_epoch: unexpected argument 'max_epoch' for Trainer; did you mean 'max_epochs'?"),
    ("training-not-dict", "training", 3,
     "training: expected a dict of Trainer arguments, got 3 (int); write e.g. {'max_epochs': 10}"),
    ("early-stopping-typo", "training.early_stopping", {"monitr": "val/loss"},
     "training.early_stopping.monitr: unexpected argument 'monitr' for EarlyStopping; did you mean 'monitor'?"),
    ("callback-unknown", "training.callbacks", [{"name": "ModelCheckpointt"}],
     "training.callbacks.0.name: unknown callback 'ModelCheckpointt' in lightning.pytorch.callbacks; did you mean "
     "'ModelCheckpoint'?"),
    ("seed-type", "seed", "42",
     "seed: expected an int in [0, 2**32), got '42' (str); use e.g. 42"),
    ("top-level-typo", "optimiser", {"name": "SGD"},
     "optimiser: unknown top-level key; did you mean 'optimizer'?"),
    ("search-domain-left", "optimizer.cfg.lr", {"grid_search": [0.1, 0.01]},
     "optimizer.cfg.lr: is a search-space domain (dict), not a value; run the file with torchmate-tune, or give a "
     "value (e.g. --set optimizer.cfg.lr=...)"),
    ("compile-bare-name", "model.extra", {"compile": {"name": "compile"}},
     "model.extra.compile.name: 'compile' is not an import path; give the full dotted path (e.g. "
     "'package.module.compile') or the compile function itself"),
]


@pytest.mark.parametrize("key_path, value, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_config_is_one_config_error(tiny_config, fast_trainer, key_path, value, message):
    if value is DELETE:
        parent, _, leaf = key_path.rpartition(".")
        node = tiny_config
        for part in filter(None, parent.split(".")):
            node = node[part]
        del node[leaf]
    else:
        set_path(tiny_config, key_path, copy.deepcopy(value))
    with pytest.raises(ConfigError) as caught:
        configure_all(tiny_config, fast_trainer)
    assert str(caught.value) == message
    assert caught.value.key_path == message.split(": ")[0]
    assert "\n" not in str(caught.value)
