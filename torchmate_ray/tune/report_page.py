"""The offline report: ``report.html`` (one self-contained file, images as data URIs) and its PNGs.

    write_report("ray_results/lenet-...")                    # -> .../report.html and .../report/*.png
    write_comparison("ray_results/a", "ray_results/b")       # -> ray_results/a/compare-b.html

Every plot is drawn from a :class:`~torchmate_ray.tune.report_data.ReportData`, never from the files.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from torchmate_ray.lightning.errors import ConfigError
from torchmate_ray.tune.choices import SCHEDULERS, read_choice
from torchmate_ray.tune.report_data import ReportData, build_report_data
from torchmate_ray.tune.rows import TrialRow, format_value
from torchmate_ray.tune.space import SearchSpace

PLOTS_DIR = "report"  # the PNGs, beside report.html in the experiment directory
STATUS_STYLE = {  # (colour, alpha, line style) of a trial's curve and points
    "finished": ("tab:blue", 0.85, "-"), "stopped": ("tab:gray", 0.3, "-"), "errored": ("tab:red", 0.6, "-"),
    "running": ("tab:green", 0.85, "--"), "pending": ("tab:green", 0.85, "--"), "incomplete": ("tab:purple", 0.6, "--"),
    "interrupted": ("tab:purple", 0.6, "--"),
}
BEST_COLOUR = "tab:orange"


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


def render_plots(data: ReportData) -> dict[str, bytes]:
    """Plot name -> PNG bytes: learning curves, rung survival, hyperparameters vs metric, parallel coordinates."""
    plots = {"learning_curves": plot_learning_curves(data), "rung_survival": plot_rung_survival(data)}
    if data.params:
        plots["params_vs_metric"] = plot_params_vs_metric(data)
        plots["parallel_coordinates"] = plot_parallel_coordinates(data)
    return {name: render_png(figure) for name, figure in plots.items()}


# --- plots ------------------------------------------------------------------------------------
def plot_learning_curves(data: ReportData) -> Figure:
    """Every trial's metric per epoch: scheduler-stopped trials faded, the best one bold, rungs dotted."""
    figure = Figure(figsize=(9, 5.5))
    axes = figure.subplots()
    best = data.best
    for trial in reversed(data.trials):  # the best last, on top
        if not trial.curve:
            continue
        epochs, values = zip(*trial.curve)
        colour, alpha, style = (BEST_COLOUR, 1.0, "-") if trial is best else STATUS_STYLE[trial.status]
        axes.plot(epochs, values, style, marker="o", markersize=3, color=colour, alpha=alpha,
                  linewidth=2.5 if trial is best else 1.2)
    for rung in data.rungs if len(data.rungs) < data.space.max_epochs else []:
        axes.axvline(rung.epochs, color="black", linestyle=":", linewidth=0.8, alpha=0.5)
    handles = [_legend_line(axes, BEST_COLOUR, 1.0, "-", f"best: {best.trial_id}")] if best else []
    counts = data.status_counts()
    handles += [_legend_line(axes, *STATUS_STYLE[status], f"{status} ({count})") for status, count in counts.items()]
    axes.legend(handles=handles, loc="best", fontsize=9)
    axes.set_xlabel("epoch")
    axes.set_ylabel(data.metric)
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_title(f"Learning curves: {len(data.trials)} trials (stopped by the scheduler: faded)")
    axes.grid(alpha=0.3)
    return figure


def plot_rung_survival(data: ReportData) -> Figure:
    """How many trials reached each scheduler rung (in epochs)."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    positions = range(len(data.rungs))
    bars = axes.bar(positions, [r.reached for r in data.rungs], color="tab:blue", alpha=0.8)
    axes.bar_label(bars, labels=[f"{r.reached} of {len(data.trials)}" for r in data.rungs], padding=2)
    axes.set_xticks(list(positions), [f"{r.epochs}" for r in data.rungs])
    axes.set_xlabel("rung (epochs)")
    axes.set_ylabel("trials that reached it")
    axes.set_ylim(0, max(len(data.trials), 1) * 1.15)
    axes.set_title(f"Rung survival ({_scheduler_name(data.space)})")
    axes.grid(axis="y", alpha=0.3)
    return figure


def plot_params_vs_metric(data: ReportData) -> Figure:
    """One scatter per varied hyperparameter against the final metric (log axis for log-sampled ones)."""
    columns = min(len(data.params), 3)
    rows = math.ceil(len(data.params) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.8 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    by_id = {t.trial_id: t for t in data.trials}
    best = data.best
    for axes, param in zip(grid.flat, data.params):
        groups: dict[tuple[str, float, bool], tuple[list[Any], list[float]]] = {}  # one scatter per look
        for index, (value, metric, trial_id) in enumerate(data.points(param)):
            trial = by_id[trial_id]
            x = param.categories.index(value) + _jitter(index) if param.scale == "categorical" else value
            colour, alpha, _ = (BEST_COLOUR, 1.0, "") if trial is best else STATUS_STYLE[trial.status]
            xs, ys = groups.setdefault((colour, alpha, trial is best), ([], []))
            xs.append(x)
            ys.append(metric)
        for (colour, alpha, is_best), (xs, ys) in sorted(groups.items(), key=lambda group: group[0][2]):  # best on top
            axes.scatter(xs, ys, color=colour, alpha=max(alpha, 0.45), s=60 if is_best else 28,
                         marker="*" if is_best else "o", edgecolors="none")
        if param.scale == "categorical":
            axes.set_xticks(range(len(param.categories)), param.categories,
                            rotation=30 if max(map(len, param.categories), default=0) > 6 else 0)
            axes.set_xlim(-0.5, len(param.categories) - 0.5)
        elif param.scale == "log":
            axes.set_xscale("log")
        axes.set_xlabel(f"{param.path} ({param.scale})")
        axes.set_ylabel(data.metric)
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(data.params):]:
        axes.set_visible(False)
    figure.suptitle(f"Hyperparameters vs final {data.metric} (faded: stopped early; star: best)")
    figure.tight_layout()
    return figure


def plot_parallel_coordinates(data: ReportData) -> Figure:
    """Each trial with a metric as a line over the hyperparameter axes and the metric, each axis scaled to
    its range; colour by metric."""
    coords = data.parallel_coordinates()
    figure = Figure(figsize=(max(7, 2.2 * len(coords.axes)), 5))
    axes = figure.subplots()
    values = [t.value for t in data.trials if t.value is not None]
    low, high = (min(values), max(values)) if values else (0, 1)
    colormap = _colormap("viridis" if data.space.settings.mode == "max" else "viridis_r")
    best = data.best
    for trial_id, line in reversed(coords.lines):
        is_best = best is not None and trial_id == best.trial_id
        metric = line[-1] * (high - low) + low if high > low else high
        axes.plot(range(len(line)), line, color=BEST_COLOUR if is_best else colormap((metric - low) / (high - low or 1)),
                  linewidth=3 if is_best else 1.3, alpha=1.0 if is_best else 0.75, zorder=3 if is_best else 2)
    for index, ticks in enumerate(coords.ticks):
        axes.axvline(index, color="black", linewidth=0.8)
        for position, text in ticks:
            axes.annotate(text, (index, position), xytext=(4, 0), textcoords="offset points", fontsize=8,
                          va="center", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    scale = ScalarMappable(Normalize(low, high), colormap)
    figure.colorbar(scale, ax=axes, pad=0.01, fraction=0.03).set_label(data.metric)
    axes.set_xticks(range(len(coords.axes)), coords.axes, rotation=15, fontsize=9)
    axes.set_yticks([])
    axes.set_xlim(-0.2, len(coords.axes) - 0.6)
    axes.set_ylim(-0.05, 1.05)
    axes.set_title(f"Parallel coordinates: {len(coords.lines)} trials with a metric (colour: {data.metric}; "
                   f"orange: best)")
    figure.tight_layout()
    return figure


def render_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _legend_line(axes: Any, colour: str, alpha: float, style: str, text: str) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=colour, alpha=max(alpha, 0.45), linestyle=style, marker="o", markersize=3, label=text)


def _colormap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def _jitter(index: int) -> float:
    return ((index * 7919) % 17 / 16 - 0.5) * 0.3  # spread points of one category, the same on every run


def _scheduler_name(space: SearchSpace) -> str:
    name, choice, _ = read_choice(SCHEDULERS, space.settings.scheduler, "sweep.scheduler")
    return name.upper() if choice.rungs else f"{name}; every epoch is a milestone"


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


def plot_comparison_curves(a: ReportData, b: ReportData) -> Figure:
    """Both experiments' learning curves on one plot: faded trials, each best one bold."""
    figure = Figure(figsize=(9, 5.5))
    axes = figure.subplots()
    for data, colour in ((a, "tab:blue"), (b, "tab:orange")):
        best = data.best
        for trial in data.trials:
            if trial.curve and trial is not best:
                axes.plot(*zip(*trial.curve), color=colour, alpha=0.25, linewidth=1)
        if best and best.curve:
            axes.plot(*zip(*best.curve), color=colour, linewidth=2.5, marker="o", markersize=4,
                      label=f"{data.directory.name}: best {best.trial_id}")
    axes.set_xlabel("epoch")
    axes.set_ylabel(a.metric if a.metric == b.metric else f"{a.metric} / {b.metric}")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_title("Learning curves of both sweeps (faded: every trial; bold: each best)")
    axes.legend(fontsize=9)
    axes.grid(alpha=0.3)
    return figure


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
        f"&middot; scheduler {_e(_scheduler_name(data.space))}</p>",
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
            ("scheduler, max epochs", f"{_scheduler_name(a.space)}, {a.space.max_epochs}",
             f"{_scheduler_name(b.space)}, {b.space.max_epochs}"),
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
