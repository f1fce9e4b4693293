"""A trial as one row, and the rules every view of a sweep shares: what a trial's status is, where it ranks,
which one is the best. The live progress display (from Tune's trials), the results files and the report
(from the experiment's files) all read trials into :class:`TrialRow` and ask these functions.

    ended_status(epochs=3, max_epochs=9)                # "stopped": it ended before max_epochs (ASHA cut it)
    live_status("RUNNING", epochs=2, max_epochs=9)      # "running"
    best_trial(rows, "max")                             # the best row, or None
    score_curve([(1, 0.5), (2, 0.9), (3, 0.7)], "best", "max")   # 0.9: a trial's one value (sweep.score)

Plain values in, plain values out: no Ray, no file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENDED = ("finished", "stopped", "errored")
NOT_ENDED = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "pending"}  # Tune's status -> ours
ENDED_STATES = ("TERMINATED", "ERROR")  # Tune's statuses of a trial that ended
MISSING: Any = object()  # a key path a config does not have (where None is a value it may have)


@dataclass
class TrialRow:
    trial_id: str
    status: str            # finished | stopped | errored (interrupted | running | pending | incomplete: not ended)
    epochs: int
    value: float | None    # the trial's score: its curve of the sweep metric by sweep.score (score_curve)
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


# --- score: a trial's one value ------------------------------------------------------------------
# sweep.score, and Ray Tune's scope (Result/ExperimentAnalysis.get_best_trial) for the same rule: "last" is
# Ray's "last"; "best" is Ray's "all" (each trial's min or max by the mode); "last-k" is Ray's "last-5-avg" and
# "last-10-avg" for any k. Ray's "avg" (the mean of every epoch) has no counterpart. Ray counts reports; we
# count epochs: an epoch a resumed trial reported again counts once (its newest value).
SCORE_RULES = ("last", "best", "last-<k>")
RAY_SCOPES = {"all": "best", "last": "last", "last-5-avg": "last-5", "last-10-avg": "last-10"}


@dataclass(frozen=True)
class Score:
    """``sweep.score`` read: ``last`` (the last epoch's value), ``best`` (the best epoch's by the sweep's
    mode) or ``last-k`` (the mean of the last ``k`` epochs', or of all when the trial ran fewer)."""

    kind: str  # "last" | "best" | "last-k"
    k: int = 1


def parse_score(text: Any) -> Score | None:
    """``"best"`` -> Score("best"), ``"last-3"`` -> Score("last-k", 3); None where ``text`` is no score."""
    if text in ("last", "best"):
        return Score(text)
    match = re.fullmatch(r"last-([1-9][0-9]*)", text) if isinstance(text, str) else None
    return Score("last-k", int(match.group(1))) if match else None


def score_curve(curve: Sequence[tuple[int, float]], score: str, mode: str) -> float | None:
    """A trial's value from its curve (``(epoch, metric)`` in epoch order) by ``score`` (:class:`Score`);
    None for an empty curve."""
    rule = parse_score(score)
    if rule is None:
        raise ValueError(f"unknown score {score!r}; use one of {', '.join(SCORE_RULES)}")
    values = [value for _, value in curve]
    if not values:
        return None
    if rule.kind == "best":
        return max(values) if mode == "max" else min(values)
    tail = values[-rule.k:]
    return sum(tail) / len(tail)


def score_label(metric: str, score: str) -> str:
    """What a trial's value is called where it is shown: ``val/accuracy`` (``last``), ``val/accuracy (best
    epoch)``, ``val/accuracy (mean of last 3)``."""
    rule = parse_score(score)
    if rule is None or rule.kind == "last":
        return metric
    return f"{metric} (best epoch)" if rule.kind == "best" else f"{metric} (mean of last {rule.k})"


# --- rank and best ------------------------------------------------------------------------------
def rank_key(value: float | None, trial_id: str, mode: str) -> tuple[bool, float, str]:
    """Where a trial ranks, best first: by its score (``mode`` "max": the highest first), a tie to
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

