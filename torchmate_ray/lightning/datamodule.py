"""ConfigurableLightningDataModule: datasets, transforms and dataloaders from the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from torchmate_ray.errors import ConfigError, describe, join_path
from torchmate_ray.lightning.build import STAGES, build_dataloader_kwargs, build_transform, compose
from torchmate_ray.lightning.cache import (CachedSplit, IndexBatches, build_cached_split, keep_batch, read_cache_mode,
                                           split_transforms)

Transform = Callable[[Any], Any]


class Transformed(Dataset):
    """``dataset`` with ``transform`` applied to X and ``target_transform`` to y of each ``(X, y)`` sample.

    A sample that is not a pair gets ``transform`` as a whole (and may not have a target transform).
    """

    def __init__(self, dataset: Any, transform: Transform | None = None, target_transform: Transform | None = None):
        self.dataset = dataset
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return apply_to_pair(self.dataset[index], self.transform, self.target_transform)


class PreLoaded(Dataset):
    """Every sample of ``dataset`` read once into memory (for slow-to-read, small datasets)."""

    def __init__(self, dataset: Any):
        self.samples = [dataset[i] for i in range(len(dataset))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        return self.samples[index]


def apply_to_pair(sample: Any, transform: Transform | None, target_transform: Transform | None) -> Any:
    """Apply ``transform`` to X and ``target_transform`` to y of an ``(X, y)`` pair, or ``transform`` to the whole."""
    if isinstance(sample, (tuple, list)) and len(sample) == 2:
        x, y = sample
        return (transform(x) if transform else x, target_transform(y) if target_transform else y)
    if target_transform is not None:
        raise ValueError(f"a target transform needs (X, y) samples, got a {type(sample).__name__} of "
                         f"length {len(sample) if hasattr(sample, '__len__') else '?'}")
    return transform(sample) if transform else sample


class ConfigurableLightningDataModule(pl.LightningDataModule):
    """A LightningDataModule built from the whole training config; subclasses implement ``get_dataset``.

    Construction calls ``configure_configuration(cfg)`` (its result becomes ``self.hparams``), then
    ``get_common_transform("pre"/"post")``, ``get_common_target_transform("pre"/"post")`` and
    ``get_batch_transform("pre"/"post")``. Each ``*_dataloader()`` calls ``get_dataloader(phase)`` ->
    ``get_transformed_dataset(phase)`` (-> ``get_dataset``, ``get_transform``, ``get_target_transform``)
    and ``get_dataloader_kwargs(phase)``. The pre batch transform runs before a batch moves to the
    device, the post one after.
    """

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__()
        self.save_hyperparameters(self.configure_configuration(cfg))
        self.common_pre_transform = self.get_common_transform("pre")
        self.common_post_transform = self.get_common_transform("post")
        self.common_pre_target_transform = self.get_common_target_transform("pre")
        self.common_post_target_transform = self.get_common_target_transform("post")
        self.pre_batch_transform = self.get_batch_transform("pre")
        self.post_batch_transform = self.get_batch_transform("post")
        self.cache = read_cache_mode(self._dataset_cfg().get("cache"))
        # phase -> (X, y) tensors with the deterministic transforms applied: filled by get_cached_dataset,
        # or given (a sweep builds them once per node and shares them with its trials)
        self.cached_tensors: dict[str, tuple[Any, Any]] = {}

    # --- hooks -------------------------------------------------------------------------------
    def configure_configuration(self, cfg: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return the configuration to use; it becomes ``self.hparams``."""
        return cfg

    def get_common_transform(self, moment: str) -> Transform | None:
        """The transform every standard stage gets first (``moment="pre"``) or last (``"post"``)."""
        return build_transform(self._section("transforms").get(moment), join_path("dataset.transforms", moment))

    def get_common_target_transform(self, moment: str) -> Transform | None:
        """As ``get_common_transform``, for targets (``dataset.target_transforms``)."""
        return build_transform(self._section("target_transforms").get(moment),
                               join_path("dataset.target_transforms", moment))

    def get_common_batch_transform(self, moment: str) -> Transform | None:
        """The batch transform from ``dataset.batch_transforms.pre`` or ``.post``."""
        return build_transform(self._section("batch_transforms").get(moment),
                               join_path("dataset.batch_transforms", moment))

    def get_batch_transform(self, moment: str) -> Transform | None:
        """The batch transform applied before (``pre``) or after (``post``) the device transfer."""
        return self.get_common_batch_transform(moment)

    def get_transform(self, stage: str) -> Transform | None:
        """Common pre + the stage's own + common post transforms (custom stages: their own only)."""
        if "transforms" not in self._dataset_cfg():
            return None
        return self._stage_transform("transforms", stage, self.common_pre_transform, self.common_post_transform)

    def get_target_transform(self, stage: str) -> Transform | None:
        """As ``get_transform``, for targets."""
        if "target_transforms" not in self._dataset_cfg():
            return None
        return self._stage_transform("target_transforms", stage, self.common_pre_target_transform,
                                     self.common_post_target_transform)

    def get_dataloader_kwargs(self, stage: str) -> dict[str, Any]:
        """DataLoader kwargs for ``stage``: ``dataloaders.default`` overlaid by ``dataloaders.<stage>``."""
        return build_dataloader_kwargs(self.hparams.get("dataloaders"), stage)

    def get_dataset(self, phase: str) -> Any:
        """The raw dataset of ``phase`` (a Dataset, or a list or dict of them)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_dataset(phase)")

    def get_transformed_dataset(self, phase: str) -> Any:
        """``get_dataset(phase)``, pre-loaded if listed in ``dataset.extra.pre_load``, with its transforms."""
        if self.cache != "none":
            return self.get_cached_dataset(phase)
        dataset = self.get_dataset(phase)
        if phase in (self._section("extra").get("pre_load") or []):
            dataset = map_datasets(PreLoaded, dataset)
        transform, target_transform = self.get_transform(phase), self.get_target_transform(phase)
        if transform is None and target_transform is None:
            return dataset
        return map_datasets(lambda d: Transformed(d, transform, target_transform), dataset)

    def get_cached_dataset(self, phase: str) -> CachedSplit:
        """``phase`` as a :class:`CachedSplit` (on the trainer's device with ``cache: device``): its tensors
        from ``cached_tensors``, or built now from ``get_dataset(phase)`` and kept there."""
        transform, target_transform = self.get_transform(phase), self.get_target_transform(phase)
        if phase not in self.cached_tensors:
            dataset = self.get_dataset(phase)
            if not isinstance(dataset, Dataset):
                raise ConfigError("dataset.cache", f"the {phase} phase has {describe(dataset)}, not one dataset; "
                                  f"set dataset.cache to 'none'")
            split = build_cached_split(dataset, transform, target_transform, phase)
            self.cached_tensors[phase] = (split.x, split.y)
        x, y = self.cached_tensors[phase]
        rest, target_rest = split_transforms(transform)[1], split_transforms(target_transform)[1]
        split = CachedSplit(x, y, compose(rest), compose(target_rest))
        return split.to(self.cache_device()) if self.cache == "device" else split

    def cache_device(self) -> torch.device:
        """Where ``cache: device`` keeps the tensors: the trainer's device (the CPU without a trainer)."""
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def get_dataloader(self, phase: str) -> Any:
        """A DataLoader (or a list / dict of them, for several datasets) for ``phase``."""
        kwargs = self.get_dataloader_kwargs(phase)
        if self.cache == "none":
            return map_datasets(lambda d: DataLoader(d, **kwargs), self.get_transformed_dataset(phase))
        split = self.get_transformed_dataset(phase)
        kwargs = cached_loader_kwargs(kwargs, phase)
        if split.per_sample or self._distributed():
            return DataLoader(split, **kwargs)
        return index_batch_loader(split, kwargs)

    # --- Lightning entry points ----------------------------------------------------------------
    def train_dataloader(self) -> Any:
        return self.get_dataloader("train")

    def val_dataloader(self) -> Any:
        return self.get_dataloader("val")

    def test_dataloader(self) -> Any:
        return self.get_dataloader("test")

    def predict_dataloader(self) -> Any:
        return self.get_dataloader("predict")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return apply_to_pair(batch, self.pre_batch_transform, None) if self.pre_batch_transform else batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return apply_to_pair(batch, self.post_batch_transform, None) if self.post_batch_transform else batch

    # --- helpers -------------------------------------------------------------------------------
    def _distributed(self) -> bool:
        # Lightning gives each rank its share through a DistributedSampler that replaces the loader's own
        return self.trainer is not None and self.trainer.world_size > 1

    def _dataset_cfg(self) -> Mapping[str, Any]:
        dataset = self.hparams.get("dataset") or {}
        if not isinstance(dataset, Mapping):
            raise ConfigError("dataset", f"expected a dict, got {describe(dataset)}; write {{'name': ..., 'cfg': ...}}")
        return dataset

    def _section(self, key: str) -> Mapping[str, Any]:
        section = self._dataset_cfg().get(key) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(join_path("dataset", key), f"expected a dict such as {{'pre': [...], 'train': [...]}}, "
                              f"got {describe(section)}; put the list under a key")
        return section

    def _stage_transform(self, key: str, stage: str, pre: Transform | None, post: Transform | None) -> Transform | None:
        own = build_transform(self._section(key).get(stage), join_path("dataset", key, stage))
        if stage not in STAGES:
            return own
        return compose([pre, own, post])


def cached_loader_kwargs(kwargs: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """DataLoader kwargs for a cached split: a batch is one tensor index, made in the main process (worker
    processes would only add copies, and cannot share a GPU's tensors), and is already collated."""
    if "collate_fn" in kwargs:
        raise ConfigError(f"dataloaders.{phase}.collate_fn", "a cached split makes its batches itself; remove "
                          "collate_fn, or set dataset.cache to 'none'")
    ignored = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor", "worker_init_fn")
    return {**{k: v for k, v in kwargs.items() if k not in ignored}, "collate_fn": keep_batch}


INDEX_BATCH_KEYS = frozenset({"batch_size", "shuffle", "drop_last", "generator", "collate_fn"})


def index_batch_loader(split: CachedSplit, kwargs: Mapping[str, Any]) -> DataLoader:
    """A loader whose every batch is ``split[index tensor]`` (:class:`IndexBatches`), where ``kwargs`` (from
    ``cached_loader_kwargs``) ask for nothing else (a sampler of the user's, say); else the usual loader."""
    if not INDEX_BATCH_KEYS.issuperset(kwargs):
        return DataLoader(split, **kwargs)
    sampler = IndexBatches(len(split), kwargs.get("batch_size", 1), kwargs.get("shuffle", False),
                           kwargs.get("drop_last", False), kwargs.get("generator"), split.device)
    return DataLoader(split, batch_size=None, sampler=sampler, collate_fn=keep_batch)


def map_datasets(function: Callable[[Any], Any], dataset: Any) -> Any:
    """``function`` applied to a dataset, or to each dataset of a list, tuple or dict of Datasets."""
    if isinstance(dataset, (list, tuple)) and dataset and all(isinstance(d, Dataset) for d in dataset):
        return [function(d) for d in dataset]
    if isinstance(dataset, Mapping) and dataset and all(isinstance(d, Dataset) for d in dataset.values()):
        return {key: function(d) for key, d in dataset.items()}
    return function(dataset)
