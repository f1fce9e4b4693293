"""An experiment directory's trials read into rows (:class:`~torchmate_ray.tune.records.rows.TrialRow`).

Each trial is read from its own directory (``result.json``: one JSON line per epoch; ``params.json``;
``error.txt``), and Tune's ``experiment_state-*.json`` says which trials are running or pending, so an
experiment that is still running, or was interrupted, reads as well as a finished one (which also has
``summary.json``).

    rows, seconds = read_experiment_trials(directory, space, interrupted=False)   # rows in directory order
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.tune.records.files import (ERROR_FILE, ERROR_FILES, ERROR_PICKLE, EXPERIMENT_STATES, PARAMS_FILE,
                                              RESULT_FILE, SUMMARY_FILE, read_json_object, read_lines)
from torchmate_ray.tune.records.rows import TrialRow, get_path, score_curve, trial_status
from torchmate_ray.tune.records.trial_record import EPOCHS, code_errors
from torchmate_ray.tune.search.domains import varied_paths

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace

EPOCH_KEYS = (EPOCHS, "training_iteration")  # epochs done: as the trial reports them, else Tune's report count
STATE_ERROR = "errored (see Tune's experiment state)"  # Tune says ERROR, the trial left no error file


def read_experiment_trials(directory: Path, space: SearchSpace,
                           interrupted: bool = False) -> tuple[list[TrialRow], dict[str, float]]:
    """Every trial of the experiment, in the order of their directories, and each one's seconds (its
    ``time_total_s``). ``interrupted``: a signal stopped the sweep; the trials it left running read as
    ``interrupted``."""
    return read_trials(directory, space, read_trial_states(directory), interrupted)


def read_trial_states(directory: Path) -> dict[str, str]:
    """Trial id -> Tune's status (RUNNING, PENDING, TERMINATED, ERROR, ...) from the experiment state files: each
    trial's from the newest run that had it (an experiment grown by ``extend``, or confirmed, ran Tune more than
    once); a file that cannot be read (a sweep killed while writing it) counts for nothing."""
    states: dict[str, str] = {}
    for path in sorted(directory.glob(EXPERIMENT_STATES)):  # named by their run's start: the newest last
        try:
            entries = json.loads(path.read_text())["trial_data"]
            states.update({trial["trial_id"]: trial["status"] for trial in (json.loads(entry[0]) for entry in entries)})
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return states


def read_trials(directory: Path, space: SearchSpace, states: Mapping[str, str],
                interrupted: bool = False) -> tuple[list[TrialRow], dict[str, float]]:
    """One row per trial directory (plus trials Tune knows of that have none yet), and each one's seconds."""
    varied = varied_paths(space.config)
    complete = (directory / SUMMARY_FILE).is_file()
    trials, seconds = [], {}
    for trial_dir in sorted(p for p in directory.iterdir() if p.is_dir() and _is_trial_dir(p)):
        lines = read_lines(trial_dir / RESULT_FILE)
        trial_id = str(lines[-1].get("trial_id") or trial_dir.name) if lines else trial_dir.name
        row = read_trial(trial_dir, trial_id, lines, space, varied)
        row.error = _settled_error(row.error, states.get(trial_id))
        row.status = trial_status(row.epochs, space.max_epochs, row.error is not None, states.get(trial_id),
                                  complete, interrupted)
        trials.append(row)
        seconds[trial_id] = max((float(line.get("time_total_s") or 0) for line in lines), default=0.0)
    for trial_id, state in states.items():
        if trial_id not in seconds:  # not started yet: no directory
            status = trial_status(0, space.max_epochs, False, state, complete, interrupted)
            trials.append(TrialRow(trial_id, status, 0, None, {path: None for path in varied}))
            seconds[trial_id] = 0.0
    return trials, seconds


def read_trial(trial_dir: Path, trial_id: str, lines: list[dict[str, Any]], space: SearchSpace,
               varied: list[str]) -> TrialRow:
    """A trial's row from its directory (``lines``: its ``result.json``); its status is left to the caller."""
    config = read_json_object(trial_dir / PARAMS_FILE) or (lines[-1].get("config") if lines else None) or {}
    curve = read_curve(lines, space.settings.metric)
    return TrialRow(trial_id=trial_id, status="", epochs=max((_epochs(line) for line in lines), default=0),
                    value=score_curve(curve, space.settings.score, space.settings.mode), params={path: get_path(config, path) for path in varied},
                    config=config, curve=curve, node=str(lines[-1].get("node_ip", "")) if lines else "",
                    error=read_error(trial_dir))


def read_curve(lines: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """(epochs done, metric) per epoch; a trial continued from a checkpoint may report an epoch again: the
    last counts."""
    points = {_epochs(line): float(line[metric]) for line in lines
              if isinstance(line.get(metric), (int, float)) and not math.isnan(line[metric]) and _epochs(line) > 0}
    return sorted(points.items())


def read_error(trial_dir: Path) -> str | None:
    """What the trial's own code last raised (``code_errors.jsonl``), else the last line of its ``error.txt``
    (Tune writes it, with ``error.pkl``, when a trial fails, its process dying included)."""
    raised = code_errors(trial_dir)
    if raised and (trial_dir / ERROR_FILE).is_file():
        return raised[-1]["error"]
    if (trial_dir / ERROR_FILE).is_file():
        lines = [line for line in (trial_dir / ERROR_FILE).read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "errored"
    return f"errored ({ERROR_PICKLE})" if (trial_dir / ERROR_PICKLE).is_file() else None


def _settled_error(error: str | None, state: str | None) -> str | None:
    if state == "TERMINATED":  # an error file left by a failure that a retry got past
        return None
    return STATE_ERROR if error is None and state == "ERROR" else error


def _epochs(line: Mapping[str, Any]) -> int:
    for key in EPOCH_KEYS:
        if isinstance(line.get(key), (int, float)) and not math.isnan(line[key]):
            return int(line[key])
    return 0


def _is_trial_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in (RESULT_FILE, PARAMS_FILE, *ERROR_FILES))

