"""The sweep's record of what each trial trained, kept where a resumed sweep reads it back.

Two files per trial directory (``<experiment>/<trial id>/``):

- ``result.json``: one JSON line per result the driver processed, written by :class:`ResultRecord` straight
  into the experiment directory, appended and flushed line by line. Ray's own JSON logger writes it in a
  staging directory that is copied over every few seconds, and after ``--resume`` starts it again empty for
  trials whose checkpoints Tune did not keep (ours: the trials write their own), so the copied file lost the
  epochs before the interruption.
- ``epochs.jsonl``: one line per trained epoch, appended by the trial itself before it reports the epoch. A
  trial that continues from a checkpoint newer than ``result.json`` reports the epochs in between from it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ray.tune import Callback
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.utils.util import SafeFallbackEncoder

from torchmate_ray.tune.json_files import write_whole

RESULT_FILE, PARAMS_FILE, EPOCH_RECORD = "result.json", "params.json", "epochs.jsonl"
EPOCHS = "epochs"  # reported with every result: epochs done, the schedulers' time attribute


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


def append_line(path: Path, value: dict[str, Any]) -> None:
    """Append one JSON line (to a file whose tail a kill may have cut short: ``repair_tail`` it once first)."""
    with path.open("a") as handle:
        handle.write(json.dumps(value, cls=SafeFallbackEncoder) + "\n")


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


class ResultRecord(JsonLoggerCallback):
    """Ray Tune's JSON logger, writing in place: each trial's ``result.json`` (a line per result, flushed) and
    ``params.json`` (its config) in ``<experiment_dir>/<trial id>``, appended across resumes. (Being a
    ``JsonLoggerCallback``, it stands in for Tune's own, which would write a staging copy over it.)"""

    def __init__(self, experiment_dir: str):
        super().__init__()
        self.experiment_dir = experiment_dir
        self._files: dict[str, Any] = {}

    def log_trial_start(self, trial: Any) -> None:
        directory = Path(self.experiment_dir, trial.trial_id)
        directory.mkdir(parents=True, exist_ok=True)
        params = directory / PARAMS_FILE
        if not params.is_file():
            write_whole(params, json.dumps(trial.config, indent=2, sort_keys=True, cls=SafeFallbackEncoder))
        restore_last_result(trial, read_lines(directory / RESULT_FILE))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        handle = self._files.get(trial.trial_id)
        if handle is None:
            path = Path(self.experiment_dir, trial.trial_id, RESULT_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            repair_tail(path)
            handle = self._files[trial.trial_id] = path.open("a")
        handle.write(json.dumps({**result, "recorded_at": time.time()}, cls=SafeFallbackEncoder) + "\n")
        handle.flush()

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        handle = self._files.pop(trial.trial_id, None)
        if handle is not None:
            handle.close()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment; files stay here
        return {**self.__dict__, "_files": {}}


def restore_last_result(trial: Any, recorded: list[dict[str, Any]]) -> None:
    """Give a resumed trial its newest recorded result (``recorded``: its result.json) where Tune's state
    snapshot, older than the record, holds an older one or none. A trial that had trained all its epochs, or
    was stopped, ends without reporting again; Tune then ends it with that last result, which must hold the
    metric (Tune's strict metric check takes the sweep down otherwise)."""
    if not recorded:
        return
    newest = {key: value for key, value in recorded[-1].items() if key != "recorded_at"}
    if trial.run_metadata.last_result.get(EPOCHS, 0) < newest.get(EPOCHS, 0):
        trial.run_metadata.last_result = newest


class RecordedASHA(ASHAScheduler):
    """ASHA that a resumed sweep gives back its rungs: Tune saves no scheduler state, so on ``--resume`` each
    trial Tune adds again brings its recorded results (``result.json``) into the rungs, as they were judged
    before the interruption; what the trials report from then on is judged against all of them."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._add_earlier_trials(tune_controller)
        super().on_trial_add(tune_controller, trial)
        if not trial.storage.trial_dir_name:  # a new trial: no directory, nothing recorded
            return
        for result in read_lines(Path(trial.path) / RESULT_FILE):  # (ASHA passes over those without the metric)
            super().on_trial_result(tune_controller, trial, result)  # decisions made then: only the rungs count

    def add_history(self, trial_dirs: list[Path]) -> None:
        """An extended sweep (extend.py): its earlier trials' recorded results go into the rungs (when the first new
        trial is added: Tune gives ASHA its metric first), and the new trials are judged against them."""
        self._history = list(trial_dirs)

    def _add_earlier_trials(self, tune_controller: Any) -> None:
        history, self._history = getattr(self, "_history", []), []
        for trial_dir in history:  # (ASHA reads only a trial's id: each earlier trial stands in by it)
            trial = SimpleNamespace(trial_id=trial_dir.name)
            super().on_trial_add(tune_controller, trial)
            for result in read_lines(trial_dir / RESULT_FILE):
                super().on_trial_result(tune_controller, trial, result)
            super().on_trial_remove(tune_controller, trial)  # ended: only its rung values stay

CODE_ERRORS = "code_errors.jsonl"  # a line per time the trial's own code raised (the trial writes it)


def code_errors(trial_dir: Path) -> list[dict[str, Any]]:
    """The times the trial's own code raised, oldest first (``{"error": its last line}``)."""
    return read_lines(trial_dir / CODE_ERRORS)


class FailureBudget(Callback):
    """Tune retries every failure of a trial alike, up to ``FailureConfig.max_failures`` (here the sum of the
    sweep's two budgets). A trial whose own code raised records it (``code_errors.jsonl``) before it fails;
    once that happened more than ``max_failures`` times, the retry Tune has just queued is made its last:
    the trial raises the same error at once when it starts (``train_trial``) and Tune ends it as errored.
    Failures without such a record are its process or node dying, retried from the trial's checkpoint."""

    def __init__(self, experiment_dir: str, max_failures: int):
        self.experiment_dir, self.max_failures = experiment_dir, max_failures

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if 0 <= self.max_failures < len(code_errors(Path(self.experiment_dir, trial.trial_id))):
            trial.max_failures = trial.run_metadata.num_failures  # the next failure is the last
