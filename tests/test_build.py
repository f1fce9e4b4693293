"""The builders: specs, nested specs, transforms, dataloader kwargs, trainer kwargs, optimizers, schedulers."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torchvision import transforms as T

from torchmate_ray.lightning.build import (
    build_dataloader_kwargs,
    build_modules,
    build_spec,
    build_trainer_kwargs,
    build_transform,
    copy_config,
)
from torchmate_ray.lightning.optim import build_optimizers, build_schedulers, package_optimizers


def test_nested_specs_are_built_against_the_same_slot():
    apply = build_spec({"name": "RandomApply", "cfg": {"transforms": [{"name": "RandomInvert", "cfg": {"p": 1.0}}, 3],
                                                       "p": 0.5}}, "transform", "t")
    assert isinstance(apply, T.RandomApply)
    assert isinstance(apply.transforms[0], T.RandomInvert) and apply.transforms[1] == 3


def test_spec_cfg_is_copied_so_building_never_changes_the_config():
    spec = {"name": "Linear", "cfg": {"in_features": 2, "out_features": 1}}
    build_spec(spec, "model", "model", kwargs={"bias": False})
    assert spec == {"name": "Linear", "cfg": {"in_features": 2, "out_features": 1}}


MODULES = [
    ("one-spec", {"name": "MSELoss"}, nn.MSELoss, None),
    ("list-is-modulelist", [{"name": "MSELoss"}, {"name": "L1Loss"}], nn.ModuleList, [nn.MSELoss, nn.L1Loss]),
    ("dict-is-moduledict", {"mse": {"name": "MSELoss"}, "l1": {"name": "L1Loss"}}, nn.ModuleDict,
     {"mse": nn.MSELoss, "l1": nn.L1Loss}),
]


@pytest.mark.parametrize("cfg, kind, members", [m[1:] for m in MODULES], ids=[m[0] for m in MODULES])
def test_several_criteria(cfg, kind, members):
    built = build_modules(cfg, "criterion", "criterion")
    assert type(built) is kind
    if isinstance(members, list):
        assert [type(m) for m in built] == members
    elif isinstance(members, dict):
        assert {k: type(v) for k, v in built.items()} == members


TRANSFORMS = [
    ("none", None, type(None)),
    ("empty-list", [], type(None)),
    ("one-dict-bare", {"name": "ToTensor"}, T.ToTensor),
    ("one-item-list-bare", [{"name": "ToTensor"}], T.ToTensor),
    ("several-compose", [{"name": "ToTensor"}, {"name": "Resize", "cfg": {"size": (28, 28)}}], T.Compose),
]


@pytest.mark.parametrize("cfg, kind", [t[1:] for t in TRANSFORMS], ids=[t[0] for t in TRANSFORMS])
def test_build_transform(cfg, kind):
    assert type(build_transform(cfg, "dataset.transforms.pre")) is kind


LOADER_KWARGS = [
    ("absent", None, "val", {}),
    ("single-dict-for-every-stage", {"batch_size": 8}, "test", {"batch_size": 8}),
    ("default-overlaid", {"default": {"batch_size": 8, "num_workers": 2}, "val": {"batch_size": 16}}, "val",
     {"batch_size": 16, "num_workers": 2}),
    ("stage-without-entry-gets-default", {"default": {"batch_size": 8}, "val": {"batch_size": 16}}, "test",
     {"batch_size": 8}),
    ("train-shuffles-by-default", {"default": {"batch_size": 8}}, "train", {"batch_size": 8, "shuffle": True}),
    ("train-shuffle-can-be-off", {"train": {"shuffle": False}}, "train", {"shuffle": False}),
    ("train-sampler-means-no-shuffle", {"train": {"sampler": None}}, "train", {"sampler": None}),
]


@pytest.mark.parametrize("cfg, stage, expected", [c[1:] for c in LOADER_KWARGS], ids=[c[0] for c in LOADER_KWARGS])
def test_build_dataloader_kwargs(cfg, stage, expected):
    assert build_dataloader_kwargs(cfg, stage) == expected


def test_early_stopping_is_added_to_config_and_caller_callbacks():
    own = LearningRateMonitor()
    caller = ModelCheckpoint()
    cfg = {"training": {"max_epochs": 3, "callbacks": [own, {"name": "ModelSummary", "cfg": {"max_depth": 2}}],
                        "early_stopping": {"monitor": "val/loss", "patience": 4}}}
    kwargs = build_trainer_kwargs(cfg, {"callbacks": [caller], "max_epochs": 5})
    kinds = [type(c).__name__ for c in kwargs["callbacks"]]
    assert kinds == ["LearningRateMonitor", "ModelSummary", "EarlyStopping", "ModelCheckpoint"]
    assert kwargs["callbacks"][0] is own and kwargs["callbacks"][3] is caller
    early = kwargs["callbacks"][2]
    assert isinstance(early, EarlyStopping) and early.monitor == "val/loss" and early.patience == 4
    assert kwargs["max_epochs"] == 5  # the caller wins
    assert "early_stopping" not in kwargs


def test_training_logger_spec_is_built(tmp_path):
    kwargs = build_trainer_kwargs({"training": {"logger": {"name": "CSVLogger", "cfg": {"save_dir": str(tmp_path)}}}})
    assert isinstance(kwargs["logger"], CSVLogger)


def test_no_training_gives_no_kwargs():
    assert build_trainer_kwargs({}) == {}


class TwoPart(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)


def test_optimizers_get_all_parameters_or_the_named_submodules():
    model = TwoPart()
    one, = build_optimizers({"name": "Adam"}, model)
    assert len(one.param_groups[0]["params"]) == 4
    enc, head = build_optimizers([{"name": "SGD", "params": "encoder", "cfg": {"lr": 0.1}},
                                  {"name": "Adam", "params": ["head"]}], model)
    assert enc.param_groups[0]["params"][0] is model.encoder.weight
    assert head.param_groups[0]["params"][0] is model.head.weight


def test_scheduler_keys_pass_through_and_plateau_gets_a_monitor():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    step, = build_schedulers({"scheduler": {"name": "StepLR", "cfg": {"step_size": 2}}, "interval": "step",
                              "frequency": 3, "name": "lr"}, [opt])
    assert isinstance(step["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert {k: v for k, v in step.items() if k != "scheduler"} == {"interval": "step", "frequency": 3, "name": "lr"}
    plateau, = build_schedulers({"scheduler": {"name": "ReduceLROnPlateau"}}, [opt], default_monitor="val/loss")
    assert plateau["monitor"] == "val/loss"


def test_nested_schedulers_get_the_optimizer():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    entry, = build_schedulers({"scheduler": {"name": "SequentialLR", "cfg": {
        "schedulers": [{"name": "LinearLR", "cfg": {"start_factor": 0.5, "total_iters": 2}},
                       {"name": "StepLR", "cfg": {"step_size": 2}}], "milestones": [2]}}}, [opt])
    assert isinstance(entry["scheduler"], torch.optim.lr_scheduler.SequentialLR)


PACKAGES = [
    ("one-optimizer", 1, 0, "optimizer"),
    ("several-optimizers", 2, 0, "list"),
    ("one-and-one", 1, 1, "dict"),
    ("several-with-schedulers", 2, 2, "tuple"),
]


@pytest.mark.parametrize("n_opt, n_sched, shape", [p[1:] for p in PACKAGES], ids=[p[0] for p in PACKAGES])
def test_package_optimizers(n_opt, n_sched, shape):
    opts = [torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1) for _ in range(n_opt)]
    scheds = [{"scheduler": torch.optim.lr_scheduler.StepLR(o, 1)} for o in opts[:n_sched]] or None
    packed = package_optimizers(opts, scheds)
    expected = {"optimizer": opts[0], "list": opts, "dict": {"optimizer": opts[0], "lr_scheduler": (scheds or [None])[0]},
                "tuple": (opts, scheds)}[shape]
    assert packed == expected


def test_copy_config_turns_dotmaps_into_dicts_and_keeps_tuples():
    from dotmap import DotMap

    cfg = DotMap()
    cfg.dataset.transforms.pre = [DotMap({"name": "Resize", "cfg": {"size": (28, 28)}})]
    copied = copy_config(cfg)
    assert type(copied) is dict and type(copied["dataset"]["transforms"]["pre"][0]) is dict
    assert copied["dataset"]["transforms"]["pre"][0]["cfg"]["size"] == (28, 28)
