"""The trial: a sampled config -> configure_all -> fit, reporting every epoch to Tune with a checkpoint."""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

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


def train_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: train ``config`` with Lightning, in this process.

    Reports all logged metrics and a full Trainer checkpoint at the end of every training epoch
    (after validation), so ASHA compares trials epoch by epoch, and resumes from Tune's checkpoint
    when Ray restarts the trial.
    """
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


def register_file_classes(config: Any) -> None:
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
