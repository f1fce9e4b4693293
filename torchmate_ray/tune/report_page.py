"""The offline report: ``report.html`` (one self-contained file, images as data URIs) and its PNGs.

    write_report("ray_results/lenet-...")                    # -> .../report.html and .../report/*.png
    write_comparison("ray_results/a", "ray_results/b")       # -> ray_results/a/compare-b.html

The plots are ``plots.py``'s, each drawn from a :class:`~torchmate_ray.tune.report_data.ReportData`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchmate_ray.lightning.errors import ConfigError
from torchmate_ray.tune.plots import plot_comparison_curves, render_plots, render_png
from torchmate_ray.tune.report_data import ReportData, build_report_data
from torchmate_ray.tune.rows import TrialRow, format_value
from torchmate_ray.tune.space import SearchSpace

PLOTS_DIR = "report"  # the PNGs, beside report.html in the experiment directory


def write_report(directory: str | Path, space: SearchSpace | None = None, output: str | Path | None = None) -> Path:
    """Write ``report.html`` (default: in the experiment directory) and the plots as PNGs under ``report/``.

    Works on a finished, running or interrupted experiment. Raises ConfigError for a directory that is
    not a torchmate-tune experiment.
    """
    return write_report_page(build_report_data(directory, space), output)


def write_report_page(data: ReportData, output: str | Path | None = None) -> Path:
    """``write_report`` for an experiment already read."""
    path = check_output(Path(output) if output else data.directory / "report.html")
    plots = render_plots(data)
    (data.directory / PLOTS_DIR).mkdir(exist_ok=True)
    for name, png in plots.items():
        (data.directory / PLOTS_DIR / f"{name}.png").write_bytes(png)
    path.write_text(render_report_html(data, plots))
    return path


def write_comparison(directory_a: str | Path, directory_b: str | Path, output: str | Path | None = None) -> Path:
    """Write one page with two experiments side by side; default ``<A>/compare-<B's name>.html``."""
    a, b = build_report_data(directory_a), build_report_data(directory_b)
    path = check_output(Path(output) if output else a.directory / f"compare-{b.directory.name}.html")
    path.write_text(render_comparison_html(a, b, diff_configs(a, b)))
    return path


def check_output(path: Path) -> Path:
    """``path``, if a page can be written there (ConfigError naming --output otherwise)."""
    if path.is_dir() or not path.parent.is_dir():
        why = "is a directory" if path.is_dir() else f"its directory {path.parent} does not exist"
        raise ConfigError("--output", f"{path}: {why}; give a file path in an existing directory")
    return path


# --- comparison -------------------------------------------------------------------------------
@dataclass
class ConfigDifference:
    path: str
    a: Any
    b: Any


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


# --- HTML -------------------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; } .note { background: #fff6e0; border-left: 4px solid #f0a500; padding: 0.5em 1em; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee;
text-align: left; } th { background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff1e0; font-weight: 600; } tr.stopped td { color: #888; } tr.errored td { color: #b00; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #666; font-size: 0.85em; } code { background: #f3f3f3; padding: 0 0.25em; }
.wide { overflow-x: auto; }
"""


def render_report_html(data: ReportData, plots: Mapping[str, bytes]) -> str:
    """The report page: state, compute account, plots (embedded), leaderboard, errors."""
    best = data.best
    state = _state(data) if data.complete or data.interrupted_by else "still running or interrupted (read from the trials' files so far)"
    parts = [
        f"<h1>Sweep report: {_e(data.directory.name)}</h1>",
        f'<p class="sub">{_e(str(data.directory))} &middot; space <code>{_e(str(data.space.path))}</code> &middot; '
        f"{_e(data.space.settings.mode)} <code>{_e(data.metric)}</code> &middot; {data.space.max_epochs} epochs max "
        f"&middot; scheduler {_e(data.scheduler_name)}</p>",
        "" if data.complete else f'<p class="note">This sweep is {_e(state)}.</p>',
        "<h2>Summary</h2>", _summary_table(data, best), "<h2>Compute</h2>", _compute_table(data),
        "<h2>Plots</h2>", *(_figure(name, png) for name, png in plots.items()),
        "<h2>Leaderboard</h2>", _leaderboard_table(data),
        _errors_list(data.trials),
    ]
    return _page(f"Sweep report: {data.directory.name}", parts)


def render_comparison_html(a: ReportData, b: ReportData, differences: list[ConfigDifference]) -> str:
    """Two experiments side by side: best metric, compute spent, the best configs' differences."""
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
    table = _table(["", _e(a.directory.name), _e(b.directory.name)], [[_e(c) for c in row] for row in rows])
    note = "" if a.metric == b.metric else (f'<p class="note">The sweeps optimize different metrics '
                                            f"({_e(a.metric)} vs {_e(b.metric)}): best values do not compare.</p>")
    diff = (_table(["config key", _e(a.directory.name), _e(b.directory.name)],
                   [[f"<code>{_e(d.path)}</code>", _e(_short(d.a)), _e(_short(d.b))] for d in differences])
            if differences else "<p>The two best configs are the same.</p>")
    parts = [f"<h1>Sweep comparison: {_e(a.directory.name)} vs {_e(b.directory.name)}</h1>", note,
             "<h2>Side by side</h2>", table, "<h2>Best configs' differences</h2>", diff,
             "<h2>Learning curves</h2>", _figure("comparison_curves", render_png(plot_comparison_curves(a, b)))]
    return _page(f"Sweep comparison: {a.directory.name} vs {b.directory.name}", parts)


def _summary_table(data: ReportData, best: TrialRow | None) -> str:
    rows = [("trials", _counts(data)),
            ("best trial", f"{best.trial_id}: {data.metric} = {best.value:.4f} after {best.epochs} epochs"
             if best else "none yet (no trial has reported the metric)")]
    if best:
        rows += [(f"best {axis.path}", _short(best.params.get(axis.path))) for axis in data.params]
    return _table([], [[_e(k), _e(v)] for k, v in rows])


def _compute_table(data: ReportData) -> str:
    c = data.compute
    rows = [["epochs", f"{c.epochs}", f"{c.epochs_without_stopping}", _saved(c.epochs, c.epochs_without_stopping)],
            ["trial-seconds", f"{c.seconds:.1f}", f"{c.seconds_without_stopping:.1f}",
             _saved(c.seconds, c.seconds_without_stopping)]]
    if c.gpus_per_trial:
        rows.append([f"GPU-seconds ({c.gpus_per_trial:g} GPU per trial)", f"{c.gpu_seconds:.1f}",
                     f"{c.gpu_seconds_without_stopping:.1f}", _saved(c.gpu_seconds, c.gpu_seconds_without_stopping)])
    table = _table(["", "spent", "without early stopping", "saved"],
                   [[_e(row[0]), *(f'<td class="num">{_e(cell)}</td>' for cell in row[1:])] for row in rows])
    return table + ('<p class="sub">Without early stopping: every trial run to max epochs (errored ones as they '
                    "ran); its seconds from each trial's own mean seconds per epoch.</p>")


def _leaderboard_table(data: ReportData) -> str:
    header = ["#", "trial", "status", "epochs", _e(data.metric), *(_e(p.path) for p in data.params), "seconds", "node"]
    best = data.best
    rows = []
    for rank, trial in enumerate(data.trials, start=1):
        cells = [f'<td class="num">{rank}</td>', _e(trial.trial_id), _e(trial.status),
                 f'<td class="num">{trial.epochs}</td>',
                 f'<td class="num">{"-" if trial.value is None else f"{trial.value:.4f}"}</td>',
                 *(_e(_short(trial.params.get(p.path))) for p in data.params),
                 f'<td class="num">{data.seconds.get(trial.trial_id, 0):.1f}</td>', _e(trial.node)]
        rows.append((cells, "best" if trial is best else trial.status))
    body = "".join(f'<tr class="{kind}">' + "".join(_cell(c) for c in cells) + "</tr>" for cells, kind in rows)
    return f'<div class="wide"><table><tr>{"".join(f"<th>{h}</th>" for h in header)}</tr>{body}</table></div>'


def _errors_list(trials: list[TrialRow]) -> str:
    errored = [t for t in trials if t.error]
    if not errored:
        return ""
    items = "".join(f"<li><code>{_e(t.trial_id)}</code>: {_e(t.error)}</li>" for t in errored)
    return f"<h2>Errors</h2><ul>{items}</ul>"


def _figure(name: str, png: bytes) -> str:
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    caption = name.replace("_", " ")
    return f'<figure><img alt="{_e(caption)}" src="{source}"><figcaption>{_e(caption)}</figcaption></figure>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = f"<tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>" if header else ""
    return "<table>" + head + "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows) + "</table>"


def _cell(content: str) -> str:
    return content if content.startswith("<td") else f"<td>{content}</td>"


def _page(title: str, parts: list[str]) -> str:
    body = "\n".join(part for part in parts if part)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


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


def _e(text: Any) -> str:
    return html.escape(str(text))
