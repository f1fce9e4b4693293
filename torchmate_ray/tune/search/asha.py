"""ASHA with the rungs of what a sweep recorded: a resumed sweep's, and an extended sweep's earlier trials'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from torchmate_ray.tune.private import has_directory, stand_in_trial
from torchmate_ray.tune.records.files import RESULT_FILE, read_lines


class RecordedASHA(ASHAScheduler):
    """ASHA that a resumed sweep gives back its rungs: Tune saves no scheduler state, so on ``--resume`` each
    trial Tune adds again brings its recorded results (``result.json``) into the rungs, as they were judged
    before the interruption; what the trials report from then on is judged against all of them."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._add_earlier_trials(tune_controller)
        super().on_trial_add(tune_controller, trial)
        if not has_directory(trial):  # a new trial: no directory, nothing recorded
            return
        for result in read_lines(Path(trial.path) / RESULT_FILE):  # (ASHA passes over those without the metric)
            super().on_trial_result(tune_controller, trial, result)  # decisions made then: only the rungs count

    def add_history(self, trial_dirs: list[Path]) -> None:
        """An extended sweep (sweep/extend.py): its earlier trials' recorded results go into the rungs (when the
        first new trial is added: Tune gives ASHA its metric first), and the new trials are judged against them."""
        self._history = list(trial_dirs)

    def _add_earlier_trials(self, tune_controller: Any) -> None:
        history, self._history = getattr(self, "_history", []), []
        for trial_dir in history:  # each earlier trial stands in by its id
            trial = stand_in_trial(trial_dir.name)
            super().on_trial_add(tune_controller, trial)
            for result in read_lines(trial_dir / RESULT_FILE):
                super().on_trial_result(tune_controller, trial, result)
            super().on_trial_remove(tune_controller, trial)  # ended: only its rung values stay
