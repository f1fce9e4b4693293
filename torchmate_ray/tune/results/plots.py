"""The report's plots (matplotlib), each drawn from a :class:`~torchmate_ray.tune.results.data.ReportData`,
never from the files: learning curves, rung survival, each hyperparameter against the metric, parallel
coordinates, and two sweeps' learning curves on one plot.

    render_plots(data)    # {"learning_curves": b"\x89PNG...", ...}
"""

from __future__ import annotations

import io
import math
from typing import Any

from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from torchmate_ray.tune.results.data import ReportData

STATUS_STYLE = {  # (colour, alpha, line style) of a trial's curve and points
    "finished": ("tab:blue", 0.85, "-"), "stopped": ("tab:gray", 0.3, "-"), "errored": ("tab:red", 0.6, "-"),
    "running": ("tab:green", 0.85, "--"), "pending": ("tab:green", 0.85, "--"), "incomplete": ("tab:purple", 0.6, "--"),
    "interrupted": ("tab:purple", 0.6, "--"),
}
BEST_COLOUR = "tab:orange"
# Past this many trials, the learning curves show the leaders as lines and the rest as a density; the parallel
# coordinates and the scatters thin their lines and points: a page of 10,000 trials stays one to read.
CURVE_LINES, LEADERS, MANY = 200, 50, 500


def render_plots(data: ReportData) -> dict[str, bytes]:
    """Plot name -> PNG bytes: learning curves, rung survival, hyperparameters vs metric, parallel coordinates."""
    plots = {"learning_curves": plot_learning_curves(data), "rung_survival": plot_rung_survival(data)}
    if data.params:
        plots["params_vs_metric"] = plot_params_vs_metric(data)
        plots["parallel_coordinates"] = plot_parallel_coordinates(data)
    return {name: render_png(figure) for name, figure in plots.items()}


def plot_learning_curves(data: ReportData) -> Figure:
    """Every trial's metric per epoch: scheduler-stopped trials faded, the best one bold, rungs dotted."""
    figure = Figure(figsize=(9, 5.5))
    axes = figure.subplots()
    best = data.best
    curved = [trial for trial in data.trials if trial.curve]
    lines, rest = (curved, []) if len(curved) <= CURVE_LINES else (curved[:LEADERS], curved[LEADERS:])
    if rest:  # every epoch of the others, binned: where their curves run, not 10,000 lines
        points = [point for trial in rest if trial is not best for point in trial.curve]
        axes.hexbin(*zip(*points), gridsize=(data.space.max_epochs * 2, 40), bins="log", cmap="Greys", mincnt=1,
                    linewidths=0, alpha=0.8)
    for trial in reversed([*lines, *([best] if best in rest else [])]):  # the best last, on top
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
    axes.set_title(f"Learning curves: {len(data.trials)} trials (stopped by the scheduler: faded)" if not rest else
                   f"Learning curves: the {LEADERS} best of {len(data.trials)} trials; the other {len(rest)} as a "
                   f"density (grey)")
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
    axes.set_title(f"Rung survival ({data.scheduler_name})")
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
        many = len(data.trials) > MANY
        for (colour, alpha, is_best), (xs, ys) in sorted(groups.items(), key=lambda group: group[0][2]):  # best on top
            axes.scatter(xs, ys, color=colour, alpha=1.0 if is_best else 0.25 if many else max(alpha, 0.45),
                         s=60 if is_best else 8 if many else 28, marker="*" if is_best else "o", edgecolors="none",
                         zorder=3 if is_best else 2)
        if param.scale == "categorical":
            axes.set_xticks(range(len(param.categories)), param.categories,
                            rotation=30 if max(map(len, param.categories), default=0) > 6 else 0)
            axes.set_xlim(-0.5, len(param.categories) - 0.5)
        elif param.scale == "log":
            axes.set_xscale("log")
        axes.set_xlabel(f"{param.path} ({param.scale})")
        axes.set_ylabel(data.score_label)
        axes.grid(alpha=0.3)
    for axes in list(grid.flat)[len(data.params):]:
        axes.set_visible(False)
    figure.suptitle(f"Hyperparameters vs {data.score_label} (faded: stopped early; star: best)")
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
    best_id = data.best.trial_id if data.best else None
    others = [line for trial_id, line in reversed(coords.lines) if trial_id != best_id]  # the best ones on top
    many = len(others) > MANY
    axes.add_collection(LineCollection([list(enumerate(line)) for line in others], colors=[
        colormap(line[-1] if high > low else 0.0) for line in others], linewidths=0.5 if many else 1.3,
        alpha=0.25 if many else 0.75, zorder=2))  # (a line's last value is the metric, scaled to [0, 1])
    for trial_id, line in coords.lines:
        if trial_id == best_id:
            axes.plot(range(len(line)), line, color=BEST_COLOUR, linewidth=3, alpha=1.0, zorder=3)
    for index, ticks in enumerate(coords.ticks):
        axes.axvline(index, color="black", linewidth=0.8)
        for position, text in ticks:
            axes.annotate(text, (index, position), xytext=(4, 0), textcoords="offset points", fontsize=8,
                          va="center", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    scale = ScalarMappable(Normalize(low, high), colormap)
    figure.colorbar(scale, ax=axes, pad=0.01, fraction=0.03).set_label(data.score_label)
    axes.set_xticks(range(len(coords.axes)), coords.axes, rotation=15, fontsize=9)
    axes.set_yticks([])
    axes.set_xlim(-0.2, len(coords.axes) - 0.6)
    axes.set_ylim(-0.05, 1.05)
    axes.set_title(f"Parallel coordinates: {len(coords.lines)} trials with a metric (colour: {data.score_label}; "
                   f"orange: best)")
    figure.tight_layout()
    return figure


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
