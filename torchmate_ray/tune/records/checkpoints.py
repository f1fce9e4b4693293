"""A trial's checkpoints as files, without torch: their names, the record beside each, and which of them stay on
disk. The trial's writer (trial/checkpoint_writer.py) prunes by :class:`KeepRule`; the results (results/export.py) read the same records.

    <trial dir>/checkpoint_<epochs>/trainer.ckpt     Lightning's checkpoint
    <trial dir>/checkpoint_<epochs>/progress.json    {"epochs": 3, "metrics": {...}}: its epochs and metrics
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchmate_ray.tune.records.files import CHECKPOINT_DIRS, PROGRESS_FILE
from torchmate_ray.tune.records.rows import rank_key
from torchmate_ray.tune.records.trial_record import EPOCHS



@dataclass(frozen=True)
class KeepRule:
    """Which of a trial's checkpoints stay on disk: the newest complete one (a restarted trial continues from
    it) and the ``best`` best by ``metric`` (``mode``), a tie to the earlier epoch; ``best`` None: all of them.
    (Multi-worker trials: the same rule as Ray Train's CheckpointConfig, trial/distributed.py.)"""

    metric: str
    mode: str = "max"
    best: int | None = 1

    def kept(self, records: Mapping[Path, Mapping[str, Any]]) -> set[Path]:
        """The checkpoint directories to keep, of ``records`` (directory -> its ``progress.json``)."""
        if self.best is None:
            return set(records)
        newest = max(records, key=lambda d: records[d][EPOCHS], default=None)
        return set(self.best_first(records)[:self.best]) | ({newest} if newest is not None else set())

    def best_first(self, records: Mapping[Any, Mapping[str, Any]]) -> list[Any]:
        """The keys of ``records`` whose record has a value of the metric, best first."""
        scored = [key for key in records if self.score(records[key]) is not None]
        return sorted(scored, key=lambda key: rank_key(self.score(records[key]), f"{records[key][EPOCHS]:09d}",
                                                       self.mode))

    def score(self, record: Mapping[str, Any]) -> float | None:
        """The checkpoint's value of the metric; None where it has none (never among the best)."""
        value = (record.get("metrics") or {}).get(self.metric)
        return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def read_checkpoint_records(trial_dir: Path) -> dict[Path, dict[str, Any]]:
    """Checkpoint directory -> its ``progress.json`` (its epochs and metrics), for those that have a readable one."""
    records = {}
    for progress in trial_dir.glob(f"{CHECKPOINT_DIRS}/{PROGRESS_FILE}"):
        try:
            record = json.loads(progress.read_text())
        except (OSError, ValueError):  # cut short by the kill
            continue
        if isinstance(record, dict) and isinstance(record.get(EPOCHS), int):
            records[progress.parent] = record
    return records
