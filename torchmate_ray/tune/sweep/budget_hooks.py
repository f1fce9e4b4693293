"""Tune's hooks around a sweep's budget keeper (budget.py): the search algorithm that draws a new trial only while
the budget holds one, and the callback that kills the trials' processes once a time or GPU budget ends the sweep."""

from __future__ import annotations

from typing import Any

import ray
from ray.tune import Callback
from ray.tune.search import SearchAlgorithm

from torchmate_ray.tune.private import trial_actor
from torchmate_ray.tune.sweep.budget import SweepBudget


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


class BudgetEnd(Callback):
    """Once the time or GPU budget ends the sweep, its trials' processes are killed, not waited for: Tune would
    wait up to 10 s for each to end the epoch the budget cuts. What they reported is kept (each report's files are
    written as it is made). A process still starting has no handle yet: Tune waits for its start (at most 10 s)."""

    def __init__(self, budget: SweepBudget):
        self.budget, self.actors, self.killed = budget, [], False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if not self.killed:  # Tune lets go of a trial's process as it stops it: held here from before
            self.actors = [actor for actor in map(trial_actor, trials) if actor]

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.killed or self.budget.state.ended_by not in ("time budget", "GPU budget"):
            return
        self.killed = True
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
