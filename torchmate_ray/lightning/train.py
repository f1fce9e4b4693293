"""One training run from a config, without Ray: fit, then test when the data has a test split; or, for a trained
checkpoint, validate and test only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from torchmate_ray.errors import ConfigError
from torchmate_ray.lightning.configure import configure_all


def run_training(cfg: Mapping[str, Any], trainer_kwargs: Mapping[str, Any] | None = None,
                 ckpt: str | Path | None = None) -> dict[str, float]:
    """Train ``cfg`` with ``trainer.fit`` and then ``trainer.test`` if a test split exists.

    ``ckpt``: fine-tune from that checkpoint's weights (a sweep's ``best/model.ckpt``): the weights only, with a
    fresh optimizer and schedule over ``training.max_epochs``, so that ``--set optimizer.cfg.lr=...`` and
    ``--set training.max_epochs=...`` mean what they say. (Lightning's ``fit(ckpt_path=...)`` would instead
    resume the trial's own run: its epoch count, optimizer and schedule, and train nothing once its
    ``max_epochs`` were done.)

    Returns the final metrics: what the last validation epoch logged, and the test metrics.

    Raises:
        ConfigError: before training, for anything wrong in ``cfg`` or a ``ckpt`` that is missing or does not fit.
    """
    weights = read_weights(ckpt) if ckpt is not None else None
    trainer, model, data = configure_all(cfg, trainer_kwargs)
    if weights is not None:
        load_weights(model, weights, ckpt)
    trainer.fit(model, data)
    metrics = scalar_metrics(trainer.callback_metrics)
    return {**metrics, **run_test_split(trainer, model, data)}


def run_evaluation(cfg: Mapping[str, Any], ckpt: str | Path,
                   trainer_kwargs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The metrics of the model in ``ckpt`` (built by ``cfg``), without training: ``trainer.validate``, then
    ``trainer.test`` if a test split exists. A sweep's ``best/model.ckpt`` with its ``best/best_config.py``
    gives the validation metrics the sweep reported for that checkpoint.

    Raises:
        ConfigError: for anything wrong in ``cfg``, or a ``ckpt`` that is missing or does not fit the model.
    """
    weights = read_weights(ckpt)
    trainer, model, data = configure_all(cfg, trainer_kwargs)
    load_weights(model, weights, ckpt)
    metrics: dict[str, float] = {}
    for results in trainer.validate(model, data, verbose=False):
        metrics.update(scalar_metrics(results))
    return {**metrics, **run_test_split(trainer, model, data)}


def run_test_split(trainer: pl.Trainer, model: pl.LightningModule, data: pl.LightningDataModule) -> dict[str, float]:
    """``trainer.test``'s metrics, or none when the data has no test split."""
    metrics: dict[str, float] = {}
    if has_split(data, "test"):
        for results in trainer.test(model, data, verbose=False):
            metrics.update(scalar_metrics(results))
    return metrics


def read_weights(ckpt: str | Path) -> dict[str, Any]:
    """The model weights (``state_dict``) of a Lightning checkpoint file; ConfigError naming ``--ckpt`` otherwise."""
    import torch

    path = Path(ckpt)
    if not path.is_file():
        raise ConfigError("--ckpt", f"{path}: no such file; give a checkpoint, e.g. <experiment>/best/model.ckpt")
    try:  # the checkpoint's hyperparameters hold the config's classes, which weights_only refuses
        return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as err:  # noqa: BLE001 - whatever makes it unreadable, the user gave the wrong file
        raise ConfigError("--ckpt", f"{path}: not a Lightning checkpoint ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else err!r}); give a model.ckpt") from err


def load_weights(model: pl.LightningModule, weights: Mapping[str, Any], ckpt: str | Path) -> None:
    """Load ``weights`` into ``model``, all of them; ConfigError naming ``--ckpt`` when they do not fit."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigError("--ckpt", f"{ckpt}: its weights do not fit the config's model ({str(err).splitlines()[0]}); "
                          f"use the config exported beside it (best_config.py)") from err


def has_split(data: pl.LightningDataModule, stage: str) -> bool:
    """Whether ``data`` can provide ``stage``'s dataset (set up for it if it can)."""
    try:
        data.setup(stage)
        return data.get_dataset(stage) is not None
    except (ValueError, NotImplementedError, KeyError):
        return False


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{name: float}`` of the scalar entries of a Lightning metrics dict."""
    scalars = {}
    for name, value in metrics.items():
        number = float(value.item() if hasattr(value, "item") else value)
        if not math.isnan(number):
            scalars[name] = number
    return scalars
