"""An experiment directory as plain data for the report: every number a plot shows, read from the files.

Each trial is read from its own directory (``result.json``: one JSON line per epoch; ``params.json``;
``error.txt``), and Tune's ``experiment_state-*.json`` says which trials are running or pending, so an
experiment that is still running, or was interrupted, reads as well as a finished one (which also has
``summary.json``).

    data = build_report_data("ray_results/lenet-2026-01-01-12-00-00")
    data.rungs            # [Rung(epochs=1, reached=12), Rung(epochs=3, reached=4), Rung(epochs=9, reached=2)]
    data.compute.epochs   # 30, of data.compute.epochs_without_stopping = 108
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized

from torchmate_ray.tune.choices import list_milestones
from torchmate_ray.tune.experiment import load_experiment_space
from torchmate_ray.tune.record import EPOCHS, RESULT_FILE, code_errors, read_lines
from torchmate_ray.tune.domains import find_domains, varied_paths
from torchmate_ray.tune.report import TrialRow, format_value, get_path
from torchmate_ray.tune.space import SearchSpace

EPOCH_KEYS = (EPOCHS, "training_iteration")  # epochs done: as the trial reports them, else Tune's report count
STATE_STATUS = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "pending", "ERROR": "errored"}
ERROR_FILES = ("error.txt", "error.pkl")


@dataclass
class Rung:
    """A scheduler milestone and how many trials ran at least that many epochs."""

    epochs: int
    reached: int


@dataclass
class ComputeAccount:
    """What the sweep spent, and what it would have spent had every trial run to ``max_epochs``
    (errored trials count as they are; seconds from each trial's own mean seconds per epoch)."""

    epochs: int
    seconds: float                  # trial-seconds: each trial's time_total_s, summed
    epochs_without_stopping: int
    seconds_without_stopping: float
    gpus_per_trial: float = 0

    @property
    def gpu_seconds(self) -> float:
        return self.seconds * self.gpus_per_trial

    @property
    def gpu_seconds_without_stopping(self) -> float:
        return self.seconds_without_stopping * self.gpus_per_trial


@dataclass
class ParamAxis:
    """A varied hyperparameter and how to plot it: ``log`` (log-sampled numbers), ``linear`` or
    ``categorical`` (with its category labels in order)."""

    path: str
    scale: str
    categories: list[str] = field(default_factory=list)


@dataclass
class ParallelCoordinates:
    """One line per trial with a metric, every axis scaled to [0, 1] (NaN where the trial lacks the
    hyperparameter); ``ticks[i]`` are (position, label) pairs for axis ``axes[i]``."""

    axes: list[str]
    ticks: list[list[tuple[float, str]]]
    lines: list[tuple[str, list[float]]]


@dataclass
class ReportData:
    """Everything the report shows about one experiment directory; ``trials`` are ranked best first."""

    directory: Path
    space: SearchSpace
    trials: list[TrialRow]
    seconds: dict[str, float]       # trial id -> its time_total_s
    params: list[ParamAxis]
    rungs: list[Rung]
    compute: ComputeAccount
    interrupted_by: str | None = None  # "SIGINT" or "SIGTERM": the sweep was stopped before its trials ended

    @property
    def complete(self) -> bool:
        """The sweep ended: summary.json is there, it was not interrupted and no trial is running or pending."""
        return (self.directory / "summary.json").is_file() and not self.interrupted_by and not any(
            t.status in ("running", "pending") for t in self.trials)

    @property
    def metric(self) -> str:
        return self.space.settings.metric

    @property
    def best(self) -> TrialRow | None:
        return next((t for t in self.trials if t.value is not None and t.status != "errored"), None)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.status] = counts.get(trial.status, 0) + 1
        return counts

    def points(self, param: ParamAxis) -> list[tuple[Any, float, str]]:
        """(hyperparameter value, final metric, trial id) for each trial that has both; categorical
        values as their labels."""
        return [(format_value(t.params[param.path]) if param.scale == "categorical" else float(t.params[param.path]),
                 t.value, t.trial_id) for t in self.trials if t.value is not None and t.params.get(param.path) is not None]

    def parallel_coordinates(self) -> ParallelCoordinates:
        """The hyperparameters and the metric as parallel axes."""
        scored = [t for t in self.trials if t.value is not None]
        metric_axis = ParamAxis(self.metric, "linear")
        axes = [*self.params, metric_axis]
        scaled, ticks = [], []
        for axis in axes:
            column, axis_ticks = _scale_axis(axis, [t.value if axis is metric_axis else t.params.get(axis.path)
                                                    for t in scored])
            scaled.append(column)
            ticks.append(axis_ticks)
        lines = [(t.trial_id, [column[i] for column in scaled]) for i, t in enumerate(scored)]
        return ParallelCoordinates([a.path for a in axes], ticks, lines)


UNKNOWN: Any = object()


def build_report_data(directory: str | Path, space: SearchSpace | None = None,
                      interrupted_by: str | None = UNKNOWN) -> ReportData:
    """Read an experiment directory (finished, running or interrupted) into a :class:`ReportData`.

    Args:
        directory: ``<storage_path>/<name>``, as ``torchmate-tune`` printed it.
        space: the sweep's search space; by default reloaded from the experiment's saved invocation.
        interrupted_by: the signal that stopped the sweep that just ran (None: it ran to its end); by default
            what its ``summary.json`` says. The trials it left running read as ``interrupted``.

    Raises:
        ConfigError: the directory is not a torchmate-tune experiment, or its search-space file cannot be loaded.
    """
    directory = Path(directory).resolve()
    space = space or load_experiment_space(directory)
    if interrupted_by is UNKNOWN:
        interrupted_by = (_read_json(directory / "summary.json") or {}).get("interrupted_by")
    states = read_trial_states(directory)
    trials, seconds = read_trials(directory, space, states, interrupted=bool(interrupted_by))
    return ReportData(
        directory=directory, space=space,
        trials=rank_trials(trials, space.settings.mode), seconds=seconds, params=build_param_axes(space, trials),
        rungs=build_rungs(space, trials), compute=build_compute_account(space, trials, seconds),
        interrupted_by=interrupted_by)


def read_trial_states(directory: Path) -> dict[str, str]:
    """Trial id -> Tune's status (RUNNING, PENDING, TERMINATED, ERROR, ...) from the newest experiment
    state file; empty when there is none or it cannot be read (a sweep killed while writing it)."""
    files = sorted(directory.glob("experiment_state-*.json"))  # named by their run's start: Tune takes the last too
    if not files:
        return {}
    try:
        entries = json.loads(files[-1].read_text())["trial_data"]
        return {trial["trial_id"]: trial["status"] for trial in (json.loads(entry[0]) for entry in entries)}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return {}


def read_trials(directory: Path, space: SearchSpace, states: Mapping[str, str],
                interrupted: bool = False) -> tuple[list[TrialRow], dict[str, float]]:
    """One row per trial directory (plus trials Tune knows of that have none yet), and each one's seconds."""
    varied = varied_paths(space.config)
    complete = (directory / "summary.json").is_file()
    trials, seconds = [], {}
    for trial_dir in sorted(p for p in directory.iterdir() if p.is_dir() and _is_trial_dir(p)):
        lines = read_lines(trial_dir / RESULT_FILE)
        trial_id = str(lines[-1].get("trial_id") or trial_dir.name) if lines else trial_dir.name
        config = _read_json(trial_dir / "params.json") or (lines[-1].get("config") if lines else None) or {}
        curve = read_curve(lines, space.settings.metric)
        epochs = max((_epochs(line) for line in lines), default=0)
        error = read_error(trial_dir)
        if states.get(trial_id) == "TERMINATED":  # an error file left by a failure that a retry got past
            error = None
        elif error is None and states.get(trial_id) == "ERROR":
            error = "errored (see Tune's experiment state)"
        status = trial_status(epochs, space.max_epochs, error is not None, states.get(trial_id), complete, interrupted)
        trials.append(TrialRow(trial_id=trial_id, status=status, epochs=epochs, value=curve[-1][1] if curve else None,
                               params={path: get_path(config, path) for path in varied}, config=config, curve=curve,
                               node=str(lines[-1].get("node_ip", "")) if lines else "", error=error))
        seconds[trial_id] = max((float(line.get("time_total_s") or 0) for line in lines), default=0.0)
    for trial_id, state in states.items():
        if trial_id not in seconds:  # not started yet: no directory
            trials.append(TrialRow(trial_id, trial_status(0, space.max_epochs, False, state, complete, interrupted), 0, None,
                                   {path: None for path in varied}, {}, []))
            seconds[trial_id] = 0.0
    return trials, seconds


def read_curve(lines: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """(epochs done, metric) per epoch; a trial continued from a checkpoint may report an epoch again: the last counts."""
    points = {_epochs(line): float(line[metric]) for line in lines
              if isinstance(line.get(metric), (int, float)) and not math.isnan(line[metric]) and _epochs(line) > 0}
    return sorted(points.items())


def read_error(trial_dir: Path) -> str | None:
    """What the trial's own code last raised (``code_errors.jsonl``), else the last line of its ``error.txt``
    (Tune writes it, with ``error.pkl``, when a trial fails, its process dying included)."""
    raised = code_errors(trial_dir)
    if raised and (trial_dir / "error.txt").is_file():
        return raised[-1]["error"]
    if (trial_dir / "error.txt").is_file():
        lines = [line for line in (trial_dir / "error.txt").read_text(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "errored"
    return "errored (error.pkl)" if (trial_dir / "error.pkl").is_file() else None


def trial_status(epochs: int, max_epochs: int, errored: bool, state: str | None, complete: bool,
                 interrupted: bool = False) -> str:
    """errored | finished | running | pending | stopped (by the scheduler) | interrupted (running when a
    signal stopped the sweep) | incomplete (no record of why it has fewer epochs: the sweep was killed before
    Tune's state said)."""
    if errored:
        return "errored"
    if epochs >= max_epochs:
        return "finished"
    if interrupted and state == "RUNNING":
        return "interrupted"
    if state in STATE_STATUS:
        return STATE_STATUS[state]
    return "stopped" if complete or state == "TERMINATED" else "incomplete"


def rank_trials(trials: list[TrialRow], mode: str) -> list[TrialRow]:
    """Best final metric first; trials without one last (as the sweep's own leaderboard)."""
    sign = -1 if mode == "max" else 1
    return sorted(trials, key=lambda t: (t.value is None, sign * t.value if t.value is not None else 0, t.trial_id))


def build_rungs(space: SearchSpace, trials: list[TrialRow]) -> list[Rung]:
    """The scheduler's milestones (ASHA's rungs; other schedulers: every epoch, see choices.list_milestones)
    with the number of trials that reached each."""
    milestones = list_milestones(space.settings.scheduler, space.max_epochs)
    return [Rung(int(m), sum(t.epochs >= m for t in trials)) for m in milestones]


def build_compute_account(space: SearchSpace, trials: list[TrialRow], seconds: Mapping[str, float]) -> ComputeAccount:
    """Epochs and trial-seconds spent, and the same without early stopping (see :class:`ComputeAccount`)."""
    rates = [seconds[t.trial_id] / t.epochs for t in trials if t.epochs]
    mean_rate = sum(rates) / len(rates) if rates else 0.0
    full_epochs = {t.trial_id: t.epochs if t.status == "errored" else max(t.epochs, space.max_epochs) for t in trials}
    resources = space.settings.resources
    return ComputeAccount(
        epochs=sum(t.epochs for t in trials), seconds=sum(seconds.values()),
        epochs_without_stopping=sum(full_epochs.values()),
        seconds_without_stopping=sum((seconds[t.trial_id] / t.epochs if t.epochs else mean_rate) * full_epochs[t.trial_id]
                                     for t in trials),
        gpus_per_trial=resources["workers"] * (resources["gpus_per_worker"] or 0))  # None: planned when it ran


def build_param_axes(space: SearchSpace, trials: list[TrialRow]) -> list[ParamAxis]:
    """How to plot each varied hyperparameter, from the kind of domain that samples it."""
    domains: dict[str, list[Any]] = {}
    for found in find_domains(space.config):
        domains.setdefault(found.trial_path, []).append(found.domain)
    axes = []
    for path in varied_paths(space.config):
        numeric = [d for d in domains[path] if isinstance(d, (Float, Integer))]
        if numeric and len(numeric) == len(domains[path]):
            axes.append(ParamAxis(path, "log" if all(_is_log(d) for d in numeric) else "linear"))
            continue
        known = [format_value(c) for d in domains[path] for c in _categories(d)]
        seen = [format_value(t.params[path]) for t in trials if t.params.get(path) is not None]
        axes.append(ParamAxis(path, "categorical", list(dict.fromkeys([*known, *seen]))))
    return axes


def _scale_axis(axis: ParamAxis, values: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    if axis.scale == "categorical":
        n = len(axis.categories)
        position = {c: (i / (n - 1) if n > 1 else 0.5) for i, c in enumerate(axis.categories)}
        return [position.get(format_value(v), math.nan) if v is not None else math.nan for v in values], \
            [(position[c], c) for c in axis.categories]
    log = axis.scale == "log"
    numbers = [(math.log10(v) if log else float(v)) if v is not None else math.nan for v in values]
    present = [x for x in numbers if not math.isnan(x)]
    low, high = (min(present), max(present)) if present else (0.0, 1.0)
    span = high - low
    scaled = [(x - low) / span if span else 0.5 for x in numbers]
    unscale = (lambda x: 10 ** x) if log else (lambda x: x)
    return scaled, ([(0.0, format_value(unscale(low))), (1.0, format_value(unscale(high)))] if span else [(0.5, format_value(unscale(low)))])


def _is_log(domain: Domain) -> bool:
    sampler = domain.get_sampler()
    if isinstance(sampler, Quantized):
        sampler = sampler.sampler
    return isinstance(sampler, LogUniform)


def _categories(domain: Any) -> list[Any]:
    if isinstance(domain, Categorical):
        return list(domain.categories)
    if isinstance(domain, Mapping) and "grid_search" in domain:
        return list(domain["grid_search"])
    return []


def _epochs(line: Mapping[str, Any]) -> int:
    for key in EPOCH_KEYS:
        if isinstance(line.get(key), (int, float)) and not math.isnan(line[key]):
            return int(line[key])
    return 0


def _is_trial_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("result.json", "params.json", *ERROR_FILES))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
