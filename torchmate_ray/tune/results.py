"""Sweep results: summary.json, leaderboard.csv, best_config.py and the printed leaderboard, from the trials'
rows (best first, as ``trial_files`` reads them and ``rows.rank_trials`` ranks them)."""

from __future__ import annotations

import csv
import inspect
import json
import pprint
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.lightning.files import module_name
from torchmate_ray.tune.domains import varied_paths
from torchmate_ray.tune.rows import ENDED, TrialRow, best_trial, count_statuses, format_value, score_label

if TYPE_CHECKING:
    from torchmate_ray.tune.space import SearchSpace


def write_results(rows: list[TrialRow], space: SearchSpace, directory: Path, wall_seconds: float,
                  timings: Mapping[str, float | None] | None = None,
                  interrupted_by: str | None = None) -> dict[str, Any]:
    """Write summary.json, leaderboard.csv and best_config.py; return the summary. (The plots are the
    report's: report_page.write_report.) ``timings``: the command's milestones (``TIMINGS``), if known;
    ``interrupted_by``: the signal that stopped the sweep before its trials ended, if one did."""
    directory.mkdir(parents=True, exist_ok=True)
    best = best_trial(rows, space.settings.mode)
    counts = {**dict.fromkeys(ENDED, 0), **count_statuses(rows)}  # the ended ones always, others where there are
    summary = {
        "state": "interrupted" if interrupted_by else "ended", "interrupted_by": interrupted_by,
        "metric": space.settings.metric, "mode": space.settings.mode, "score": space.settings.score,
        "best_trial": best.trial_id if best else None, "best_value": best.value if best else None,
        "best_params": _plain(best.params) if best else None,
        "trials": counts, "num_trials": len(rows),
        "epochs_run": sum(r.epochs for r in rows), "epoch_budget": len(rows) * space.max_epochs,
        "wall_seconds": round(wall_seconds, 1),
        **({"timings": dict(timings)} if timings else {}),
        "errors": {r.trial_id: r.error for r in rows if r.error},
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_leaderboard_csv(rows, space, directory / "leaderboard.csv")
    if best:
        (directory / "best_config.py").write_text(render_best_config(best, space, directory / "best_config.py"))
    return summary


# The command's milestones in summary.json's "timings", as seconds since the command started (cli.py).
TIMINGS = {"experiment_line_s": "experiment line", "first_epoch_s": "first epoch reported", "end_s": "sweep ended"}


def format_timings(timings: Mapping[str, float | None]) -> str:
    """``since the command started: experiment line 6.1 s, first epoch reported 14.2 s, sweep ended 80.3 s``
    (a milestone not known, e.g. the first epoch under ``--verbose``, is left out)."""
    known = [f"{label} {timings[key]:.1f} s" for key, label in TIMINGS.items() if timings.get(key) is not None]
    return "since the command started: " + ", ".join(known)


def write_leaderboard_csv(rows: list[TrialRow], space: SearchSpace, path: Path) -> None:
    paths = varied_paths(space.config)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        value = score_label(space.settings.metric, space.settings.score)
        writer.writerow(["rank", "trial_id", "status", "epochs", value, *paths, "node"])
        for rank, row in enumerate(rows, start=1):
            writer.writerow([rank, row.trial_id, row.status, row.epochs, "" if row.value is None else row.value,
                             *(format_value(row.params[p]) for p in paths), row.node])


def format_leaderboard(rows: list[TrialRow], space: SearchSpace, top: int = 10) -> str:
    """The top trials as a fixed-width table: metric, epochs run, the hyperparameters that varied."""
    paths = varied_paths(space.config)
    header = ["#", "trial", "status", "epochs", score_label(space.settings.metric, space.settings.score), *paths]
    lines = [[str(rank), r.trial_id, r.status, str(r.epochs), "-" if r.value is None else f"{r.value:.4f}",
              *(format_value(r.params[p]) for p in paths)] for rank, r in enumerate(rows[:top], start=1)]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *lines])


# --- best_config.py ---------------------------------------------------------------------------
class _Source:
    """A value whose repr is Python source (for references to classes and functions)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def render_best_config(best: TrialRow, space: SearchSpace, path: Path) -> str:
    """A runnable ``torchmate-train`` file holding the best trial's full config."""
    imports: set[str] = set()
    body = pprint.pformat(_as_source(best.config, space, imports), indent=1, width=100, sort_dicts=False)
    header = [f'"""Best trial {best.trial_id} of {space.path.name}: {space.settings.metric} = {best.value:.4f} '
              f'after {best.epochs} epochs.', "", f"Run it with: torchmate-train {path}", '"""', ""]
    lines = sorted(imports)
    return "\n".join(header + lines + ([""] if lines else []) + [f"config = {body}", ""])


def _as_source(value: Any, space: SearchSpace, imports: set[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _as_source(v, space, imports) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_source(v, space, imports) for v in value]
    if isinstance(value, tuple):
        return tuple(_as_source(v, space, imports) for v in value)
    if inspect.isclass(value) or inspect.isroutine(value):
        module = value.__module__
        if module == module_name(space.path):
            imports.add("from torchmate_ray.lightning.files import load_python_file")
            imports.add(f"_space = load_python_file({str(space.path)!r})")
            return _Source(f"_space.{value.__qualname__}")
        imports.add(f"import {module}")
        return _Source(f"{module}.{value.__qualname__}")
    return value


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else format_value(v) for k, v in params.items()}
