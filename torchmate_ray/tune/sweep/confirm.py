"""Confirming a sweep's winners: ``--confirm-top K --seeds S``.

After the search, its K best configs are trained again, each with S other training seeds (the config's
``seed`` plus 1 to S), for every epoch: a Tune run of its own in the experiment (as extend.py's), with a FIFO
scheduler (no early stopping) and a searcher that hands out exactly those K x S configs (:class:`ConfirmSearch`).
It records which trial confirms which config in ``confirm.jsonl``; the results (results/confirmed_ranking.py) then rank the
configs by the mean of their runs, and ``best/`` holds the winner's best run.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.search import Searcher

from torchmate_ray.tune.records.files import CONFIRM_FILE, write_whole
from torchmate_ray.tune.results.data import build_report_data
from torchmate_ray.tune.search.choices import DEFAULT_SEARCHER, NO_EARLY_STOPPING

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace


class ConfirmSearch(Searcher):
    """Hands out the confirmation's configs, one per trial, then says it is finished; keeps what it handed out
    (Tune saves it with the run's state, so a resumed confirmation hands out only the rest)."""

    draws_whole_configs = True  # whole trial configs: Tune's param_space holds no domain (sweep/run.run_sweep)

    def __init__(self, runs: list[dict[str, Any]], experiment_dir: str, top: int, seeds: int, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.runs = runs  # [{"of": the search trial, "seed": s, "config": its config with that seed}]
        self.given: dict[str, dict[str, Any]] = {}
        self.experiment_dir, self.top, self.seeds = experiment_dir, top, seeds

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.runs:
            return Searcher.FINISHED
        run = self.runs.pop(0)
        self.given[trial_id] = {"of": run["of"], "seed": run["seed"]}
        record = {"top": self.top, "seeds": self.seeds, "trials": self.given}
        write_whole(Path(self.experiment_dir, CONFIRM_FILE), json.dumps(record) + "\n")
        return run["config"]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump({"runs": self.runs, "given": self.given}, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))


def confirmation_due(space: SearchSpace, directory: Path) -> bool:
    """The sweep confirms its winners (``sweep.confirm_top``) and has not begun to (no ``confirm.jsonl``)."""
    return bool(space.settings.confirm_top) and not (directory / CONFIRM_FILE).is_file()


def confirmation_space(space: SearchSpace, trials: int) -> SearchSpace:
    """``space`` as its confirmation of ``trials`` trials runs: a FIFO scheduler, no budget, no start points."""
    settings = dataclasses.replace(space.settings, num_samples=max(trials, 1), scheduler=NO_EARLY_STOPPING,
                                   search_alg=DEFAULT_SEARCHER, time_budget=None, epoch_budget=None, gpu_hours=None,
                                   start_from=None)
    return dataclasses.replace(space, settings=settings)


def resumed_confirmation(space: SearchSpace, directory: Path) -> tuple[SearchSpace, ConfirmSearch]:
    """A confirmation that ``--resume`` continues: its space, and a searcher that says how Tune ran it (Tune
    restores the searcher itself, with what it had handed out)."""
    s = space.settings
    search = ConfirmSearch([], str(directory), s.confirm_top or 0, s.confirm_seeds, s.metric, s.mode)
    return confirmation_space(space, (s.confirm_top or 0) * s.confirm_seeds), search


def prepare_confirmation(space: SearchSpace, directory: Path, results: Any) -> tuple[SearchSpace, ConfirmSearch]:
    """The confirmation of ``space``'s sweep in ``directory``, whose search's Tune ``results`` (a ResultGrid) hold
    each trial's config as the trial got it: the space to run it with (a FIFO scheduler, K x S trials, no budget,
    no start points) and its searcher."""
    s = space.settings
    configs = {Path(result.path).name: result.config for result in results if result.path}
    ranked = [row for row in build_report_data(directory, space, None).trials
              if row.value is not None and row.status != "errored" and row.trial_id in configs][:s.confirm_top]
    runs = []
    for row in ranked:
        config = configs[row.trial_id]
        base = config.get("seed") if isinstance(config.get("seed"), int) else 0
        runs += [{"of": row.trial_id, "seed": base + k, "config": {**config, "seed": base + k}}
                 for k in range(1, s.confirm_seeds + 1)]
    search = ConfirmSearch(runs, str(directory), s.confirm_top, s.confirm_seeds, s.metric, s.mode)
    return confirmation_space(space, len(runs)), search
