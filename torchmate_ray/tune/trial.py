"""The trial: a sampled config -> configure_all -> fit, reporting every epoch to Tune with a checkpoint.

One worker: Lightning runs inside the Tune trial's own process. Several workers: the trial is a thin
driver that runs a Ray Train V2 ``TorchTrainer`` whose workers run Lightning with ``RayDDPStrategy``.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback

from torchmate_ray.lightning.configure import configure_all

CHECKPOINT_FILE = "trainer.ckpt"

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
    checkpoints_to_keep: int | None = None
    train_storage: str = ""        # where multi-worker trials keep their Train runs (shared storage)


def train_trial(config: dict[str, Any], layout: TrialLayout = TrialLayout()) -> None:
    """Ray Tune function trainable: train ``config`` in this process, or on ``layout.workers`` Train workers.

    Reports all logged metrics and a full Trainer checkpoint at the end of every training epoch
    (after validation), so ASHA compares trials epoch by epoch, and resumes from the last checkpoint
    when Ray restarts the trial.
    """
    if layout.workers > 1:
        run_distributed_trial(config, layout)
        return
    register_file_classes(config)
    report = TuneReportCheckpointCallback(filename=CHECKPOINT_FILE, on="train_epoch_end")
    trainer, model, data = configure_all(config, trial_trainer_kwargs(config, report))
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        trainer.fit(model, data)
        return
    with checkpoint.as_directory() as directory:
        # The checkpoint is this trial's own; its hyperparameters hold classes, which weights_only refuses.
        trainer.fit(model, data, ckpt_path=os.path.join(directory, CHECKPOINT_FILE), weights_only=False)


def run_distributed_trial(config: dict[str, Any], layout: TrialLayout) -> None:
    """Drive a Ray Train V2 run of ``layout.workers`` DDP workers; rank 0's metrics reach Tune.

    The run is named after the trial, so a restarted trial's Train run restores its own checkpoint.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    register_file_classes(config, by_value=True)
    resources = {"CPU": layout.cpus_per_worker, **({"GPU": layout.gpus_per_worker} if layout.gpus_per_worker else {})}
    trainer = TorchTrainer(
        train_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=layout.workers, use_gpu=layout.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"train-{tune.get_context().get_trial_id()}", storage_path=layout.train_storage,
                             callbacks=[TuneReportCallback()],
                             checkpoint_config=CheckpointConfig(num_to_keep=layout.checkpoints_to_keep),
                             failure_config=FailureConfig(max_failures=layout.max_failures)))
    trainer.fit()


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the same configure_all, with Ray's DDP strategy, environment and reporting."""
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    register_file_classes(config)
    training = config.get("training") or {}
    kwargs = {key: value for key, value in TRIAL_TRAINER_DEFAULTS.items() if key not in training}
    kwargs.update(devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()],
                  callbacks=[RayTrainReportCallback()])
    trainer, model, data = configure_all(config, kwargs)
    trainer = prepare_trainer(trainer)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        trainer.fit(model, data)
        return
    with checkpoint.as_directory() as directory:
        trainer.fit(model, data, ckpt_path=os.path.join(directory, RayTrainReportCallback.CHECKPOINT_NAME),
                    weights_only=False)


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


def trial_trainer_kwargs(config: Mapping[str, Any], report: Any) -> dict[str, Any]:
    """The trial's Trainer overrides: the report callback, and the defaults the config does not set."""
    training = config.get("training") or {}
    kwargs = {key: value for key, value in TRIAL_TRAINER_DEFAULTS.items() if key not in training}
    kwargs["default_root_dir"] = tune.get_context().get_trial_dir() or os.getcwd()
    kwargs["callbacks"] = [report]
    return kwargs
