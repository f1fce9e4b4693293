"""The trial: a sampled config -> configure_all -> fit, reporting every epoch to Tune with a checkpoint.

One worker: Lightning runs inside the Tune trial's own process; each epoch's metrics go to Tune at once,
and its checkpoint is written into the trial's directory by a background thread. Several workers: the
trial is a thin driver of a Ray Train V2 run (distributed.py).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.apply_func import apply_to_collection
from lightning.pytorch.callbacks import Checkpoint
from ray import tune

from torchmate_ray.lightning.configure import configure_all
from torchmate_ray.tune.record import (CODE_ERRORS, EPOCH_RECORD, EPOCHS, append_line, code_errors, recorded_epochs,
                                      repair_tail, trained_epochs)

CHECKPOINT_FILE = "trainer.ckpt"
PROGRESS_FILE = "progress.json"  # beside each checkpoint: its epochs and the metrics reported with it

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
    tune_checkpoints: bool = False  # checkpoints through Tune (PBT copies them between trials), not our writer


def train_trial(config: dict[str, Any], layout: TrialLayout = TrialLayout()) -> None:
    """Ray Tune function trainable: train ``config`` in this process, or on ``layout.workers`` Train workers.

    Reports all logged metrics and a full Trainer checkpoint at the end of every training epoch
    (after validation), so ASHA compares trials epoch by epoch, and resumes from the last checkpoint
    when Ray restarts the trial.
    """
    freeze_imported_objects()
    trial_dir = Path(layout.experiment_dir) / tune.get_context().get_trial_id()
    trial_dir.mkdir(parents=True, exist_ok=True)
    for record in (EPOCH_RECORD, CODE_ERRORS):  # a line that a kill cut short would glue onto the next one
        repair_tail(trial_dir / record)
    raised = code_errors(trial_dir)
    if 0 <= layout.max_failures < len(raised):  # Tune restarted it, but only a dead process is retried
        raise RuntimeError(f"{raised[-1]['error']} (the trial's own error, not retried: sweep.max_failures is "
                           f"{layout.max_failures})")
    if layout.workers > 1:  # Ray Train retries its workers (sweep.max_failures); its failure is the trial's own
        from torchmate_ray.tune.distributed import run_distributed_trial

        with recording_code_errors(trial_dir):
            run_distributed_trial(config, layout)
        return
    register_file_classes(config)
    try:
        with recording_code_errors(trial_dir):
            trainer, model, data = configure_all(config, trial_trainer_kwargs(config, trial_dir, layout))
            use_shared_cache(data, layout.data_cache)
            fit_trial(trainer, model, data, trial_dir)
    finally:  # the process may serve the next trial (reuse_actors): nothing of this one stays on its GPU
        trainer = model = data = None
        release_memory()


@contextlib.contextmanager
def recording_code_errors(trial_dir: Path) -> Iterator[None]:
    """What the trial's own code raises is recorded (``code_errors.jsonl``) before Tune sees it: FailureBudget
    counts these apart from processes that died."""
    try:
        yield
    except Exception as err:
        append_line(trial_dir / CODE_ERRORS, {"error": f"{type(err).__name__}: {err}".splitlines()[0]})
        raise


def fit_trial(trainer: Any, model: Any, data: Any, trial_dir: Path) -> None:
    """Fit from the start, or on from the trial's newest checkpoint when Ray restarts it.

    A restarted trial first reports, from its own record (``epochs.jsonl``), the epochs it trained that the
    sweep's ``result.json`` lacks (a driver killed between them, a process killed with a report in flight),
    in order, so the scheduler judges every epoch; then it trains on, reporting only epochs the sweep has
    not recorded. A trial whose last recorded result ended it (stopped by the scheduler just before an
    interruption) ends at once.
    """
    recorded, ended = recorded_epochs(trial_dir, EPOCHS)
    if ended:
        return
    resume = find_resume_checkpoint(tune.get_checkpoint(), trial_dir)
    trained = resume[1][EPOCHS] if resume else 0
    if trained > recorded:
        report_from_record(trial_dir, range(recorded + 1, trained + 1))
    for callback in trainer.callbacks:
        if isinstance(callback, EpochReport):
            callback.recorded = recorded  # a checkpoint older than the record: the epochs trained again go unreported
    if resume is None:
        trainer.fit(model, data)
        return
    if trained >= trainer.max_epochs:  # it had finished
        return
    # The checkpoint is this trial's own; its hyperparameters hold classes, which weights_only refuses.
    trainer.fit(model, data, ckpt_path=str(resume[0] / CHECKPOINT_FILE), weights_only=False)


def report_from_record(trial_dir: Path, epochs: range) -> None:
    """Report ``epochs`` to Tune again, as the trial recorded them when it trained them."""
    record = trained_epochs(trial_dir, EPOCHS)
    for epoch in epochs:
        if epoch not in record:
            raise RuntimeError(f"{trial_dir / EPOCH_RECORD} has no line for epoch {epoch}, which the trial's "
                               f"checkpoint says it trained; its record was edited or lost")
        tune.report({key: value for key, value in record[epoch].items() if key != "reported_at"})


class EpochReport(Checkpoint):
    """At every training epoch's end: the epoch's metrics and epochs done to the trial's own record
    (``epochs.jsonl``) and to Tune, and a checkpoint with a ``progress.json`` (those epochs and metrics) in
    ``<trial dir>/checkpoint_<epochs>/``.

    A Lightning ``Checkpoint``, so that it runs after the LightningModule's ``on_train_epoch_end`` (where
    learners log their epoch means) and after validation. The metrics go to Tune at once; the checkpoint is
    written by :class:`BackgroundCheckpointIO`, and a resumed trial takes the newest complete one. With
    ``through_tune`` the checkpoint goes through Tune instead (PBT hands it to other trials). Epochs up to
    ``recorded`` are in the sweep's record already (fit_trial sets it): they are not reported again.
    """

    def __init__(self, trial_dir: Path, through_tune: bool = False):
        self.trial_dir, self.through_tune = trial_dir, through_tune
        self.recorded = 0

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        epochs = trainer.current_epoch + 1
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}  # one read per epoch
        metrics[EPOCHS] = epochs
        record = {EPOCHS: epochs, "metrics": metrics}
        if trainer.is_global_zero:  # (when it was reported: bench/record_lag.py measures how late the driver records it)
            append_line(self.trial_dir / EPOCH_RECORD, {**metrics, "reported_at": time.time()})
        if self.through_tune:
            with tempfile.TemporaryDirectory() as directory:
                trainer.save_checkpoint(os.path.join(directory, CHECKPOINT_FILE), weights_only=False)
                write_json(Path(directory, PROGRESS_FILE), record)
                if epochs > self.recorded:
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            return
        trainer.save_checkpoint(self.trial_dir / f"checkpoint_{epochs:06d}" / CHECKPOINT_FILE, weights_only=False,
                                storage_options=record)
        if epochs > self.recorded:
            tune.report(metrics)


class BackgroundCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, off the training thread: the state is copied where it lies (on the
    GPU, a device-to-device copy) and one background thread writes it, then the ``progress.json`` beside it
    (the ``storage_options`` of ``trainer.save_checkpoint``), each by an atomic rename, then removes all
    but the newest ``keep`` checkpoints. The end of the fit (``teardown``) waits for the writes, and a
    failed write fails the trial there or at the next epoch's checkpoint."""

    def __init__(self, keep: int | None = None):
        self.keep = keep
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending: list[Future] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        self._raise_failed()
        copy = apply_to_collection(checkpoint, torch.Tensor, lambda tensor: tensor.detach().clone())
        self._pending.append(self._executor.submit(write_checkpoint, copy, Path(path), storage_options, self.keep))

    def teardown(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def _raise_failed(self) -> None:
        done = [future for future in self._pending if future.done()]
        self._pending = [future for future in self._pending if not future.done()]
        for future in done:
            future.result()


def write_checkpoint(checkpoint: dict[str, Any], path: Path, record: dict[str, Any] | None, keep: int | None) -> None:
    """Write ``checkpoint`` to ``path`` and ``record`` to the ``progress.json`` beside it, each whole or not at
    all; then keep only the newest ``keep`` checkpoint directories beside this one (all with None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)
    if record is not None:
        write_json(path.parent / PROGRESS_FILE, record)
    if keep:
        for old in sorted(path.parent.parent.glob("checkpoint_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, value: Any) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


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


def freeze_imported_objects() -> None:
    """At this process's first trial: what it holds now (torch, Lightning and Ray imported, ~550,000 objects)
    moves out of the garbage collector's reach (``gc.freeze``), so the full collection that ends each trial
    (:func:`release_memory`) scans only what trials made since: 1 ms instead of 0.26 s per trial on 2 CPUs,
    which a 50-trial ASHA sweep, most of its trials one epoch long, paid 50 times."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


def release_memory() -> None:
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


def trial_trainer_kwargs(config: Mapping[str, Any], trial_dir: Path, layout: TrialLayout) -> dict[str, Any]:
    """The trial's Trainer overrides: the report callback and its checkpoint writer, and the defaults the
    config does not set. Checkpointing is always on: the report callback is the trial's checkpoint."""
    training = config.get("training") or {}
    kwargs = {key: value for key, value in TRIAL_TRAINER_DEFAULTS.items() if key not in training}
    kwargs["default_root_dir"] = tune.get_context().get_trial_dir() or os.getcwd()
    kwargs["enable_checkpointing"] = True
    if layout.tune_checkpoints or "plugins" in training:  # a checkpoint writer of the config's own, say
        kwargs["callbacks"] = [EpochReport(trial_dir, through_tune=True)]
    else:
        kwargs["callbacks"] = [EpochReport(trial_dir)]
        kwargs["plugins"] = [BackgroundCheckpointIO(layout.checkpoints_to_keep)]
    return kwargs
