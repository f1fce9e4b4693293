"""What every trial's process sets up before it trains, with one worker or several (train.py, distributed.py):
the trial's layout, the Trainer's defaults, the search-space file's classes, the sweep's shared data cache."""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from torchmate_ray.tune.records.files import INVOCATION_FILE

if TYPE_CHECKING:
    from torchmate_ray.tune.records.checkpoints import KeepRule

# Trainer settings for a trial, unless the config's own `training` says otherwise: Tune keeps the
# metrics (one report per epoch) and the checkpoints, so Lightning's own logger, checkpointing,
# progress bar and sanity check would only cost time.
TRIAL_TRAINER_DEFAULTS = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "accelerator": "auto",
    "devices": 1,
}


@dataclass(frozen=True)
class TrialLayout:
    """How one trial runs: its workers, and what Ray Train needs to run and restore them."""

    workers: int = 1
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    max_failures: int = 0
    keep: KeepRule | None = None   # which checkpoints stay (None: all); Ray Train's CheckpointConfig with workers
    experiment_dir: str = ""       # the trials' own directories are <experiment_dir>/<trial id>
    train_storage: str = ""        # where multi-worker trials keep their Train runs (shared storage)
    data_cache: Any = None         # ObjectRef of {phase: (X, y) arrays}: a `dataset.cache` built once, shared
    tune_checkpoints: bool = False  # checkpoints through Tune (PBT copies them between trials), not our writer
    # how long Ray Train waits for a multi-worker trial's worker group (None: Ray's 60 s): on an autoscaling cluster,
    # as long as a node takes to boot and run its setup commands
    worker_start_timeout_s: float | None = None


# Ray Train's setting, read where TorchTrainer.fit runs, and handed on by Train to its controller and workers
WORKER_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class StorageNotShared(RuntimeError):
    """This node cannot see the experiment's directory: its files would stay on this node and be lost."""


def check_storage_visible(experiment_dir: str) -> None:
    """Fail at once, in one line, on a node that does not see the experiment's storage (a node that joined the
    cluster after the sweep's start-up check, on an autoscaling cluster), before anything is written there.

    Raises:
        StorageNotShared: not a trial's own error: Tune retries the trial, as it does one on a lost node.
    """
    marker = Path(experiment_dir) / INVOCATION_FILE  # the sweep wrote it before its first trial
    if not marker.is_file():
        raise StorageNotShared(f"node {ray.util.get_node_ip_address()} cannot see the experiment's storage: "
                               f"{marker} is not there; --storage-path must be a directory that every node shares "
                               f"(NFS, EFS) at the same path")


def use_worker_start_timeout(layout: TrialLayout) -> None:
    """Give Ray Train the layout's wait for its worker group, unless the user set one (in this process's env)."""
    if layout.worker_start_timeout_s is not None:
        os.environ.setdefault(WORKER_START_TIMEOUT_ENV, f"{layout.worker_start_timeout_s:g}")


def use_shared_cache(data: Any, cache: Any) -> None:
    """Give the data module the cached splits that the sweep put in Ray's object store: read-only views of
    the node's shared memory, so the trials on a node hold one copy between them, and build none."""
    if cache is None or getattr(data, "cache", "none") == "none":
        return
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": the splits are only ever read
        data.cached_tensors = {phase: (torch.from_numpy(x), torch.from_numpy(y))
                               for phase, (x, y) in ray.get(cache).items()}


def register_file_classes(config: Any, by_value: bool = False) -> None:
    """Make classes and functions defined in the search-space file importable by name in this process.

    They reach the trial pickled by value (the file is not importable here), but Lightning's checkpoints
    pickle the config by reference, as ``torchmate_config_<file>.<Name>``: without a module of that name
    a trial with such a class could neither save nor restore a checkpoint.
    """
    for value in _leaves(config):
        module = getattr(value, "__module__", None)
        if (inspect.isclass(value) or inspect.isroutine(value)) and module and module.startswith("torchmate_config_"):
            sys.modules.setdefault(module, types.ModuleType(module))
            setattr(sys.modules[module], value.__qualname__, value)
            if by_value:  # passing them on to Train workers, where the module does not exist either
                ray.cloudpickle.register_pickle_by_value(sys.modules[module])


def _leaves(config: Any) -> Iterator[Any]:
    if isinstance(config, Mapping):
        for value in config.values():
            yield from _leaves(value)
    elif isinstance(config, (list, tuple)):
        for value in config:
            yield from _leaves(value)
    else:
        yield config
