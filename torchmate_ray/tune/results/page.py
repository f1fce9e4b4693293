"""The offline report: ``report.html`` (one self-contained file, images as data URIs) and its PNGs, and the
page that puts two experiments side by side; from the jinja2 templates in ``templates/``, which escape
every value.

    write_report("ray_results/lenet-...")                    # -> .../report.html and .../report/*.png
    write_comparison("ray_results/a", "ray_results/b")       # -> ray_results/a/compare-b.html

This module says what the pages show (the texts of every table); the templates lay them out.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.records.files import PLOTS_DIR, REPORT_FILE, write_whole
from torchmate_ray.tune.records.rows import TrialRow, format_value
from torchmate_ray.tune.results.data import ReportData, build_report_data
from torchmate_ray.tune.results.export import format_bytes, measure_disk
from torchmate_ray.tune.results.plots import plot_comparison_curves, render_plots, render_png
from torchmate_ray.tune.search.budget_settings import format_budget

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace

# A page of 10,000 trials stays one to read: its table shows the leaders (leaderboard.csv and summary.json hold all)
LEADERBOARD_ROWS, ERRORS_SHOWN = 200, 100
TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("torchmate_ray.tune", "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True, keep_trailing_newline=True)


def write_report(directory: str | Path, space: SearchSpace | None = None, output: str | Path | None = None) -> Path:
    """Write ``report.html`` (default: in the experiment directory) and the plots as PNGs under ``report/``.

    Works on a finished, running or interrupted experiment. Raises ConfigError for a directory that is
    not a torchmate-tune experiment.
    """
    data = build_report_data(directory, space)
    data.disk_bytes = measure_disk(data.directory)
    return write_report_page(data, output)


def write_report_page(data: ReportData, output: str | Path | None = None) -> Path:
    """``write_report`` for an experiment already read."""
    path = check_output(Path(output) if output else data.directory / REPORT_FILE)
    plots = render_plots(data)
    (data.directory / PLOTS_DIR).mkdir(exist_ok=True)
    for name, png in plots.items():
        write_whole(data.directory / PLOTS_DIR / f"{name}.png", png)
    write_whole(path, render_report_html(data, plots))
    return path


def write_comparison(directory_a: str | Path, directory_b: str | Path, output: str | Path | None = None) -> Path:
    """Write one page with two experiments side by side; default ``<A>/compare-<B's name>.html``."""
    a, b = build_report_data(directory_a), build_report_data(directory_b)
    path = check_output(Path(output) if output else a.directory / f"compare-{b.directory.name}.html")
    write_whole(path, render_comparison_html(a, b, diff_configs(a, b)))
    return path


def check_output(path: Path) -> Path:
    """``path``, if a page can be written there (ConfigError naming --output otherwise)."""
    if path.is_dir() or not path.parent.is_dir():
        why = "is a directory" if path.is_dir() else f"its directory {path.parent} does not exist"
        raise ConfigError("--output", f"{path}: {why}; give a file path in an existing directory")
    return path


# --- the report ---------------------------------------------------------------------------------
def render_report_html(data: ReportData, plots: Mapping[str, bytes]) -> str:
    """The report page: state, compute account, plots (embedded), leaderboard, errors (the first ERRORS_SHOWN)."""
    errors = [(trial.trial_id, trial.error) for trial in data.trials if trial.error]
    return TEMPLATES.get_template("report.html.j2").render(
        title=f"Sweep report: {data.directory.name}", directory=data.directory, space_path=data.space.path,
        mode=data.space.settings.mode, metric=data.metric, max_epochs=data.space.max_epochs,
        scheduler=data.scheduler_name, state=_unfinished_state(data), summary=summary_rows(data),
        compute=compute_rows(data), figures=[_figure(name, png) for name, png in plots.items()],
        leaderboard=build_leaderboard(data), errors=errors[:ERRORS_SHOWN],
        more_errors=max(len(errors) - ERRORS_SHOWN, 0))


def summary_rows(data: ReportData) -> list[tuple[str, str]]:
    """The trials by status, the best trial and its hyperparameters."""
    best = data.best
    rows = [("trials", _counts(data)),
            ("best trial", f"{best.trial_id}: {data.score_label} = {best.value:.4f} after {best.epochs} epochs"
             if best else "none yet (no trial has reported the metric)")]
    if best:
        rows += [(f"best {axis.path}", _short(best.params.get(axis.path))) for axis in data.params]
    rows += [(f"confirmed #{rank}", f"{config.trial_id}: {data.score_label} = {config.mean:.4f} ± {config.std:.4f} "
              f"over {len(config.values)} runs ({', '.join(config.trials)})") for rank, config in enumerate(data.confirmed, 1)]
    budget = data.budget
    if budget:  # its limits and spending, what ended the sweep, the trials cut and not started
        rows.append(("budget", format_budget(budget).removeprefix("budget: ")))
    rows.append(("disk used", f"{format_bytes(data.disk_bytes)} ({data.disk_bytes:,} bytes)"))
    return rows


def compute_rows(data: ReportData) -> list[list[str]]:
    """Epochs, trial-seconds (and GPU-seconds): spent, without early stopping, saved."""
    c = data.compute
    rows = [["epochs", f"{c.epochs}", f"{c.epochs_without_stopping}", _saved(c.epochs, c.epochs_without_stopping)],
            ["trial-seconds", f"{c.seconds:.1f}", f"{c.seconds_without_stopping:.1f}",
             _saved(c.seconds, c.seconds_without_stopping)]]
    if c.gpus_per_trial:
        rows.append([f"GPU-seconds ({c.gpus_per_trial:g} GPU per trial)", f"{c.gpu_seconds:.1f}",
                     f"{c.gpu_seconds_without_stopping:.1f}", _saved(c.gpu_seconds, c.gpu_seconds_without_stopping)])
    return rows


@dataclass
class Leaderboard:
    """The leaderboard's texts: ``num`` are the numeric columns; ``classes``, each row's (``best`` or its status)."""

    header: list[str]
    rows: list[list[str]]
    num: list[int]
    classes: list[str]
    more: int = 0  # trials not shown (leaderboard.csv has every one)


def build_leaderboard(data: ReportData) -> Leaderboard:
    """The trials, best first (the first ``LEADERBOARD_ROWS``, and the winner wherever it ranks): rank, status,
    epochs, metric, hyperparameters, seconds, node."""
    header = ["#", "trial", "status", "epochs", data.score_label, *(p.path for p in data.params), "seconds", "node"]
    best = data.best
    shown = [(rank, trial) for rank, trial in enumerate(data.trials, start=1)
             if rank <= LEADERBOARD_ROWS or trial is best]
    rows = [[f"{rank}", trial.trial_id, trial.status, f"{trial.epochs}",
             "-" if trial.value is None else f"{trial.value:.4f}",
             *(_short(trial.params.get(p.path)) for p in data.params),
             f"{data.seconds.get(trial.trial_id, 0):.1f}", trial.node]
            for rank, trial in shown]
    return Leaderboard(header, rows, num=[0, 3, 4, len(header) - 2],
                       classes=["best" if trial is best else trial.status for _, trial in shown],
                       more=len(data.trials) - len(shown))


# --- the comparison -----------------------------------------------------------------------------
@dataclass
class ConfigDifference:
    path: str
    a: Any
    b: Any


def render_comparison_html(a: ReportData, b: ReportData, differences: list[ConfigDifference]) -> str:
    """Two experiments side by side: best metric, compute spent, the best configs' differences."""
    return TEMPLATES.get_template("comparison.html.j2").render(
        title=f"Sweep comparison: {a.directory.name} vs {b.directory.name}", a=a, b=b,
        side_by_side=side_by_side_rows(a, b),
        differences=[(d.path, _short(d.a), _short(d.b)) for d in differences],
        figures=[_figure("comparison_curves", render_png(plot_comparison_curves(a, b)))])


def side_by_side_rows(a: ReportData, b: ReportData) -> list[tuple[str, str, str]]:
    """What each experiment ran and spent, and its best trial."""
    rows = [("experiment", str(a.directory), str(b.directory)), ("search space", str(a.space.path), str(b.space.path)),
            ("metric", f"{a.space.settings.mode} {a.metric}", f"{b.space.settings.mode} {b.metric}"),
            ("scheduler, max epochs", f"{a.scheduler_name}, {a.space.max_epochs}",
             f"{b.scheduler_name}, {b.space.max_epochs}"),
            ("state", _state(a), _state(b)), ("trials", _counts(a), _counts(b)),
            ("best trial", a.best.trial_id if a.best else "-", b.best.trial_id if b.best else "-"),
            ("best value", _value(a.best), _value(b.best)),
            ("best trial's epochs", str(a.best.epochs) if a.best else "-", str(b.best.epochs) if b.best else "-"),
            ("epochs run (without early stopping)", _epochs(a), _epochs(b)),
            ("trial-seconds (without early stopping)", _seconds(a), _seconds(b))]
    if a.compute.gpus_per_trial or b.compute.gpus_per_trial:
        rows.append(("GPU-seconds (without early stopping)", _gpu_seconds(a), _gpu_seconds(b)))
    return rows


def diff_configs(a: ReportData, b: ReportData) -> list[ConfigDifference]:
    """The leaves where the two experiments' best trials' configs differ (missing on one side: None)."""
    left = flatten_config(a.best.config) if a.best else {}
    right = flatten_config(b.best.config) if b.best else {}
    return [ConfigDifference(path, left.get(path), right.get(path))
            for path in dict.fromkeys([*left, *right]) if left.get(path) != right.get(path)]


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"cfg": {"lr": 0.1}}}`` -> ``{"optimizer.cfg.lr": 0.1}`` (lists stay leaves)."""
    if not isinstance(config, Mapping) or not config:
        return {prefix: config} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


# --- texts --------------------------------------------------------------------------------------
def _figure(name: str, png: bytes) -> tuple[str, str]:
    """(caption, data URI) of a plot."""
    return name.replace("_", " "), "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _unfinished_state(data: ReportData) -> str | None:
    """What the report's note says of a sweep that has not ended (None: it has)."""
    if data.complete:
        return None
    return _state(data) if data.interrupted_by else "still running or interrupted (read from the trials' files so far)"


def _state(data: ReportData) -> str:
    if data.interrupted_by:
        return f"interrupted ({data.interrupted_by}); continue it with torchmate-tune {data.directory} --resume"
    return "finished" if data.complete else "running or interrupted"


def _counts(data: ReportData) -> str:
    return f"{len(data.trials)}: " + ", ".join(f"{n} {status}" for status, n in data.status_counts().items())


def _value(trial: TrialRow | None) -> str:
    return f"{trial.value:.4f}" if trial else "-"


def _epochs(data: ReportData) -> str:
    return f"{data.compute.epochs} ({data.compute.epochs_without_stopping})"


def _seconds(data: ReportData) -> str:
    return f"{data.compute.seconds:.1f} ({data.compute.seconds_without_stopping:.1f})"


def _gpu_seconds(data: ReportData) -> str:
    return f"{data.compute.gpu_seconds:.1f} ({data.compute.gpu_seconds_without_stopping:.1f})"


def _saved(spent: float, full: float) -> str:
    return f"{1 - spent / full:.0%}" if full else "-"


def _short(value: Any) -> str:
    return "-" if value is None else format_value(value)
