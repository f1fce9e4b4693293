"""Sweep results: summary.json, leaderboard.csv, best_config.py and the printed leaderboard, from the trials'
rows (best first, as ``experiment/trials.py`` reads them and ``records/rows.rank_trials`` ranks them)."""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import pprint
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.errors import ConfigError
from torchmate_ray.lightning.files import module_name
from torchmate_ray.tune.records.checkpoints import KeepRule
from torchmate_ray.tune.records.files import (BEST_DIR, CONFIG_FILE, LEADERBOARD_FILE, MODEL_FILE, SUMMARY_FILE,
                                              write_whole, written_whole)
from torchmate_ray.tune.records.rows import ENDED, TrialRow, count_statuses, format_value, score_label
from torchmate_ray.tune.results.data import ReportData
from torchmate_ray.tune.results.export import export_best, format_bytes, measure_disk
from torchmate_ray.tune.search.domains import varied_paths

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace


def write_results(data: ReportData, wall_seconds: float, timings: Mapping[str, float | None] | None = None,
                  interrupted_by: str | None = None) -> dict[str, Any]:
    """Write leaderboard.csv, best_config.py, the winner exported to best/ and summary.json (with the disk the
    experiment takes, all of that included); return the summary. (The plots are the report's:
    page.write_report.) ``timings``: the command's milestones (``TIMINGS``), if known;
    ``interrupted_by``: the signal that stopped the sweep before its trials ended, if one did."""
    rows, space, directory, confirmed, best = data.trials, data.space, data.directory, data.confirmed, data.best
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
        "budget": data.budget,
        **({"confirmed": [config.as_dict() for config in confirmed], "best_mean": confirmed[0].mean,
            "best_std": confirmed[0].std} if confirmed else {}),
        **write_best(best, space, directory),
    }
    write_leaderboard_csv(rows, space, directory / LEADERBOARD_FILE)
    summary["disk_bytes"] = measure_disk(directory)
    summary["disk"] = format_bytes(summary["disk_bytes"])
    write_whole(directory / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def write_best(best: TrialRow | None, space: SearchSpace, directory: Path) -> dict[str, Any]:
    """best_config.py (in the experiment and in best/) and best/ (best.export_best) for the best trial; what
    summary.json says of them: ``best_model`` (its path, epochs and value; None: no checkpoint) and
    ``best_config_error`` (why best_config.py could not be written; None: it was)."""
    text = error = found = None
    if best is not None:
        try:
            text = render_best_config(best, space, directory)
        except ConfigError as err:  # the results are still written: the reason goes to summary.json
            error = str(err)
        found = export_best(directory, best.trial_id, KeepRule(space.settings.metric, space.settings.mode), text)
    config = directory / CONFIG_FILE
    if text is not None:
        write_whole(config, text)
    else:
        config.unlink(missing_ok=True)
    model = {"path": str(directory / BEST_DIR / MODEL_FILE), "epochs": found.epochs,
             "value": found.metrics.get(space.settings.metric)} if found else None
    return {"best_model": model, "best_config_error": error}


# The command's milestones in summary.json's "timings", as seconds since the command started (cli.py).
TIMINGS = {"experiment_line_s": "experiment line", "first_epoch_s": "first epoch reported", "end_s": "sweep ended"}


def format_timings(timings: Mapping[str, float | None]) -> str:
    """``since the command started: experiment line 6.1 s, first epoch reported 14.2 s, sweep ended 80.3 s``
    (a milestone not known, e.g. the first epoch under ``--verbose``, is left out)."""
    known = [f"{label} {timings[key]:.1f} s" for key, label in TIMINGS.items() if timings.get(key) is not None]
    return "since the command started: " + ", ".join(known)


def write_leaderboard_csv(rows: list[TrialRow], space: SearchSpace, path: Path) -> None:
    paths = varied_paths(space.config)
    with written_whole(path) as partial, partial.open("w", newline="") as handle:
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
# A class or function as params.json saves it (Tune's JSON fallback is str()): a function's module is lost.
SAVED_CLASS = re.compile(r"<class '([^']+)'>")
SAVED_FUNCTION = re.compile(r"<function (\S+) at 0x[0-9a-f]+>")


class _Source:
    """A value whose repr is Python source (for references to classes and functions)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def render_best_config(best: TrialRow, space: SearchSpace, directory: Path) -> str:
    """A runnable ``torchmate-train`` file holding the best trial's full config (the experiment's
    ``best_config.py`` and ``best/best_config.py`` alike). A class or function that the search-space file
    defines is imported from that file by its path.

    Raises:
        ConfigError: naming the key of a class or function that no file could import (defined inside a
            function, a lambda), with the reason.
    """
    imports: set[str] = set()
    body = pprint.pformat(_as_source(best.config, space, imports, ""), indent=1, width=100, sort_dicts=False)
    best_dir = directory / BEST_DIR
    header = [f'"""Best trial {best.trial_id} of {space.path.name}: {space.settings.metric} = {best.value:.4f} '
              f'after {best.epochs} epochs.', "", f"Train it again: torchmate-train {directory / CONFIG_FILE}",
              f"Test the exported model: torchmate-train {best_dir / CONFIG_FILE} --ckpt {best_dir / MODEL_FILE} --test",
              '"""', ""]
    lines = sorted(line for line in imports if line.startswith(("import ", "from ")))
    lines += [line for line in imports if not line.startswith(("import ", "from "))]  # after the imports they use
    return "\n".join(header + lines + ([""] if lines else []) + [f"config = {body}", ""])


def _as_source(value: Any, space: SearchSpace, imports: set[str], key: str) -> Any:
    def at(part: Any) -> str:
        return f"{key}.{part}" if key else str(part)

    if isinstance(value, Mapping):
        return {k: _as_source(v, space, imports, at(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_as_source(v, space, imports, at(i)) for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if inspect.isclass(value) or inspect.isroutine(value):
        return _reference(f"{value.__module__}.{value.__qualname__}", str(value), space, imports, key)
    if isinstance(value, str) and (match := SAVED_CLASS.fullmatch(value)):
        return _reference(match.group(1), value, space, imports, key)
    if isinstance(value, str) and (match := SAVED_FUNCTION.fullmatch(value)):
        return _reference(f"{module_name(space.path)}.{match.group(1)}", value, space, imports, key,
                          "its module is not recorded (a function is saved by its name): ")
    return value


def _reference(dotted: str, shown: str, space: SearchSpace, imports: set[str], key: str, why: str = "") -> _Source:
    """Source that names the class or function at ``dotted``, with the imports it needs."""
    space_module = module_name(space.path)
    if dotted.startswith(space_module + ".") and _resolve(space_module, dotted[len(space_module) + 1:]):
        imports.add("from torchmate_ray.lightning.files import load_python_file")
        imports.add(f"_space = load_python_file({str(space.path)!r})")
        return _Source(f"_space.{dotted[len(space_module) + 1:]}")
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if not dotted.startswith(space_module + ".") and _resolve(module, ".".join(parts[cut:])):
            imports.add(f"import {module}")
            return _Source(dotted)
    raise ConfigError(key or "config", f"cannot write {shown} into {CONFIG_FILE}: {why}no top-level name of "
                      f"{space.path.name} or of an importable module; define it at the top level of {space.path.name}")


def _resolve(module: str, qualname: str) -> bool:
    """Whether ``module`` (importable, or the loaded search-space file) has a class or function at ``qualname``."""
    try:
        node: Any = sys.modules.get(module) or importlib.import_module(module)
        for name in qualname.split("."):
            node = getattr(node, name)
    except (ImportError, AttributeError, ValueError):
        return False
    return inspect.isclass(node) or inspect.isroutine(node)


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else format_value(v) for k, v in params.items()}
