"""A sweep's budgets: ``--time-budget 30m``, ``--epoch-budget N`` and ``--gpu-hours H``, enforced while it runs.

A budget is kept by one :class:`SweepBudget` in the driver, which Tune consults twice, through its own hooks:

- as the run's **stopper** (``RunConfig.stop``): at every epoch a trial reports, the trial goes on only if its next
  epoch fits what is left (``may_continue``); otherwise it stops there, with that epoch kept, and is listed as
  cut. Once nothing runs and nothing new fits, or the time or GPU budget is spent, it ends the sweep
  (``stop_all``);
- through the **searcher** (budget_hooks.BudgetedSearch, around Tune's): a new trial is drawn only if its first epoch
  fits (``may_start``). Trials are drawn when a place frees (the sweep's concurrency), so drawn is started.

What fits: an epoch budget counts the epochs done plus one for every trial under way (each is in an epoch, and
Tune lets it start the next only after its report), so it is never exceeded. A time budget (wall clock from the
command's start) takes each trial's last epoch, and for a new trial the mean time from its draw to its first
report. A GPU budget (GPU-seconds: each trial's GPUs times its time) does the same with the GPUs of the trials
under way. The state is kept in ``budget.jsonl`` in the experiment, so that a resumed sweep spends what is left;
in the driver it is one ``BudgetState`` per experiment, which every copy of the keeper shares (``LIVE``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.stopper import Stopper

from torchmate_ray.tune.records.files import BUDGET_FILE, read_json_object, write_whole
from torchmate_ray.tune.records.trial_record import EPOCHS


@dataclass
class BudgetState:
    """What a sweep has spent of its budget, and where its trials stand."""

    began: float                    # the sweep's start (the command's), the time spent before a resume taken off
    epochs_done: int = 0
    gpu_seconds_done: float = 0.0   # of the trials that ended
    epochs_of: dict[str, int] = field(default_factory=dict)   # trial -> its epochs done
    cut: dict[str, dict[str, Any]] = field(default_factory=dict)  # trial -> its epochs done, which budget cut it
    started: list[str] = field(default_factory=list)
    running: dict[str, float] = field(default_factory=dict)   # trial -> when it was drawn (or resumed)
    epoch_s: dict[str, float] = field(default_factory=dict)   # trial -> its last epoch's seconds
    later_epoch_s: dict[str, float] = field(default_factory=dict)  # the same, from its second epoch on
    first_epoch_s: list[float] = field(default_factory=list)  # per trial: from its draw to its first report
    ended_by: str | None = None
    # not saved: when budget.jsonl was last written; the sums behind the two means, kept as they change (a sum over
    # every trial at every report or draw would grow with the sweep)
    saved_at: float = -math.inf
    first_sum: float = 0.0
    first_count: int = 0
    later_sum: float = 0.0

    @property
    def mean_first_epoch_s(self) -> float:
        """The mean of ``first_epoch_s`` (what a new trial takes from its draw to its first report)."""
        self.first_sum += sum(self.first_epoch_s[self.first_count:])
        self.first_count = len(self.first_epoch_s)
        return self.first_sum / self.first_count if self.first_count else 0.0

    @property
    def mean_later_epoch_s(self) -> float:
        """The mean of ``later_epoch_s`` (the trials' last epoch after their first)."""
        return self.later_sum / len(self.later_epoch_s) if self.later_epoch_s else 0.0

    def set_later_epoch_s(self, trial_id: str, seconds: float) -> None:
        self.later_sum += seconds - self.later_epoch_s.get(trial_id, 0.0)
        self.later_epoch_s[trial_id] = seconds

    @classmethod
    def load(cls, directory: Path, started_at: float, now: float) -> BudgetState:
        """The state so far: none for a new sweep; for a resumed one, ``budget.jsonl``'s."""
        saved = read_json_object(directory / BUDGET_FILE).get("state", {})
        return cls(began=started_at - saved.get("seconds", 0.0), epochs_done=saved.get("epochs", 0),
                   gpu_seconds_done=saved.get("gpu_seconds", 0.0),
                   epochs_of=saved.get("epochs_of", {}), cut=saved.get("cut", {}), started=saved.get("started", []),
                   running=dict.fromkeys(saved.get("running", []), now),
                   first_epoch_s=saved.get("first_epoch_s", []))


# budget.jsonl lists every trial drawn: rewritten at every change up to this many trials, at most every SAVE_S past it
SAVE_ALWAYS_TRIALS, SAVE_S = 500, 1.0
# experiment directory -> its budget's state in this process; open_budget starts it anew for each run of the sweep
LIVE: dict[str, BudgetState] = {}


def open_budget(budget: SweepBudget) -> None:
    """A run of the sweep begins (a new one, or a resume): its state is read again, its time counted from
    ``budget.started_at``."""
    LIVE[budget.experiment_dir] = BudgetState.load(Path(budget.experiment_dir), budget.started_at, budget.clock())


class SweepBudget(Stopper):
    """The budgets of one sweep and what it has spent of them (see the module's docstring)."""

    def __init__(self, seconds: float | None, epochs: int | None, gpu_hours: float | None, gpus_per_trial: float,
                 max_epochs: int, experiment_dir: str, started_at: float, clock: Callable[[], float] = time.time):
        self.seconds, self.epochs, self.gpu_hours = seconds, epochs, gpu_hours
        self.gpus_per_trial, self.max_epochs, self.experiment_dir = gpus_per_trial, max_epochs, experiment_dir
        self.started_at = started_at  # the command's start (``clock``): a time budget counts from it
        self.clock = clock

    @property
    def state(self) -> BudgetState:
        """What the sweep has spent, shared by every copy of this keeper in the process (Tune restores the stopper
        from its state snapshot and the searcher from tuner.pkl: two copies of it)."""
        state = LIVE.get(self.experiment_dir)
        if state is None:
            state = LIVE[self.experiment_dir] = BudgetState.load(Path(self.experiment_dir), self.started_at,
                                                                 self.clock())
        return state

    # --- what the hooks tell it ----------------------------------------------------------------------
    def trial_drawn(self, trial_id: str) -> None:
        self.state.running[trial_id] = self.clock()
        self.state.started.append(trial_id)
        self._save()

    def trial_ended(self, trial_id: str) -> None:
        if trial_id in self.state.running:
            self.state.gpu_seconds_done += self.gpus_per_trial * (self.clock() - self.state.running.pop(trial_id))
            self._save()

    def __call__(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Tune's stopper, at each report: count the epoch; True stops the trial (its next epoch does not fit)."""
        if result.get("done"):
            return False  # Tune's last result of a trial repeats its last report, already counted
        first_here = trial_id not in self.state.epoch_s  # its first report in this run
        self.state.epochs_done += 1
        if first_here and trial_id in self.state.running:
            self.state.first_epoch_s.append(self.clock() - self.state.running[trial_id])
        self.state.running.setdefault(trial_id, self.clock())
        seconds = float(result.get("time_this_iter_s") or 0.0)
        if not first_here:  # a trial's first report in a run: its time holds the trial's setup too
            self.state.set_later_epoch_s(trial_id, seconds)
        self.state.epoch_s[trial_id] = seconds
        epochs = self.state.epochs_of[trial_id] = int(result.get(EPOCHS, 0) or 0)
        why = self.may_continue(trial_id) if epochs < self.max_epochs else None
        if why:
            self.state.cut[trial_id] = {"epochs": epochs, "by": why}
        self._save(force=why is not None)
        return why is not None

    def stop_all(self) -> bool:
        """Tune asks at every step: True ends the sweep (pending trials never start, running ones stop)."""
        if self.state.ended_by is None:
            now = self.clock()
            if self.seconds is not None and now - self.state.began >= self.seconds:
                self.state.ended_by = "time budget"
            elif self.gpu_hours is not None and self._gpu_seconds(now) >= self.gpu_hours * 3600:
                self.state.ended_by = "GPU budget"
            elif not self.state.running and (why := self._start_refused()):
                self.state.ended_by = why
            if self.state.ended_by:
                for trial_id in self.state.running:  # stopped in the epoch that could not end in time
                    self.state.cut.setdefault(trial_id, {"epochs": self.state.epochs_of.get(trial_id, 0), "by": self.state.ended_by})
                self._save(force=True)
        return self.state.ended_by is not None

    # --- what fits ----------------------------------------------------------------------------------
    def may_start(self) -> bool:
        return self._start_refused() is None

    def may_continue(self, trial_id: str) -> str | None:
        """None if ``trial_id``'s next epoch fits; else the budget it does not fit."""
        now, epoch = self.clock(), self._next_epoch_s(trial_id)
        if self.epochs is not None and self.state.epochs_done + len(self.state.running) > self.epochs:
            return "epoch budget"
        if self.seconds is not None and now + epoch > self.state.began + self.seconds:
            return "time budget"
        if self.gpu_hours is not None and self._gpu_committed(now) > self.gpu_hours * 3600:
            return "GPU budget"
        return None

    def _next_epoch_s(self, trial_id: str) -> float:
        """A trial's next epoch: as its last one; after its first (which held its setup), as the others' last."""
        if trial_id in self.state.later_epoch_s or not self.state.later_epoch_s:
            return self.state.later_epoch_s.get(trial_id, self.state.epoch_s.get(trial_id, 0.0))
        return self.state.mean_later_epoch_s

    def _start_refused(self) -> str | None:
        now = self.clock()
        first = self.state.mean_first_epoch_s
        if self.epochs is not None and self.state.epochs_done + len(self.state.running) + 1 > self.epochs:
            return "epoch budget"
        if self.seconds is not None and now + first >= self.state.began + self.seconds:
            return "time budget"
        if self.gpu_hours is not None and (self._gpu_committed(now) + self.gpus_per_trial * first
                                           >= self.gpu_hours * 3600):
            return "GPU budget"
        return None

    def _gpu_seconds(self, now: float) -> float:
        return self.state.gpu_seconds_done + self.gpus_per_trial * sum(now - at for at in self.state.running.values())

    def _gpu_committed(self, now: float) -> float:
        """GPU-seconds spent, plus the epoch under way of every running trial."""
        return self._gpu_seconds(now) + self.gpus_per_trial * sum(self._next_epoch_s(t) for t in self.state.running)

    def flush(self) -> None:
        """``budget.jsonl`` as the state is now: at the end of a run of the sweep (its saves may have been held)."""
        self._save(force=True)

    # --- what it tells -------------------------------------------------------------------------------
    def limits(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "epochs": self.epochs, "gpu_hours": self.gpu_hours}

    def status(self) -> str:
        """``budget 0:42 of 1:00, epochs 37 of 40``: what the live progress shows."""
        from torchmate_ray.tune.sweep.progress_text import format_duration

        now, parts = self.clock(), []
        if self.seconds is not None:
            parts.append(f"{format_duration(now - self.state.began)} of {format_duration(self.seconds)}")
        if self.epochs is not None:
            parts.append(f"epochs {self.state.epochs_done} of {self.epochs}")
        if self.gpu_hours is not None:
            parts.append(f"GPU-h {self._gpu_seconds(now) / 3600:.2f} of {self.gpu_hours:g}")
        return "budget " + ", ".join(parts)

    def _save(self, force: bool = False) -> None:
        """``budget.jsonl`` written anew: at every change while the sweep has drawn up to ``SAVE_ALWAYS_TRIALS``
        trials; past that, at most every ``SAVE_S`` seconds (it lists every trial: rewritten at each of 10,000 trials'
        reports it took 14 ms a result, 6x the rest of the driver), and whenever a trial is cut or the sweep ended."""
        now = self.clock()
        if not force and len(self.state.started) > SAVE_ALWAYS_TRIALS and now - self.state.saved_at < SAVE_S:
            return
        self.state.saved_at = now
        state = {"seconds": round(now - self.state.began, 3), "epochs": self.state.epochs_done,
                 "gpu_seconds": round(self._gpu_seconds(now), 3), "epochs_of": self.state.epochs_of, "cut": self.state.cut,
                 "started": self.state.started, "running": list(self.state.running), "first_epoch_s": self.state.first_epoch_s}
        path = Path(self.experiment_dir, BUDGET_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, json.dumps({"limits": self.limits(), "ended_by": self.state.ended_by, "state": state}) + "\n")


def build_budget(settings: Any, gpus_per_trial: float, max_epochs: int, experiment_dir: Path,
                 started_at: float) -> SweepBudget | None:
    """The sweep's budget keeper, or None: no budget set. ``started_at``: the command's start (``time.time()``)."""
    from torchmate_ray.tune.search.budget_settings import has_budget, parse_duration

    if not has_budget(settings):
        return None
    seconds = None if settings.time_budget is None else parse_duration(settings.time_budget, "sweep.time_budget")
    return SweepBudget(seconds, settings.epoch_budget, settings.gpu_hours, gpus_per_trial, max_epochs,
                       str(experiment_dir), started_at)
