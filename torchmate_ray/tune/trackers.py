"""Experiment trackers: one tracker run per trial, grouped by the sweep's name, through Ray's own callbacks.

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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchmate_ray.errors import ConfigError, describe, suggest

WANDB_DEFAULT_PROJECT = "torchmate-tune"  # when WANDB_PROJECT is not set
MLFLOW_STORE = "mlruns"  # the default MLflow store (file:), in the experiment directory


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


def mlflow_tracking_uri(experiment_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI``, or a ``file:`` store in the experiment directory. MLflow 3 serves its file store
    only with ``MLFLOW_ALLOW_FILE_STORE=true`` (set here for this default; ``mlflow ui`` needs it too): an epoch of
    a trial logs in 0.04 s there against 0.33 s in an SQLite store (2 CPUs), on the driver, between results."""
    given = os.environ.get("MLFLOW_TRACKING_URI")
    if given:
        return given
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (experiment_dir / MLFLOW_STORE).as_uri()


def build_tracker_callbacks(name: str, experiment_dir: Path, key_path: str = "sweep.tracker") -> list[Any]:
    """The Tune callbacks of tracker ``name`` for the sweep in ``experiment_dir``: MLflow experiment / W&B group =
    the sweep's name (the directory's), one run per trial named after it. Raises ConfigError for a missing
    package, or W&B without credentials (no ``WANDB_API_KEY``, no login, not ``WANDB_MODE=offline``)."""
    check_tracker(name, key_path)
    if name == "mlflow":
        from torchmate_ray.tune.mlflow_runs import MLflowTrialRuns

        return [MLflowTrialRuns(tracking_uri=mlflow_tracking_uri(experiment_dir), experiment_name=experiment_dir.name)]
    if name == "wandb":
        return [build_wandb_callback(experiment_dir, key_path)]
    return []


def build_wandb_callback(experiment_dir: Path, key_path: str) -> Any:
    """Ray's W&B callback: project ``WANDB_PROJECT`` (or :data:`WANDB_DEFAULT_PROJECT`), group = the sweep's name,
    run id = the trial's id. Each trial's run is logged by a Ray actor of its own on this node (no CPU reserved),
    so its files go to ``WANDB_DIR`` or the experiment directory (``wandb/offline-run-*-<trial id>`` offline),
    and its mode is this process's ``WANDB_MODE`` (the actor's environment is Ray's, not this one's)."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = {"mode": os.environ["WANDB_MODE"]} if os.environ.get("WANDB_MODE") else {}
    callback = WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or WANDB_DEFAULT_PROJECT,
                                   group=experiment_dir.name, dir=os.environ.get("WANDB_DIR") or str(experiment_dir),
                                   **mode)
    try:
        callback.setup()  # Tune calls it again when the sweep starts; here it refuses missing credentials first
    except ValueError as err:
        raise ConfigError(key_path, f"W&B has no API key ({err}); set WANDB_API_KEY, or WANDB_MODE=offline to keep "
                          f"the runs on disk (wandb sync uploads them later)") from err
    return callback
