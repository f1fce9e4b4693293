"""The winner exported: ``<experiment>/best/`` holds the best trial's best checkpoint (``model.ckpt``), its config
(``best_config.py``), that checkpoint's metrics (``metrics.json``) and the versions it ran with (``versions.json``).

    torchmate-train best/best_config.py --ckpt best/model.ckpt --test   # the exported model tested, not trained

Plain files: no torch, no Ray Train (a multi-worker trial's checkpoints are found through its ``result.json``).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from torchmate_ray.tune.records.checkpoints import KeepRule, read_checkpoint_records
from torchmate_ray.tune.records.files import (BEST_DIR, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE,
                                              RESULT_FILE, TRAIN_CHECKPOINT_FILE, VERSIONS_FILE, read_lines,
                                              write_whole)
from torchmate_ray.tune.records.trial_record import EPOCHS

VERSIONED = ("torch", "lightning", "ray", "torchmate_ray")  # and python


@dataclass
class BestCheckpoint:
    """A trial's best checkpoint that is still on disk: its Lightning file, epochs and metrics."""

    path: Path
    epochs: int
    metrics: dict[str, Any]


def find_best_checkpoint(trial_dir: Path, rule: KeepRule) -> BestCheckpoint | None:
    """The trial's best checkpoint by ``rule``'s metric among those kept (its own, or its Ray Train run's as its
    ``result.json`` names them); None if it has none with the metric."""
    records = {directory / CHECKPOINT_FILE: record for directory, record in read_checkpoint_records(trial_dir).items()}
    for line in read_lines(trial_dir / RESULT_FILE):
        path = Path(str(line.get("checkpoint_path") or "")) / TRAIN_CHECKPOINT_FILE
        if line.get("checkpoint_path") and isinstance(line.get(EPOCHS), int):
            records[path] = {EPOCHS: line[EPOCHS], "metrics": _learner_metrics(line, rule.metric)}
    ranked = [path for path in rule.best_first(records) if path.is_file()]
    if not ranked:
        return None
    return BestCheckpoint(ranked[0], records[ranked[0]][EPOCHS], records[ranked[0]]["metrics"])


def export_best(directory: Path, trial_id: str, rule: KeepRule, config_text: str | None) -> BestCheckpoint | None:
    """Write ``<directory>/best/`` for the best trial ``trial_id`` (its ``best_config.py`` when ``config_text`` is
    given); None, and no ``best/``, when the trial has no checkpoint left. The model file is a hard link to the
    trial's checkpoint where the file system allows (no second copy on disk), else a copy."""
    found = find_best_checkpoint(directory / trial_id, rule)
    target = directory / BEST_DIR
    shutil.rmtree(target, ignore_errors=True)  # a resumed sweep's winner replaces the last one's
    if found is None:
        return None
    target.mkdir()
    _link_or_copy(found.path, target / MODEL_FILE)
    if config_text is not None:
        write_whole(target / CONFIG_FILE, config_text)
    metrics = {"trial_id": trial_id, "epochs": found.epochs, "metric": rule.metric, "mode": rule.mode,
               "value": found.metrics.get(rule.metric), "metrics": found.metrics, "checkpoint": str(found.path)}
    write_whole(target / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_whole(target / VERSIONS_FILE, json.dumps(list_versions(), indent=2) + "\n")
    return found


def list_versions() -> dict[str, str]:
    """The versions of Python and of the packages a checkpoint depends on (None: not installed)."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def measure_disk(directory: Path) -> int:
    """Bytes the experiment's files take, each file once (a hard link, as ``best/model.ckpt``, is not a second)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except OSError:  # removed meanwhile
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def format_bytes(size: int) -> str:
    """``512 B``, ``21.3 kB``, ``4.7 MB``, ``1.2 GB`` (powers of 1000, as ``du --si``)."""
    if size < 1000:
        return f"{size} B"
    scaled = float(size)
    for unit in ("kB", "MB", "GB"):
        scaled /= 1000
        if scaled < 1000:
            break
    return f"{scaled:.1f} {unit}"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)


def _learner_metrics(line: dict[str, Any], metric: str) -> dict[str, Any]:
    """What the learner logged, of a result line (Tune adds its own keys: time, node, ...)."""
    return {key: value for key, value in line.items()
            if (key == metric or key == EPOCHS or "/" in key) and isinstance(value, (int, float))}
