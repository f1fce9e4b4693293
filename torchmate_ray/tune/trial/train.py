"""The trial: a sampled config -> configure_all -> fit, reporting every epoch to Tune with a checkpoint.

One worker: Lightning runs inside the Tune trial's own process; each epoch's metrics go to Tune at once,
and its checkpoint is written into the trial's directory by a background thread (checkpoint_writer.py). Several
workers: the trial is a thin driver of a Ray Train V2 run (distributed.py). What both set up in their
processes is in setup.py.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Checkpoint
from ray import tune

from torchmate_ray.lightning.configure import configure_all
from torchmate_ray.tune.private import result_encoder
from torchmate_ray.tune.records.files import (CHECKPOINT_FILE, CODE_ERRORS, EPOCH_RECORD, PROGRESS_FILE,
                                              checkpoint_dir_name, repair_tail, write_json)
from torchmate_ray.tune.records.trial_record import EPOCHS, code_errors, recorded_epochs, trained_epochs
from torchmate_ray.tune.trial.checkpoint_writer import BackgroundCheckpointIO, find_resume_checkpoint
from torchmate_ray.tune.trial.setup import (TRIAL_TRAINER_DEFAULTS, TrialLayout, check_storage_visible,
                                            register_file_classes, use_shared_cache)


def train_trial(config: dict[str, Any], layout: TrialLayout = TrialLayout()) -> None:
    """Ray Tune function trainable: train ``config`` in this process, or on ``layout.workers`` Train workers.

    Reports all logged metrics and a full Trainer checkpoint at the end of every training epoch
    (after validation), so ASHA compares trials epoch by epoch, and resumes from the last checkpoint
    when Ray restarts the trial.
    """
    freeze_imported_objects()
    check_storage_visible(layout.experiment_dir)  # else mkdir would make the directory on this node alone
    trial_dir = Path(layout.experiment_dir) / tune.get_context().get_trial_id()
    trial_dir.mkdir(parents=True, exist_ok=True)
    for record in (EPOCH_RECORD, CODE_ERRORS):  # a line that a kill cut short would glue onto the next one
        repair_tail(trial_dir / record)
    raised = code_errors(trial_dir)
    if 0 <= layout.max_failures < len(raised):  # Tune restarted it, but only a dead process is retried
        raise RuntimeError(f"{raised[-1]['error']} (the trial's own error, not retried: sweep.max_failures is "
                           f"{layout.max_failures})")
    if layout.workers > 1:  # Ray Train retries its workers (sweep.max_failures); its failure is the trial's own
        from torchmate_ray.tune.trial.distributed import run_distributed_trial

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
        trainer.save_checkpoint(self.trial_dir / checkpoint_dir_name(epochs) / CHECKPOINT_FILE, weights_only=False,
                                storage_options=record)
        if epochs > self.recorded:
            tune.report(metrics)


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
        kwargs["plugins"] = [BackgroundCheckpointIO(layout.keep)]
    return kwargs


def append_line(path: Path, value: dict[str, Any]) -> None:
    """Append one JSON line, encoded as Tune encodes results (to a file whose tail a kill may have cut short:
    ``repair_tail`` it once first)."""
    with path.open("a") as handle:
        handle.write(json.dumps(value, cls=result_encoder()) + "\n")
