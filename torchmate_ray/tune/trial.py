"""The trial: a sampled config -> configure_all -> fit, reporting every epoch to Tune with a checkpoint.

One worker: Lightning runs inside the Tune trial's own process. Several workers: the trial is a thin
driver that runs a Ray Train V2 ``TorchTrainer`` whose workers run Lightning with ``RayDDPStrategy``.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
from ray.tune.integration.ray_train import TuneReportCallback

from torchmate_ray.lightning.configure import configure_all

CHECKPOINT_FILE = "trainer.ckpt"
PROGRESS_FILE = "progress.json"  # beside each checkpoint: its epochs and the metrics reported with it
EPOCHS = "epochs"  # reported with every result: epochs done, the schedulers' time attribute

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
    experiment_dir: str = ""       # the trials' own directories are <experiment_dir>/<trial id>
    train_storage: str = ""        # where multi-worker trials keep their Train runs (shared storage)
    data_cache: Any = None         # ObjectRef of {phase: (X, y) arrays}: a `dataset.cache` built once, shared


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
    trainer, model, data = configure_all(config, trial_trainer_kwargs(config, EpochReportCallback()))
    use_shared_cache(data, layout.data_cache)
    try:
        fit_trial(trainer, model, data, layout)
    finally:  # the process may serve the next trial (reuse_actors): nothing of this one stays on its GPU
        del trainer, model, data
        release_memory()


def fit_trial(trainer: Any, model: Any, data: Any, layout: TrialLayout) -> None:
    """Fit from the start, or on from the trial's newest checkpoint when Ray restarts it."""
    resume = find_resume_checkpoint(tune.get_checkpoint(), Path(layout.experiment_dir) / tune.get_context().get_trial_id())
    if resume is None:
        trainer.fit(model, data)
        return
    directory, record = resume
    if record["epochs"] >= trainer.max_epochs:  # it had finished: only its last report may be missing from Tune's state
        tune.report({**record["metrics"], EPOCHS: record["epochs"]})
        return
    # The checkpoint is this trial's own; its hyperparameters hold classes, which weights_only refuses.
    trainer.fit(model, data, ckpt_path=str(directory / CHECKPOINT_FILE), weights_only=False)


class EpochReportCallback(TuneReportCheckpointCallback):
    """Tune's Lightning report callback at every training epoch's end (after validation), which also reports
    the epochs done and leaves, beside each checkpoint, a ``progress.json`` with those epochs and metrics."""

    def __init__(self) -> None:
        super().__init__(filename=CHECKPOINT_FILE, on="train_epoch_end")

    def _handle(self, trainer: Any, pl_module: Any) -> None:
        metrics = self._get_report_dict(trainer, pl_module)
        if trainer.sanity_checking or not metrics:
            return
        metrics[EPOCHS] = trainer.current_epoch + 1
        with tempfile.TemporaryDirectory() as directory:
            trainer.save_checkpoint(os.path.join(directory, CHECKPOINT_FILE))
            Path(directory, PROGRESS_FILE).write_text(json.dumps({EPOCHS: metrics[EPOCHS], "metrics": metrics}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def find_resume_checkpoint(given: tune.Checkpoint | None, trial_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to continue from: the newest complete one in the trial's own directory.

    Tune hands a restarted trial the last checkpoint its experiment state recorded, and a driver killed
    between two state snapshots recorded an older one than the trial wrote (or none): continuing from
    that would repeat epochs or start again at 0. A checkpoint Tune hands over from another trial's
    directory (PBT's exploit) is taken as given.
    """
    if given is not None and Path(given.path).parent != trial_dir:
        return Path(given.path), {EPOCHS: 0, "metrics": {}}
    candidates = []
    for progress in trial_dir.glob(f"checkpoint_*/{PROGRESS_FILE}"):
        try:
            candidates.append((json.loads(progress.read_text()), progress.parent))
        except (OSError, ValueError):  # cut short by the kill
            continue
    for record, directory in sorted(candidates, key=lambda c: c[0][EPOCHS], reverse=True):
        if checkpoint_epochs(directory / CHECKPOINT_FILE) == record[EPOCHS]:
            return directory, record
    return None


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


def release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def checkpoint_epochs(path: Path) -> int | None:
    """Epochs done in a Lightning checkpoint saved at an epoch's end, or None for a missing or torn file.
    (A checkpoint directory is rewritten in place when a restored Tune reuses its index: the epoch
    count inside the file is what tells which write it holds.)"""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a checkpoint to continue from
        return None


def run_distributed_trial(config: dict[str, Any], layout: TrialLayout) -> None:
    """Drive a Ray Train V2 run of ``layout.workers`` DDP workers; rank 0's metrics reach Tune.

    The run is named after the trial, so a restarted trial's Train run restores its own checkpoint.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    register_file_classes(config, by_value=True)
    resources = {"CPU": layout.cpus_per_worker, **({"GPU": layout.gpus_per_worker} if layout.gpus_per_worker else {})}
    trainer = TorchTrainer(
        train_worker, train_loop_config={"config": config, "data_cache": layout.data_cache},
        scaling_config=ScalingConfig(num_workers=layout.workers, use_gpu=layout.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"train-{tune.get_context().get_trial_id()}", storage_path=layout.train_storage,
                             callbacks=[EpochsTuneReportCallback()],
                             checkpoint_config=CheckpointConfig(num_to_keep=layout.checkpoints_to_keep),
                             failure_config=FailureConfig(max_failures=layout.max_failures)))
    trainer.fit()


class EpochsTuneReportCallback(TuneReportCallback):
    """Ray Train's report to Tune, plus the epochs done (rank 0's ``epoch`` is Lightning's, counted from 0)."""

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        first = {**metrics[0], EPOCHS: int(metrics[0]["epoch"]) + 1}
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


def train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the same configure_all, with Ray's DDP strategy, environment and reporting.

    ``loop_config`` holds the trial's ``config`` and the sweep's shared ``data_cache`` (or None).
    """
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    config, data_cache = loop_config["config"], loop_config["data_cache"]

    register_file_classes(config)
    training = config.get("training") or {}
    kwargs = {key: value for key, value in TRIAL_TRAINER_DEFAULTS.items() if key not in training}
    kwargs.update(devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()],
                  callbacks=[RayTrainReportCallback()])
    trainer, model, data = configure_all(config, kwargs)
    use_shared_cache(data, data_cache)
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
