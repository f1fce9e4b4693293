"""A confirmed sweep's ranking (``--confirm-top K --seeds S``; confirm.py runs it): each of the search's K best
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

from torchmate_ray.tune.json_files import read_json_object
from torchmate_ray.tune.rows import TrialRow, format_value

# Not ".json": Tune copies an experiment's top-level .json files back over it at every state snapshot of a run
CONFIRM_FILE = "confirm.jsonl"  # one line: {"top": K, "seeds": S, "trials": {trial id: {"of": its config's trial, "seed": s}}}


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
    return sorted(ranked, key=lambda config: (config.mean if mode == "min" else -config.mean, config.trial_id))


def best_run(config: ConfirmedConfig, rows: list[TrialRow], mode: str) -> TrialRow:
    """The confirmed winner's best run: the trial whose model and config ``best/`` holds."""
    runs = [row for row in rows if row.trial_id in config.trials]
    return sorted(runs, key=lambda row: (row.value if mode == "min" else -row.value, row.trial_id))[0]


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
