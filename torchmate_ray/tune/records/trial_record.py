"""What each trial's directory says it trained, kept where a resumed sweep reads it back (plain files: no Ray).

- ``result.json``: one JSON line per result the driver processed, written by the driver's record
  (sweep/result_record.py) straight into the experiment directory, appended and flushed line by line. Ray's own
  JSON logger writes it in a staging directory that is copied over every few seconds, and after ``--resume``
  starts it again empty for trials whose checkpoints Tune did not keep (ours: the trials write their own), so
  the copied file lost the epochs before the interruption.
- ``epochs.jsonl``: one line per trained epoch, appended by the trial itself before it reports the epoch. A
  trial that continues from a checkpoint newer than ``result.json`` reports the epochs in between from it.
- ``code_errors.jsonl``: a line per time the trial's own code raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchmate_ray.tune.records.files import CODE_ERRORS, EPOCH_RECORD, RESULT_FILE, read_lines

EPOCHS = "epochs"  # reported with every result: epochs done, the schedulers' time attribute


def recorded_epochs(trial_dir: Path, epoch_key: str) -> tuple[int, bool]:
    """What the sweep recorded of a trial: its newest epoch in ``result.json`` (0: none), and whether its last
    result ended it (``done``: the scheduler stopped it there)."""
    lines = [line for line in read_lines(trial_dir / RESULT_FILE) if isinstance(line.get(epoch_key), int)]
    if not lines:
        return 0, False
    return max(line[epoch_key] for line in lines), bool(lines[-1].get("done"))


def trained_epochs(trial_dir: Path, epoch_key: str) -> dict[int, dict[str, Any]]:
    """The trial's own record: epoch -> the metrics it reported for it (the newest line per epoch)."""
    return {line[epoch_key]: line for line in read_lines(trial_dir / EPOCH_RECORD) if isinstance(line.get(epoch_key), int)}


def code_errors(trial_dir: Path) -> list[dict[str, Any]]:
    """The times the trial's own code raised, oldest first (``{"error": its last line}``)."""
    return read_lines(trial_dir / CODE_ERRORS)
