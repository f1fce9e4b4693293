"""Live progress of a sweep: a compact table redrawn in place on a terminal, one line per ended trial otherwise.

This replaces Ray Tune's own output (``torchmate-tune --verbose`` brings Ray's back instead). A trial
is *running* or *pending* (PENDING or PAUSED in Ray) until it ends as *finished* (all ``max_epochs``),
*stopped* (ended earlier: ASHA cut it) or *errored*, the same words and rules as the leaderboard and
summary.json (``rows``). The best trial is the best of those that finished or stopped (``rows.best_trial``),
each scored by ``sweep.score`` over the epochs it reported (``rows.score_curve``).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ray.tune import Callback

from torchmate_ray.tune.experiment.directory import experiment_dir
from torchmate_ray.tune.experiment.trials import read_curve
from torchmate_ray.tune.records.files import RESULT_FILE, read_lines
from torchmate_ray.tune.records.rows import (ENDED, TrialRow, best_trial, ended_status, format_value, get_path,
                                             live_status, rank_key, score_curve, score_label)
from torchmate_ray.tune.search.domains import varied_paths
from torchmate_ray.tune.sweep.progress_text import (Best, Snapshot, describe_end, describe_held, format_line,
                                                   format_table, short_labels)

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace

STATES = ("running", "pending", *ENDED)
SCORED = ("finished", "stopped")  # the trials that may be the best (rows.best_trial: not errored)


class SweepProgress(Callback):
    """Shows a sweep's progress from the Tune driver (pass it in ``RunConfig(callbacks=[...])``).

    On a terminal, a table of four lines is redrawn in place when it changes, at most every
    ``redraw_s`` seconds. Otherwise (CI, a log file) each trial that ends prints one plain line that
    also carries the counts, the best trial (its hyperparameters when it is new), epochs run and the
    time left, so a sweep of N trials prints N lines, up to ``lines_held`` lines at once. Beyond that, once trials
    end faster than ``lines_per_s``, one line says how many ended since the last and which one ended last (a
    10,000-trial sweep prints a line a second, not 10,000). Trial states are read from Ray's trials on every
    update, so a resumed sweep counts the trials that ended before it. Each trial is scored once, when it has ended
    (the best is kept as trials end): an update costs a look at each trial's state, not its row.

    The time left is a rough estimate: the trials still to end, at the pace trials have ended in this
    run (elapsed time / trials ended). ASHA's early stops and the trials running now are in that pace;
    it is unknown until the first trial ends.

    ``first_result_at`` is when this run's first result (a trial's first epoch) reached the driver, as
    ``time.time()``: one of the milestones of the command (cli.py); None until then.

    Args:
        metric, mode: the sweep's metric and ``"max"`` or ``"min"``.
        num_trials, max_epochs: the sweep's size; the epoch budget is their product.
        param_paths: key paths of the hyperparameters that vary (``domains.varied_paths``).
        epoch_key: the result key that counts a trial's epochs (the schedulers' time attribute).
        tty: redraw a table (True) or print lines (False); None: a table when the output is a terminal.
        stream: where to write; None: ``sys.stdout``.
        clock: seconds, for the elapsed time and the redraw interval.
        score: ``sweep.score``: how a trial's epochs make its value (``rows.score_curve``).
        experiment_dir: where the trials' ``result.json`` are: a resumed sweep's trials are scored by the
            epochs they reported before it too (None: by those reported in this run).
    """

    def __init__(self, metric: str, mode: str, num_trials: int, max_epochs: int, param_paths: Sequence[str],
                 epoch_key: str = "training_iteration", tty: bool | None = None, redraw_s: float = 0.5,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic, score: str = "last",
                 experiment_dir: str | None = None, lines_held: int = 50, lines_per_s: float = 1.0):
        self.metric, self.mode, self.epoch_key = metric, mode, epoch_key
        self.score, self.label, self.experiment_dir = score, score_label(metric, score), experiment_dir
        self.num_trials, self.max_epochs = num_trials, max_epochs
        self.param_paths = list(param_paths)
        self.labels = short_labels(self.param_paths)
        self.tty, self.redraw_s = tty, redraw_s
        self.lines_held, self.lines_per_s = lines_held, lines_per_s
        self.stream = stream  # None: sys.stdout when writing (a file object would not pickle into tuner.pkl)
        self.clock = clock
        self.budget: Any = None  # the sweep's budget.SweepBudget, whose status the progress shows; None: no budget
        self._reset()

    def _reset(self) -> None:
        self._ended: dict[str, str] = {}  # trial id -> finished | stopped | errored, for trials ending in this run
        self._started = self.clock()
        self._best_id: str | None = None
        self._last_event = ""
        self._shown: list[str] = []  # the table on screen
        self._last_draw = -math.inf
        self.first_result_at: float | None = None
        self._curves: dict[str, dict[int, float]] = {}  # trial id -> epoch -> the metric, as reported
        self._scored: set[str] = set()  # the ended trials whose rows were scored (and the best of them kept)
        self._best: TrialRow | None = None
        self._held: list[str] = []  # the states of trials that ended since the last line (on hold: lines_per_s)
        self._lines = float(self.lines_held)  # lines that may be printed now: lines_held at most, lines_per_s more
        self._lines_at = self._started

    # --- Ray Tune hooks -----------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        self._reset()
        if self.tty is None:
            self.tty = _is_terminal(self._out())

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        if self.first_result_at is None:
            self.first_result_at = time.time()  # wall clock, as the command's start (not self.clock)
        points = self._points(trial.trial_id)
        epochs, value = int(result.get(self.epoch_key, 0) or 0), result.get(self.metric)
        if epochs > 0 and isinstance(value, (int, float)) and math.isfinite(value):
            points[epochs] = float(value)  # the result itself: Tune updates trial.last_result after its callbacks

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial_ended(trials, trial, ended_status(self.epochs_of(trial), self.max_epochs))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial_ended(trials, trial, ended_status(self.epochs_of(trial), self.max_epochs, errored=True))

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.tty and self.clock() - self._last_draw >= self.redraw_s:
            self._draw(self.snapshot(trials))
        elif not self.tty and self._held:
            self._print_ended(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.tty:
            self._draw(self.snapshot(trials))
        elif self._held:
            self._print_ended(trials, now=True)

    # --- state ---------------------------------------------------------------------------------
    def state_of(self, trial: Any) -> str:
        """One of STATES. A trial that just ended is still RUNNING in Ray while its hooks run."""
        if trial.trial_id in self._ended:
            return self._ended[trial.trial_id]
        return live_status(trial.status, self.epochs_of(trial), self.max_epochs)

    def epochs_of(self, trial: Any) -> int:
        return int((trial.last_result or {}).get(self.epoch_key, 0) or 0)

    def row_of(self, trial: Any) -> TrialRow:
        """Ray's trial as the leaderboard's row: its state, epochs, score (``sweep.score``), hyperparameters."""
        config = trial.config or {}
        value = score_curve(self.curve_of(trial), self.score, self.mode)
        return TrialRow(trial.trial_id, self.state_of(trial), self.epochs_of(trial), value,
                        {path: get_path(config, path) for path in self.param_paths}, config)

    def curve_of(self, trial: Any) -> list[tuple[int, float]]:
        """The trial's (epoch, metric) so far: what it recorded before this run (``experiment_dir``), what it
        reported in this run, and its last result."""
        points = self._points(trial.trial_id)
        value = _metric(trial, self.metric)
        if value is not None and self.epochs_of(trial) > 0:
            points[self.epochs_of(trial)] = value
        return sorted(points.items())

    def _points(self, trial_id: str) -> dict[int, float]:
        """The trial's epoch -> metric so far, begun from its record (read once per trial)."""
        if trial_id not in self._curves:
            self._curves[trial_id] = dict(self._recorded_curve(trial_id))
        return self._curves[trial_id]

    def _recorded_curve(self, trial_id: str) -> list[tuple[int, float]]:
        if self.experiment_dir is None:
            return []
        return read_curve(read_lines(Path(self.experiment_dir, trial_id, RESULT_FILE)), self.metric)

    def snapshot(self, trials: Sequence[Any]) -> Snapshot:
        """Where the sweep stands: each trial's state and epochs looked at, an ended trial not scored yet (one that
        ended before this run) scored once."""
        counts, epochs = dict.fromkeys(STATES, 0), 0
        for trial in trials:
            state = self.state_of(trial)
            counts[state] += 1
            epochs += self.epochs_of(trial)
            if state in SCORED and trial.trial_id not in self._scored:
                self._keep_best(self.row_of(trial))
        counts["pending"] += max(self.num_trials - len(trials), 0)  # not created by the searcher yet
        elapsed = self.clock() - self._started
        to_end = self.num_trials - sum(counts[state] for state in ENDED)
        eta = to_end * elapsed / len(self._ended) if self._ended else None
        return Snapshot(counts, self.num_trials, epochs, self.num_trials * self.max_epochs, self._as_best(self._best),
                        elapsed, eta, self.budget.status() if self.budget is not None else None)

    def _keep_best(self, row: TrialRow) -> None:
        """Score an ended trial once: the best of them is kept (``rows.best_trial``'s rule, by ``rows.rank_key``)."""
        self._scored.add(row.trial_id)
        if row.status in SCORED and row.value is not None and (self._best is None or rank_key(
                row.value, row.trial_id, self.mode) < rank_key(self._best.value, self._best.trial_id, self.mode)):
            self._best = row

    def best_of(self, trials: Iterable[Any]) -> Best | None:
        """The best of ``trials`` by the leaderboard's rule (``rows.best_trial``)."""
        return self._as_best(best_trial(map(self.row_of, trials), self.mode))

    def _as_best(self, row: TrialRow | None) -> Best | None:
        if row is None:
            return None
        return Best(row.trial_id, row.value, {label: format_value(row.params[path])
                                              for label, path in zip(self.labels, self.param_paths)})

    def _trial_ended(self, trials: list[Any], trial: Any, state: str) -> None:
        self._ended[trial.trial_id] = state
        row = self.row_of(trial)
        self._keep_best(row)
        self._last_event = describe_end(row, f"{self.epochs_of(trial)}/{self.max_epochs}", self.label,
                                        getattr(trial, "error_file", None))
        if not self.tty:
            self._held.append(state)
            self._print_ended(trials)

    def _print_ended(self, trials: list[Any], now: bool = False) -> None:
        """The line of the trials that ended since the last line, if one may be printed (``now``: at the end)."""
        clock = self.clock()
        self._lines = min(self.lines_held, self._lines + (clock - self._lines_at) * self.lines_per_s)
        self._lines_at = clock
        if self._lines < 1 and not now:
            return
        self._lines -= 1
        snapshot = self.snapshot(trials)
        new_best = snapshot.best is not None and snapshot.best.trial_id != self._best_id
        self._best_id = snapshot.best.trial_id if snapshot.best else None
        event = self._last_event if len(self._held) == 1 else describe_held(self._held, self._last_event)
        self._held = []
        self._write(format_line(event, snapshot, new_best) + "\n")

    # --- output --------------------------------------------------------------------------------
    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()

    def _draw(self, snapshot: Snapshot) -> None:
        width = shutil.get_terminal_size().columns - 1  # a line that wraps would break the redraw
        lines = [line[:width] for line in format_table(snapshot, self.label, self._last_event)]
        self._last_draw = self.clock()
        if lines == self._shown:
            return
        up = f"\x1b[{len(self._shown)}A\r" if self._shown else ""
        self._write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._shown = lines


def build_progress(space: SearchSpace, epoch_key: str, budget: Any = None) -> SweepProgress:
    """The progress display of ``space``'s sweep: its metric and score, trials, epochs and varied hyperparameters,
    its experiment directory (where its trials record their results) once it has a name, and its ``budget``."""
    s = space.settings
    progress = SweepProgress(s.metric, s.mode, space.num_trials, space.max_epochs, varied_paths(space.config),
                             epoch_key, score=s.score, experiment_dir=str(experiment_dir(space)) if s.name else None)
    progress.budget = budget
    return progress


def _metric(trial: Any, metric: str) -> float | None:
    value = (trial.last_result or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
