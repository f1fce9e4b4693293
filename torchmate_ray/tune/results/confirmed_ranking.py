"""A confirmed sweep's ranking (``--confirm-top K --seeds S``; sweep/confirm.py runs it): each of the search's K best
configs, trained again with S other training seeds, ranked by the mean of its runs, with their standard deviation.

A config's runs are its confirmation trials and its search trial if that one trained every epoch (the
scheduler did not cut it short); errored runs do not count. ``confirm.jsonl`` (written by the confirmation's
searcher) says which trial confirms which config, with which seed. Plain files and values: no Ray.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchmate_ray.tune.records.files import CONFIRM_FILE, read_json_object
from torchmate_ray.tune.records.rows import TrialRow, best_trial, format_value, rank_key, rank_trials



@dataclass
class ConfirmedConfig:
    trial_id: str                   # the search's trial whose config this is
    params: dict[str, Any]
    values: list[float] = field(default_factory=list)  # its runs' values
    trials: list[str] = field(default_factory=list)    # its runs' trial ids, in the order of ``values``

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "mean": self.mean, "std": self.std, "runs": len(self.values),
                "values": self.values, "trials": self.trials, "params": self.params}


def read_confirm_record(directory: Path) -> dict[str, Any]:
    """``confirm.jsonl`` of the experiment in ``directory``; {} when it has none (a sweep not confirmed yet)."""
    return read_json_object(directory / CONFIRM_FILE)


def rank_confirmed(rows: list[TrialRow], record: Mapping[str, Any], max_epochs: int, mode: str) -> list[ConfirmedConfig]:
    """The confirmed configs, best mean first (``mode``), each with the values of its runs."""
    by_id = {row.trial_id: row for row in rows}
    configs: dict[str, ConfirmedConfig] = {}
    for trial_id, confirms in record.get("trials", {}).items():
        origin = by_id.get(confirms["of"])
        if origin is None:
            continue
        config = configs.get(origin.trial_id)
        if config is None:
            config = configs[origin.trial_id] = ConfirmedConfig(origin.trial_id, origin.params)
            if origin.epochs >= max_epochs and origin.value is not None and origin.status != "errored":
                config.values.append(origin.value)
                config.trials.append(origin.trial_id)
        run = by_id.get(trial_id)
        if run is not None and run.value is not None and run.status != "errored":
            config.values.append(run.value)
            config.trials.append(trial_id)
    ranked = [config for config in configs.values() if config.values]
    return sorted(ranked, key=lambda config: rank_key(config.mean, config.trial_id, mode))


def best_run(config: ConfirmedConfig, rows: list[TrialRow], mode: str) -> TrialRow:
    """The confirmed winner's best run: the trial whose model and config ``best/`` holds."""
    return rank_trials([row for row in rows if row.trial_id in config.trials], mode)[0]


def sweep_winner(rows: list[TrialRow], confirmed: list[ConfirmedConfig], mode: str) -> TrialRow | None:
    """The sweep's best trial, the one summary.json, the printed lines, best/, the page and its plots all name: a
    confirmed sweep's is the best run of the config with the best mean; any other's the best row
    (``records/rows.best_trial``). None: no trial has a value."""
    return best_run(confirmed[0], rows, mode) if confirmed else best_trial(rows, mode)


def format_confirmed(ranked: list[Mapping[str, Any]], label: str) -> str:
    """The confirmed configs (``ConfirmedConfig.as_dict``'s, best first): a line each, under a line that says what
    the values are."""
    lines = [f"confirmed: {label}, mean ± std of each config's runs (its search trial if it trained every epoch, "
             f"and its other seeds)"]
    for rank, config in enumerate(ranked, start=1):
        params = " ".join(f"{path}={format_value(value)}" for path, value in config["params"].items())
        lines.append(f"{rank}  {config['trial_id']}  {config['mean']:.4f} ± {config['std']:.4f}  ({config['runs']} runs)"
                     f"  {params}")
    return "\n".join(lines)
