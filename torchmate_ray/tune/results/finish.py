"""The end of a sweep: its trials read once, then the results files and the report page written from them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.tune.records.files import BEST_DIR, CONFIG_FILE
from torchmate_ray.tune.results.confirmed_ranking import format_confirmed
from torchmate_ray.tune.results.data import build_report_data
from torchmate_ray.tune.results.page import write_report_page
from torchmate_ray.tune.results.summary import format_leaderboard, format_timings, write_results
from torchmate_ray.tune.search.budget_settings import format_budget

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace


def finish_sweep(directory: Path, space: SearchSpace, wall_seconds: float,
                 timings: Mapping[str, float | None] | None = None,
                 interrupted_by: str | None = None) -> tuple[dict[str, Any], str]:
    """After a sweep: write its results and report; return the summary and what to tell the user (the
    leaderboard, the counts, the best trial, the command's milestones and where everything is; for a sweep
    that ``interrupted_by`` a signal stopped, how to continue it)."""
    data = build_report_data(directory, space, interrupted_by)
    summary = write_results(data, wall_seconds, timings, interrupted_by)
    data.disk_bytes = summary["disk_bytes"]  # best/ included
    lines = [format_leaderboard(data.trials, space)]
    if summary.get("confirmed"):
        lines.append(format_confirmed(summary["confirmed"], data.score_label))
    lines.append(f"{summary['num_trials']} trials in {summary['wall_seconds']:.0f} s: {summary['trials']}; "
                 f"{summary['epochs_run']} of {summary['epoch_budget']} epochs run; disk used {summary['disk']}")
    if summary["budget"]:
        lines.append(format_budget(summary["budget"]))
    if timings:
        lines.append(format_timings(timings))
    lines += format_best(summary, directory)
    lines += [f"results: {directory}", f"report: {write_report_page(data)}"]
    if interrupted_by:
        lines.append(f"interrupted ({interrupted_by}): continue it with: torchmate-tune {directory} --resume")
    return summary, "\n".join(lines)


def format_best(summary: Mapping[str, Any], directory: Path) -> list[str]:
    """The best trial, how to train its config again, and where its exported model is and how to test it."""
    if not summary["best_trial"]:
        return []
    mean = (f" (its config, confirmed: {summary['best_mean']:.4f} ± {summary['best_std']:.4f} over "
            f"{summary['confirmed'][0]['runs']} runs)" if summary.get("confirmed") else "")
    lines = [f"best: {summary['best_trial']} {summary['metric']} = {summary['best_value']:.4f}{mean}"
             + (f"; torchmate-train {directory / CONFIG_FILE}" if not summary["best_config_error"] else "")]
    if summary["best_config_error"]:
        lines.append(f"{CONFIG_FILE} not written: {summary['best_config_error']}")
    model = summary["best_model"]
    if model:
        test = (f"; test it: torchmate-train {directory / BEST_DIR / CONFIG_FILE} --ckpt {model['path']} --test"
                if not summary["best_config_error"] else "")
        lines.append(f"best model: {model['path']} (epoch {model['epochs']}: {summary['metric']} = "
                     f"{model['value']:.4f}){test}")
    return lines
