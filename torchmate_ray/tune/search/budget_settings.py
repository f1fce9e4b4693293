"""A sweep's budget settings (``--time-budget``, ``--epoch-budget``, ``--gpu-hours``): read, checked, and what
``--dry-run`` estimates fits the plan. Ray-free (the settings are checked before Ray starts); sweep/budget.py keeps
the budgets while the sweep runs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from torchmate_ray.errors import ConfigError, describe
from torchmate_ray.tune.records.files import BUDGET_FILE, read_json_object

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(value: Any, key: str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"1.5h"``; a ConfigError at ``key`` for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match or float(match[1]) <= 0:
        raise ConfigError(key, f"expected a duration > 0 such as 90s, 30m or 1.5h, got {describe(value)}; fix it")
    return float(match[1]) * _UNIT_S[match[2]]


def check_budgets(time_budget: Any, epoch_budget: Any, gpu_hours: Any) -> None:
    """Refuse a budget setting that is not one (the sweep's settings check, before anything starts)."""
    if time_budget is not None:
        parse_duration(time_budget, "sweep.time_budget")
    if epoch_budget is not None and (isinstance(epoch_budget, bool) or not isinstance(epoch_budget, int)
                                     or epoch_budget < 1):
        raise ConfigError("sweep.epoch_budget", f"expected an int >= 1 (epochs of all trials together), got "
                          f"{describe(epoch_budget)}; fix it")
    if gpu_hours is not None and (isinstance(gpu_hours, bool) or not isinstance(gpu_hours, (int, float))
                                  or not 0 < gpu_hours < math.inf):
        raise ConfigError("sweep.gpu_hours", f"expected a number of GPU-hours > 0, got {describe(gpu_hours)}; fix it")


def has_budget(settings: Any) -> bool:
    return any(getattr(settings, key) is not None for key in ("time_budget", "epoch_budget", "gpu_hours"))


def check_budget_plan(settings: Any, gpus_per_trial: float) -> None:
    """Refuse a GPU budget for trials that the plan gives no GPU."""
    if settings.gpu_hours is not None and not gpus_per_trial:
        raise ConfigError("sweep.gpu_hours", "the plan gives the trials no GPU, so they spend no GPU-hours; use "
                          "--time-budget or --epoch-budget, or give them GPUs (--gpus-per-worker)")


def planned_epochs(num_trials: int, max_epochs: int, milestones: list[int], reduction_factor: float | None) -> float:
    """The epochs a sweep of ``num_trials`` runs: all of them to ``max_epochs``; with rungs (ASHA), the
    ``1/reduction_factor`` best of the trials at each milestone go on to the next."""
    if not reduction_factor:
        return float(num_trials * max_epochs)
    epochs, reached, done = 0.0, float(num_trials), 0
    for milestone in milestones:
        epochs += reached * (milestone - done)
        reached, done = reached / reduction_factor, milestone
    return epochs


def describe_budget(settings: Any, planned: float, full: int, at_once: int, gpus_per_trial: float) -> list[str]:
    """What ``--dry-run`` says of the budgets: what each holds of the plan's ``planned`` epochs (``full``
    without early stopping), with ``at_once`` trials at a time."""
    lines = []
    if settings.epoch_budget is not None:
        share = min(settings.epoch_budget / planned, 1.0)
        lines.append(f"epochs {settings.epoch_budget}: {share:.0%} of the plan's ~{planned:.0f} epochs "
                     f"({full} without early stopping)")
    if settings.time_budget is not None:
        seconds = parse_duration(settings.time_budget, "sweep.time_budget")
        lines.append(f"time {seconds:g} s with {at_once} trials at once: the plan's ~{planned:.0f} epochs fit if "
                     f"one takes at most {seconds * at_once / planned:.2f} s (the trials' start included)")
    if settings.gpu_hours is not None:
        lines.append(f"GPU-hours {settings.gpu_hours:g} at {gpus_per_trial:g} GPU per trial: the plan's "
                     f"~{planned:.0f} epochs fit if one takes at most "
                     f"{settings.gpu_hours * 3600 / gpus_per_trial / planned:.2f} s")
    return lines


def summarize_budget(directory: Path, num_trials: int) -> dict[str, Any] | None:
    """What summary.json says of the budget of the sweep in ``directory`` (None: it had none): the limits, what
    was spent, what ended the sweep, the trials cut at an epoch (their epochs and which budget) and how many of
    the ``num_trials`` planned never started."""
    saved = read_json_object(directory / BUDGET_FILE)
    if not saved:
        return None
    state = saved.get("state", {})
    return {"limits": saved.get("limits"), "ended_by": saved.get("ended_by"),
            "spent": {"seconds": state.get("seconds"), "epochs": state.get("epochs"),
                      "gpu_hours": round(state.get("gpu_seconds", 0.0) / 3600, 4)},
            "cut": state.get("cut", {}), "not_started": max(num_trials - len(state.get("started", [])), 0)}


def format_budget(budget: dict[str, Any]) -> str:
    """``budget: 58 s of 60 s, 37 epochs; ended by the time budget; trials cut at an epoch: 2, never started: 30``."""
    limits, spent = budget["limits"], budget["spent"]
    parts = [f"{spent['seconds']:.0f} s" + (f" of {limits['seconds']:g} s" if limits.get("seconds") else ""),
             f"{spent['epochs']} epochs" + (f" of {limits['epochs']}" if limits.get("epochs") else "")]
    if limits.get("gpu_hours"):
        parts.append(f"{spent['gpu_hours']:.2f} of {limits['gpu_hours']:g} GPU-hours")
    ended = f"; ended by the {budget['ended_by']}" if budget["ended_by"] else ""
    return (f"budget: {', '.join(parts)}{ended}; trials cut at an epoch: {len(budget['cut'])}, never started: "
            f"{budget['not_started']}")
