"""The driver's record of every result (``result.json`` and ``params.json`` in each trial's directory), and the
budget of failures of a trial's own code: two Tune callbacks the sweep runs with (records/trial_record.py reads
what they write)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.logger import JsonLoggerCallback

from torchmate_ray.tune.private import last_result, make_next_failure_last, restore_last_result, result_encoder
from torchmate_ray.tune.records.files import PARAMS_FILE, RESULT_FILE, read_lines, repair_tail, write_whole
from torchmate_ray.tune.records.trial_record import EPOCHS, code_errors


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
            write_whole(params, json.dumps(trial.config, indent=2, sort_keys=True, cls=result_encoder()))
        give_back_last_result(trial, read_lines(directory / RESULT_FILE))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        handle = self._files.get(trial.trial_id)
        if handle is None:
            path = Path(self.experiment_dir, trial.trial_id, RESULT_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            repair_tail(path)
            handle = self._files[trial.trial_id] = path.open("a")
        handle.write(json.dumps({**result, "recorded_at": time.time()}, cls=result_encoder()) + "\n")
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


def give_back_last_result(trial: Any, recorded: list[dict[str, Any]]) -> None:
    """Give a resumed trial its newest recorded result (``recorded``: its result.json) where Tune's state
    snapshot, older than the record, holds an older one or none. A trial that had trained all its epochs, or
    was stopped, ends without reporting again; Tune then ends it with that last result, which must hold the
    metric (Tune's strict metric check takes the sweep down otherwise)."""
    if not recorded:
        return
    newest = {key: value for key, value in recorded[-1].items() if key != "recorded_at"}
    if last_result(trial).get(EPOCHS, 0) < newest.get(EPOCHS, 0):
        restore_last_result(trial, newest)


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
            make_next_failure_last(trial)
