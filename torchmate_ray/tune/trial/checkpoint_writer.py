"""A trial's checkpoints: written off the training thread, each whole, with the record of their epochs beside them;
which of them stay (``records/checkpoints.KeepRule``: the newest and the best k by the sweep's metric); and the one a
restarted trial continues from.

A checkpoint is ``<trial dir>/checkpoint_<epochs>/trainer.ckpt`` (Lightning's) with a ``progress.json`` (its epochs
and the metrics reported with it) beside it, each written by an atomic rename.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.apply_func import apply_to_collection

from torchmate_ray.tune.records.checkpoints import KeepRule, read_checkpoint_records
from torchmate_ray.tune.records.files import CHECKPOINT_DIRS, CHECKPOINT_FILE, PROGRESS_FILE, write_json, written_whole
from torchmate_ray.tune.records.trial_record import EPOCHS

if TYPE_CHECKING:
    from ray import tune

class BackgroundCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, off the training thread: the state is copied where it lies (on the
    GPU, a device-to-device copy) and one background thread writes it, then the ``progress.json`` beside it
    (the ``storage_options`` of ``trainer.save_checkpoint``), each by an atomic rename, then removes the
    checkpoints that ``keep`` does not keep (None: none removed). The end of the fit (``teardown``) waits for
    the writes, and a failed write fails the trial there or at the next epoch's checkpoint."""

    def __init__(self, keep: KeepRule | None = None):
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


def write_checkpoint(checkpoint: dict[str, Any], path: Path, record: dict[str, Any] | None,
                     keep: KeepRule | None) -> None:
    """Write ``checkpoint`` to ``path`` and ``record`` to the ``progress.json`` beside it, each whole or not at
    all; then remove the checkpoint directories beside this one that ``keep`` does not keep (none with None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with written_whole(path) as partial:
        torch.save(checkpoint, partial)
    if record is not None:  # a trial's epoch checkpoint (not one that a callback of the config's own saves)
        write_json(path.parent / PROGRESS_FILE, record)
        if keep is not None:
            prune_checkpoints(path.parent.parent, keep)


def prune_checkpoints(trial_dir: Path, keep: KeepRule) -> None:
    """Remove the trial's checkpoint directories that ``keep`` does not keep, and those a kill left without
    their ``progress.json`` (this thread is the trial's only writer: none is being written now)."""
    if keep.best is None:
        return
    kept = keep.kept(read_checkpoint_records(trial_dir))
    for directory in trial_dir.glob(CHECKPOINT_DIRS):
        if directory not in kept:
            shutil.rmtree(directory, ignore_errors=True)


def find_resume_checkpoint(given: tune.Checkpoint | None, trial_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to continue from: the newest complete one in the trial's own directory.

    Tune hands a restarted trial the last checkpoint its experiment state recorded, and a driver killed
    between two state snapshots recorded an older one than the trial wrote (or none): continuing from
    that would repeat epochs or start again at 0. A checkpoint Tune hands over from another trial's
    directory (PBT's exploit) is taken as given.
    """
    if given is not None and Path(given.path).parent != trial_dir:
        return Path(given.path), {EPOCHS: 0, "metrics": {}}
    records = read_checkpoint_records(trial_dir)
    for directory, record in sorted(records.items(), key=lambda item: item[1][EPOCHS], reverse=True):
        if checkpoint_epochs(directory / CHECKPOINT_FILE) == record[EPOCHS]:
            return directory, record
    return None


def checkpoint_epochs(path: Path) -> int | None:
    """Epochs done in a Lightning checkpoint saved at an epoch's end, or None for a missing or torn file.
    (A checkpoint directory is rewritten in place when a restored Tune reuses its index: the epoch
    count inside the file is what tells which write it holds.)"""
    try:
        return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - any unreadable file is simply not a checkpoint to continue from
        return None
