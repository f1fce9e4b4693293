"""One training run from a config, without Ray: fit, then test when the data has a test split."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from torchmate_ray.lightning.configure import configure_all


def run_training(cfg: Mapping[str, Any], trainer_kwargs: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Train ``cfg`` with ``trainer.fit`` and then ``trainer.test`` if a test split exists.

    Returns the final metrics: what the last validation epoch logged, and the test metrics.

    Raises:
        ConfigError: before training, for anything wrong in ``cfg``.
    """
    trainer, model, data = configure_all(cfg, trainer_kwargs)
    trainer.fit(model, data)
    metrics = scalar_metrics(trainer.callback_metrics)
    if has_split(data, "test"):
        for results in trainer.test(model, data, verbose=False):
            metrics.update(scalar_metrics(results))
    return metrics


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
