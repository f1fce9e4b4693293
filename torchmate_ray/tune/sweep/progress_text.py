"""What the progress display prints: where a sweep stands (:class:`Snapshot`) as one plain line for a log
or as a four-line table for a terminal, and how a trial ended.

    format_line("3f2a1_00007 stopped at epoch 1/3, val/accuracy 0.8275", snapshot, new_best=False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torchmate_ray.tune.records.rows import ENDED, TrialRow


@dataclass
class Best:
    trial_id: str
    value: float
    params: dict[str, str]  # short label -> short value, e.g. {"lr": "0.001123"}


@dataclass
class Snapshot:
    """Where a sweep stands: trials by state, epochs run of the budget, the best ended trial, time."""

    counts: dict[str, int]
    num_trials: int
    epochs_done: int
    epoch_budget: int
    best: Best | None
    elapsed: float
    eta: float | None
    budget: str | None = None  # budget.SweepBudget.status(): "budget 0:42 of 1:00"

    @property
    def ended(self) -> int:
        return sum(self.counts[state] for state in ENDED)


def format_line(event: str, s: Snapshot, new_best: bool) -> str:
    """One line for a log: the trial that ended, then where the sweep stands.

    ``[1:05] 3f2a1_00007 stopped at epoch 1/3, val/accuracy 0.8275 | 8/12 ended: 3 finished, 5 stopped,
    0 errored; 2 running | epochs 14/36 | eta 0:32 | best 0.9550 3f2a1_00005``
    """
    counts = s.counts
    best = "best -" if s.best is None else f"{'new best' if new_best else 'best'} {s.best.value:.4f} {s.best.trial_id}"
    if s.best is not None and new_best and s.best.params:
        best += ": " + " ".join(f"{k}={v}" for k, v in s.best.params.items())
    return (f"[{format_duration(s.elapsed)}] {event} | {s.ended}/{s.num_trials} ended: {counts['finished']} finished, "
            f"{counts['stopped']} stopped, {counts['errored']} errored; {counts['running']} running | "
            f"epochs {s.epochs_done}/{s.epoch_budget} | eta {format_duration(s.eta)} | "
            f"{s.budget + ' | ' if s.budget else ''}{best}")


def format_table(s: Snapshot, metric: str, last_event: str) -> list[str]:
    """The terminal table: four lines."""
    counts = s.counts
    best = "-" if s.best is None else f"{metric} {s.best.value:.4f}  {s.best.trial_id}  " + "  ".join(
        f"{k}={v}" for k, v in s.best.params.items())
    return [
        f"trials   {s.ended}/{s.num_trials} ended: {counts['finished']} finished, {counts['stopped']} stopped, "
        f"{counts['errored']} errored  |  {counts['running']} running, {counts['pending']} pending",
        f"epochs   {s.epochs_done}/{s.epoch_budget}  |  elapsed {format_duration(s.elapsed)}  |  "
        f"eta {format_duration(s.eta)}{'  |  ' + s.budget if s.budget else ''}",
        f"best     {best}",
        f"last     {last_event or '-'}",
    ]


def describe_end(row: TrialRow, epochs: str, metric: str, error_file: str | None = None) -> str:
    """``3f2a1_00007 stopped at epoch 1/3, val/accuracy 0.8275``; errored: the error's last line and its file."""
    text = f"{row.trial_id} {row.status} at epoch {epochs}"
    if row.status == "errored":
        error = _last_error_line(error_file)
        return text + (f": {error} (traceback: {error_file})" if error else "")
    return text + (f", {metric} {row.value:.4f}" if row.value is not None else f", no {metric}")


def describe_held(states: Sequence[str], last: str) -> str:
    """Trials that ended faster than a line each: ``14 trials ended (3 finished, 11 stopped), the last 3f2a1_00107
    stopped at epoch 1/3, val/accuracy 0.8275``."""
    counts = {state: states.count(state) for state in ENDED if state in states}
    return (f"{len(states)} trials ended ({', '.join(f'{n} {state}' for state, n in counts.items())}), the last "
            f"{last}")


def short_labels(paths: Sequence[str]) -> list[str]:
    """The shortest dotted suffix of each key path that no other path shares: ``optimizer.cfg.lr`` -> ``lr``;
    a spec's name stands for the spec: ``model.name`` -> ``model``."""
    paths = [path.removesuffix(".name") for path in paths]
    labels = []
    for path in paths:
        parts = path.split(".")
        for n in range(1, len(parts) + 1):
            label = ".".join(parts[-n:])
            if parts[-n].isdigit():  # a list index says nothing alone: ``layers.2`` not ``2``
                continue
            if not any(other != path and (other == label or other.endswith("." + label)) for other in paths):
                break
        labels.append(label)
    return labels


def format_duration(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``1:02:09``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _last_error_line(path: str | None) -> str:
    try:
        lines = [line for line in Path(path).read_text().splitlines() if line.strip()] if path else []
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
