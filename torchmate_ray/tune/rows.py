"""A trial as one row, and the rules every view of a sweep shares: what a trial's status is, where it ranks,
which one is the best. The live progress display (from Tune's trials), the results files and the report
(from the experiment's files) all read trials into :class:`TrialRow` and ask these functions.

    ended_status(epochs=3, max_epochs=9)                # "stopped": it ended before max_epochs (ASHA cut it)
    live_status("RUNNING", epochs=2, max_epochs=9)      # "running"
    best_trial(rows, "max")                             # the best row, or None

Plain values in, plain values out: no Ray, no file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENDED = ("finished", "stopped", "errored")
NOT_ENDED = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "pending"}  # Tune's status -> ours
ENDED_STATES = ("TERMINATED", "ERROR")  # Tune's statuses of a trial that ended


@dataclass
class TrialRow:
    trial_id: str
    status: str            # finished | stopped | errored (interrupted | running | pending | incomplete: not ended)
    epochs: int
    value: float | None    # the sweep metric at the trial's last epoch
    params: dict[str, Any]  # varied key path -> the trial's value
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    curve: list[tuple[int, float]] = field(default_factory=list, repr=False)
    node: str = ""
    error: str | None = None


# --- status -------------------------------------------------------------------------------------
def ended_status(epochs: int, max_epochs: int, errored: bool = False) -> str:
    """How a trial that ended ended: errored, finished (it ran ``max_epochs``) or stopped (it ended
    earlier: the scheduler cut it)."""
    if errored:
        return "errored"
    return "finished" if epochs >= max_epochs else "stopped"


def live_status(state: str, epochs: int, max_epochs: int) -> str:
    """A trial as Tune's status says now (RUNNING, PENDING, PAUSED, TERMINATED or ERROR)."""
    if state in ENDED_STATES:
        return ended_status(epochs, max_epochs, errored=state == "ERROR")
    return NOT_ENDED.get(state, "pending")


def trial_status(epochs: int, max_epochs: int, errored: bool, state: str | None, complete: bool,
                 interrupted: bool = False) -> str:
    """A trial as its files say (``state``: Tune's status from the experiment state file, None if unknown;
    ``complete``: the sweep ended): errored | finished | running | pending | stopped | interrupted (running
    when a signal stopped the sweep) | incomplete (no record of why it has fewer epochs: the sweep was killed
    before Tune's state said)."""
    if errored or epochs >= max_epochs:  # the trial's files say so, whatever a state file saved earlier says
        return ended_status(epochs, max_epochs, errored)
    if interrupted and state == "RUNNING":
        return "interrupted"
    if state in NOT_ENDED:
        return NOT_ENDED[state]
    if complete or state in ENDED_STATES:
        return ended_status(epochs, max_epochs, errored=state == "ERROR")
    return "incomplete"


def count_statuses(rows: Iterable[TrialRow]) -> dict[str, int]:
    """Status -> how many rows have it, in the order the statuses first appear."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


# --- rank and best ------------------------------------------------------------------------------
def rank_key(value: float | None, trial_id: str, mode: str) -> tuple[bool, float, str]:
    """Where a trial ranks, best first: by its final metric (``mode`` "max": the highest first), a tie to
    the smaller trial id, a trial without a value last."""
    sign = -1 if mode == "max" else 1
    return (value is None, sign * value if value is not None else 0.0, trial_id)


def rank_trials(rows: Iterable[TrialRow], mode: str) -> list[TrialRow]:
    """The rows best first (:func:`rank_key`)."""
    return sorted(rows, key=lambda row: rank_key(row.value, row.trial_id, mode))


def best_trial(rows: Iterable[TrialRow], mode: str) -> TrialRow | None:
    """The best row: the first by :func:`rank_key` of those with a value that did not error; None if none."""
    candidates = (row for row in rows if row.value is not None and row.status != "errored")
    return min(candidates, key=lambda row: rank_key(row.value, row.trial_id, mode), default=None)


# --- values -------------------------------------------------------------------------------------
def get_path(config: Any, path: str) -> Any:
    """The value at a dotted key path (list positions as numbers), None where the config has no such key."""
    node = config
    for part in path.split("."):
        if isinstance(node, (list, tuple)):
            node = node[int(part)]
        else:
            node = node.get(part) if isinstance(node, Mapping) else None
    return node


def format_value(value: Any) -> str:
    """A hyperparameter value, short: a spec or a class by its name, a float in 4 digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping) and "name" in value:
        return format_value(value["name"])
    if isinstance(value, str) and (match := re.fullmatch(r"<(?:class|function) '[\w.]*?(\w+)'>", value)):
        return match.group(1)  # a class or function as params.json writes it
    return str(getattr(value, "__name__", value))

