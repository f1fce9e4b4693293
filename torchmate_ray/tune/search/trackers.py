"""The experiment trackers a sweep may name: one tracker run per trial, grouped by the sweep's name, through Ray's
own callbacks (sweep/tracker_callbacks.py builds them).

``--tracker`` (or ``sweep.tracker``) names one entry of :data:`TRACKERS`. Ray Tune writes TensorBoard event
files in every trial's directory whatever the choice (``tensorboard``, the default, adds nothing to that);
``mlflow`` and ``wandb`` add Ray's ``MLflowLoggerCallback`` / ``WandbLoggerCallback``, which log each trial's
config once (as params) and every reported epoch (step = Tune's ``training_iteration``, one report per epoch).
Credentials come from the environment only (``MLFLOW_TRACKING_URI``, ``WANDB_API_KEY``, ``WANDB_MODE``...).

The command line reads this table before anything heavy is imported: this module imports neither Ray nor a
tracker at module level.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from torchmate_ray.errors import ConfigError, describe, suggest


@dataclass(frozen=True)
class Tracker:
    """A tracker: the package it needs (None: nothing beyond Ray) and what installs it."""

    package: str | None = None
    pip: str | None = None


TRACKERS: dict[str, Tracker] = {
    "tensorboard": Tracker(),  # Ray's own event files in each trial's directory: what every sweep writes
    "mlflow": Tracker("mlflow", "mlflow-skinny"),
    "wandb": Tracker("wandb", "wandb"),
}
DEFAULT_TRACKER = "tensorboard"


def read_tracker(name: Any, key_path: str) -> Tracker:
    """The :data:`TRACKERS` entry called ``name``; any other name is a ConfigError at ``key_path``."""
    if not isinstance(name, str) or name not in TRACKERS:
        raise ConfigError(key_path, f"unknown tracker {describe(name)}{suggest(str(name), TRACKERS) or ''}; "
                          f"use one of {', '.join(TRACKERS)}")
    return TRACKERS[name]


def check_tracker(name: Any, key_path: str) -> None:
    """``read_tracker``, and refuse a tracker whose package is not installed (looked up, not imported: the
    command checks ``--tracker`` before anything starts)."""
    tracker = read_tracker(name, key_path)
    if tracker.package and importlib.util.find_spec(tracker.package) is None:
        raise ConfigError(key_path, f"the {name} tracker needs the '{tracker.package}' package, which is not "
                          f"installed; pip install {tracker.pip} (or pip install 'torchmate_ray[trackers]')")
