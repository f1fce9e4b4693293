"""A sweep's budgets: ``--time-budget 30m``, ``--epoch-budget N`` and ``--gpu-hours H``, enforced while it runs.

A budget is kept by one :class:`SweepBudget` in the driver, which Tune consults twice, through its own hooks:

- as the run's **stopper** (``RunConfig.stop``): at every epoch a trial reports, the trial goes on only if its next
  epoch fits what is left (``may_continue``); otherwise it stops there, with that epoch kept, and is listed as
  cut. Once nothing runs and nothing new fits, or the time or GPU budget is spent, it ends the sweep
  (``stop_all``);
- through the **searcher** (:class:`BudgetedSearch`, around Tune's): a new trial is drawn only if its first epoch
  fits (``may_start``). Trials are drawn when a place frees (the sweep's concurrency), so drawn is started.

What fits: an epoch budget counts the epochs done plus one for every trial under way (each is in an epoch, and
Tune lets it start the next only after its report), so it is never exceeded. A time budget (wall clock from the
command's start) takes each trial's last epoch, and for a new trial the mean time from its draw to its first
report. A GPU budget (GPU-seconds: each trial's GPUs times its time) does the same with the GPUs of the trials
under way. The state is kept in ``budget.json`` in the experiment, so that a resumed sweep spends what is left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.tune.search import SearchAlgorithm
from ray.tune.stopper import Stopper

from torchmate_ray.tune.budget_settings import BUDGET_FILE, read_json
from torchmate_ray.tune.record import EPOCHS

class SweepBudget(Stopper):
    """The budgets of one sweep and what it has spent of them (see the module's docstring)."""

    def __init__(self, seconds: float | None, epochs: int | None, gpu_hours: float | None, gpus_per_trial: float,
                 max_epochs: int, experiment_dir: str, started_at: float, clock: Callable[[], float] = time.time):
        self.seconds, self.epochs, self.gpu_hours = seconds, epochs, gpu_hours
        self.gpus_per_trial, self.max_epochs, self.experiment_dir = gpus_per_trial, max_epochs, experiment_dir
        self.started_at = started_at  # the command's start (``clock``): a time budget counts from it
        self.clock = clock
        self._began: float | None = None  # the sweep's start, the time spent before a resume taken off

    def _begin(self) -> None:
        """The first call of this run: the state so far (none for a new sweep, ``budget.json`` for a resumed one)."""
        if self._began is not None:
            return
        saved = read_json(Path(self.experiment_dir, BUDGET_FILE)).get("state", {})
        now = self.clock()
        self._began = self.started_at - saved.get("seconds", 0.0)
        self.epochs_done: int = saved.get("epochs", 0)
        self.gpu_seconds_done: float = saved.get("gpu_seconds", 0.0)
        self.iterations: dict[str, int] = saved.get("iterations", {})  # trial -> the last report counted
        self.epochs_of: dict[str, int] = saved.get("epochs_of", {})     # trial -> its epochs done
        self.cut: dict[str, dict[str, Any]] = saved.get("cut", {})     # trial -> epochs done, which budget
        self.started: list[str] = saved.get("started", [])
        self.running = {trial_id: now for trial_id in saved.get("running", [])}  # trial -> drawn (or resumed) at
        self.epoch_s: dict[str, float] = {}  # trial -> its last epoch's seconds
        self.later_epoch_s: dict[str, float] = {}  # the same, from its second epoch on
        self.first_epoch_s: list[float] = saved.get("first_epoch_s", [])  # draw to first report, per trial
        self.ended_by: str | None = None

    # --- what the hooks tell it ----------------------------------------------------------------------
    def trial_drawn(self, trial_id: str) -> None:
        self._begin()
        self.running[trial_id] = self.clock()
        self.started.append(trial_id)
        self._save()

    def trial_ended(self, trial_id: str) -> None:
        self._begin()
        if trial_id in self.running:
            self.gpu_seconds_done += self.gpus_per_trial * (self.clock() - self.running.pop(trial_id))
            self._save()

    def __call__(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Tune's stopper, at each report: count the epoch; True stops the trial (its next epoch does not fit)."""
        self._begin()
        iteration = int(result.get("training_iteration", 0) or 0)
        if iteration <= self.iterations.get(trial_id, 0) or result.get("done"):
            return False  # a report already counted (Tune's final one repeats the last)
        self.iterations[trial_id] = iteration
        self.epochs_done += 1
        if trial_id not in self.epoch_s and trial_id in self.running:
            self.first_epoch_s.append(self.clock() - self.running[trial_id])
        self.running.setdefault(trial_id, self.clock())
        seconds = float(result.get("time_this_iter_s") or 0.0)
        if trial_id in self.epoch_s or iteration > 1:  # a first report's time holds the trial's setup too
            self.later_epoch_s[trial_id] = seconds
        self.epoch_s[trial_id] = seconds
        epochs = self.epochs_of[trial_id] = int(result.get(EPOCHS, 0) or 0)
        why = self.may_continue(trial_id) if epochs < self.max_epochs else None
        if why:
            self.cut[trial_id] = {"epochs": epochs, "by": why}
        self._save()
        return why is not None

    def stop_all(self) -> bool:
        """Tune asks at every step: True ends the sweep (pending trials never start, running ones stop)."""
        self._begin()
        if self.ended_by is None:
            now = self.clock()
            if self.seconds is not None and now - self._began >= self.seconds:
                self.ended_by = "time budget"
            elif self.gpu_hours is not None and self._gpu_seconds(now) >= self.gpu_hours * 3600:
                self.ended_by = "GPU budget"
            elif not self.running and (why := self._start_refused()):
                self.ended_by = why
            if self.ended_by:
                for trial_id in self.running:  # stopped in the epoch that could not end in time
                    self.cut.setdefault(trial_id, {"epochs": self.epochs_of.get(trial_id, 0), "by": self.ended_by})
                self._save()
        return self.ended_by is not None

    # --- what fits ----------------------------------------------------------------------------------
    def may_start(self) -> bool:
        self._begin()
        return self._start_refused() is None

    def may_continue(self, trial_id: str) -> str | None:
        """None if ``trial_id``'s next epoch fits; else the budget it does not fit."""
        now, epoch = self.clock(), self._next_epoch_s(trial_id)
        if self.epochs is not None and self.epochs_done + len(self.running) > self.epochs:
            return "epoch budget"
        if self.seconds is not None and now + epoch > self._began + self.seconds:
            return "time budget"
        if self.gpu_hours is not None and self._gpu_committed(now) > self.gpu_hours * 3600:
            return "GPU budget"
        return None

    def _next_epoch_s(self, trial_id: str) -> float:
        """A trial's next epoch: as its last one; after its first (which held its setup), as the others' last."""
        if trial_id in self.later_epoch_s or not self.later_epoch_s:
            return self.later_epoch_s.get(trial_id, self.epoch_s.get(trial_id, 0.0))
        return sum(self.later_epoch_s.values()) / len(self.later_epoch_s)

    def _start_refused(self) -> str | None:
        now = self.clock()
        first = sum(self.first_epoch_s) / len(self.first_epoch_s) if self.first_epoch_s else 0.0
        if self.epochs is not None and self.epochs_done + len(self.running) + 1 > self.epochs:
            return "epoch budget"
        if self.seconds is not None and now + first >= self._began + self.seconds:
            return "time budget"
        if self.gpu_hours is not None and (self._gpu_committed(now) + self.gpus_per_trial * first
                                           >= self.gpu_hours * 3600):
            return "GPU budget"
        return None

    def _gpu_seconds(self, now: float) -> float:
        return self.gpu_seconds_done + self.gpus_per_trial * sum(now - at for at in self.running.values())

    def _gpu_committed(self, now: float) -> float:
        """GPU-seconds spent, plus the epoch under way of every running trial."""
        return self._gpu_seconds(now) + self.gpus_per_trial * sum(self._next_epoch_s(t) for t in self.running)

    # --- what it tells -------------------------------------------------------------------------------
    def limits(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "epochs": self.epochs, "gpu_hours": self.gpu_hours}

    def status(self) -> str:
        """``budget 0:42 of 1:00, epochs 37 of 40``: what the live progress shows."""
        from torchmate_ray.tune.progress_text import format_duration

        self._begin()
        now, parts = self.clock(), []
        if self.seconds is not None:
            parts.append(f"{format_duration(now - self._began)} of {format_duration(self.seconds)}")
        if self.epochs is not None:
            parts.append(f"epochs {self.epochs_done} of {self.epochs}")
        if self.gpu_hours is not None:
            parts.append(f"GPU-h {self._gpu_seconds(now) / 3600:.2f} of {self.gpu_hours:g}")
        return "budget " + ", ".join(parts)

    def _save(self) -> None:
        now = self.clock()
        state = {"seconds": round(now - self._began, 3), "epochs": self.epochs_done,
                 "gpu_seconds": round(self._gpu_seconds(now), 3), "iterations": self.iterations,
                 "epochs_of": self.epochs_of, "cut": self.cut,
                 "started": self.started, "running": list(self.running), "first_epoch_s": self.first_epoch_s}
        path = Path(self.experiment_dir, BUDGET_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"limits": self.limits(), "ended_by": self.ended_by, "state": state}) + "\n")
        temporary.replace(path)


class BudgetedSearch(SearchAlgorithm):
    """Tune's search algorithm, drawing a new trial only while the budget holds one (``SweepBudget.may_start``)."""

    def __init__(self, inner: SearchAlgorithm, budget: SweepBudget):
        self.inner, self.budget = inner, budget

    @property
    def metric(self) -> Any:
        return self.inner.metric

    @property
    def draws_whole_configs(self) -> bool:
        searcher = getattr(self.inner, "searcher", None)  # a SearchGenerator's, through its ConcurrencyLimiter
        return getattr(getattr(searcher, "searcher", searcher), "draws_whole_configs", False)

    @property
    def total_samples(self) -> int:
        return self.inner.total_samples

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments: Any) -> None:
        self.inner.add_configurations(experiments)

    def next_trial(self) -> Any:
        if self.inner.is_finished() or not self.budget.may_start():
            return None
        trial = self.inner.next_trial()
        if trial is not None:
            self.budget.trial_drawn(trial.trial_id)
        return trial

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.budget.trial_ended(trial_id)
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self.inner.is_finished() or self.budget.stop_all()

    def set_finished(self) -> None:
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath)

    def save_to_dir(self, dirpath: str, **kwargs: Any) -> None:
        self.inner.save_to_dir(dirpath, **kwargs)

    def restore_from_dir(self, dirpath: str) -> None:
        self.inner.restore_from_dir(dirpath)


def build_budget(settings: Any, gpus_per_trial: float, max_epochs: int, experiment_dir: Path,
                 started_at: float) -> SweepBudget | None:
    """The sweep's budget keeper, or None: no budget set. ``started_at``: the command's start (``time.time()``)."""
    from torchmate_ray.tune.budget_settings import has_budget, parse_duration

    if not has_budget(settings):
        return None
    seconds = None if settings.time_budget is None else parse_duration(settings.time_budget, "sweep.time_budget")
    return SweepBudget(seconds, settings.epoch_budget, settings.gpu_hours, gpus_per_trial, max_epochs,
                       str(experiment_dir), started_at)
