"""Every file of an experiment by name (the one place each name is spelled), and how they are written and read.

    <storage_path>/<name>/                 the experiment directory
        torchmate_sweep.json               INVOCATION_FILE: what started the sweep (experiment/directory.py)
        budget.jsonl                       BUDGET_FILE: the budgets' record (sweep/budget.py)
        confirm.jsonl                      CONFIRM_FILE: which trial confirms which config (sweep/confirm.py)
        summary.json  leaderboard.csv  best_config.py  report.html  report/      the results (results/)
        best/  model.ckpt  best_config.py  metrics.json  versions.json           the winner (results/export.py)
        experiment_state-*.json            Tune's state snapshots (read by experiment/trials.py)
        optuna.db  mlruns/                 Optuna's study, MLflow's default store (when used)
        train_runs/                        multi-worker trials' Ray Train runs
        <trial id>/                        a trial's directory:
            result.json  params.json       RESULT_FILE, PARAMS_FILE: the driver's record (sweep/result_record.py)
            epochs.jsonl  code_errors.jsonl   the trial's own record (trial/train.py)
            error.txt  error.pkl           Tune's, when the trial failed
            checkpoint_<epochs>/trainer.ckpt, progress.json   its checkpoints (records/checkpoints.py)

Every file is written whole (:func:`written_whole`): a reader, a resume or a report never finds one half-written.
JSON lines are appended a line at a time and read back skipping a line that a kill cut short. The standard
library only: the driver, the results, the trials and the command's start-up all read these.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# the experiment's own files. Not ".json" for the two that change during a run: Tune copies an experiment's
# top-level .json and .pkl files to its staging directory and back over them at every state snapshot
INVOCATION_FILE = "torchmate_sweep.json"
BUDGET_FILE = "budget.jsonl"      # one line: {"kind": ..., "limit": ..., "trials": {...}} (search/budget_settings.py)
CONFIRM_FILE = "confirm.jsonl"    # one line: {"top": K, "seeds": S, "trials": {trial id: {"of": ..., "seed": s}}}
SUMMARY_FILE, LEADERBOARD_FILE, REPORT_FILE = "summary.json", "leaderboard.csv", "report.html"
CONFIG_FILE, TRAIN_RUNS_DIR = "best_config.py", "train_runs"
PLOTS_DIR = "report"  # the PNGs, beside report.html
BEST_DIR, MODEL_FILE, METRICS_FILE, VERSIONS_FILE = "best", "model.ckpt", "metrics.json", "versions.json"
EXPERIMENT_STATES = "experiment_state-*.json"  # Tune's, named by their run's start
MLFLOW_STORE = "mlruns"  # the default MLflow store (file:), in the experiment directory
STUDY_FILE = "optuna.db"  # the experiment's Optuna study (SQLite; search/optuna_space.py)
# a trial's files
RESULT_FILE, PARAMS_FILE = "result.json", "params.json"
EPOCH_RECORD = "epochs.jsonl"       # a line per trained epoch, appended by the trial before it reports it
CODE_ERRORS = "code_errors.jsonl"   # a line per time the trial's own code raised (the trial writes it)
ERROR_FILE, ERROR_PICKLE = "error.txt", "error.pkl"  # Tune's, when a trial fails (its process dying included)
ERROR_FILES = (ERROR_FILE, ERROR_PICKLE)
CHECKPOINT_DIRS = "checkpoint_*"    # checkpoint_<epochs, 6 digits>
CHECKPOINT_FILE = "trainer.ckpt"    # Lightning's checkpoint, in each
PROGRESS_FILE = "progress.json"     # beside each checkpoint: its epochs and the metrics reported with it
TRAIN_CHECKPOINT_FILE = "checkpoint.ckpt"  # a multi-worker trial's: ray.train.lightning.RayTrainReportCallback's name
PARTIAL_SUFFIX = ".partial"         # a file being written (written_whole)
# outside the experiment: on a `ray up` cluster's head, the autoscaler's config (sweep/resources.py)
AUTOSCALER_CONFIG = "~/ray_bootstrap_config.yaml"


def checkpoint_dir_name(epochs: int) -> str:
    return f"checkpoint_{epochs:06d}"


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A file beside ``path`` for the block to write (``<name>.partial``), renamed to ``path`` once the block ends:
    a reader, a resume or a report never finds ``path`` half-written, whenever the writer is killed. Where the
    block raises, the partial file is removed and ``path`` keeps what it held."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def write_whole(path: Path, data: str | bytes) -> None:
    """``data`` in ``path``, whole or not at all (:func:`written_whole`)."""
    with written_whole(path) as partial:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data)


def write_json(path: Path, value: Any) -> None:
    """``value`` as indented JSON in ``path``, whole or not at all."""
    write_whole(path, json.dumps(value, indent=2) + "\n")


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} where the file is missing, cut short, or holds no object."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line cut short by a kill (or a missing file) is skipped."""
    try:
        text = path.read_text()
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def repair_tail(path: Path) -> None:
    """Cut a JSON-lines file back to its last complete line (the tail of a write that a kill interrupted)."""
    try:
        with path.open("rb+") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            data = handle.read()
            handle.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        return
