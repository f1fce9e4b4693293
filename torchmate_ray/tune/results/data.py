"""An experiment directory as plain data for the report: every number a plot shows, read from the files
(the trials as ``experiment/trials.py`` reads them, finished, running or interrupted).

    data = build_report_data("ray_results/lenet-2026-01-01-12-00-00")
    data.rungs            # [Rung(epochs=1, reached=12), Rung(epochs=3, reached=4), Rung(epochs=9, reached=2)]
    data.compute.epochs   # 30, of data.compute.epochs_without_stopping = 108
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized

from torchmate_ray.tune.experiment.directory import load_experiment_space
from torchmate_ray.tune.experiment.trials import read_experiment_trials
from torchmate_ray.tune.records.files import SUMMARY_FILE, read_json_object
from torchmate_ray.tune.records.rows import TrialRow, count_statuses, format_value, rank_trials, score_label
from torchmate_ray.tune.results.confirmed_ranking import (ConfirmedConfig, rank_confirmed, read_confirm_record,
                                                            sweep_winner)
from torchmate_ray.tune.search.budget_settings import summarize_budget
from torchmate_ray.tune.search.choices import SCHEDULERS, list_milestones, read_choice
from torchmate_ray.tune.search.domains import find_domains, varied_paths
from torchmate_ray.tune.search.space import SearchSpace


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
    disk_bytes: int = 0             # what the experiment's files take (export.measure_disk), once they are written
    confirmed: list[ConfirmedConfig] = field(default_factory=list)  # a confirmed sweep's configs, best mean first
    budget: dict[str, Any] | None = None  # budget_settings.summarize_budget's (None: the sweep had no budget)

    @property
    def complete(self) -> bool:
        """The sweep ended: summary.json is there, it was not interrupted and no trial is running or pending."""
        return (self.directory / SUMMARY_FILE).is_file() and not self.interrupted_by and not any(
            t.status in ("running", "pending") for t in self.trials)

    @property
    def metric(self) -> str:
        return self.space.settings.metric

    @property
    def score_label(self) -> str:
        """What a trial's value is (``rows.score_label``): ``val/accuracy``, ``val/accuracy (best epoch)``, ..."""
        return score_label(self.metric, self.space.settings.score)

    @property
    def best(self) -> TrialRow | None:
        """The sweep's winner (``confirmed_ranking.sweep_winner``): what every file and line names as the best."""
        return sweep_winner(self.trials, self.confirmed, self.space.settings.mode)

    @property
    def scheduler_name(self) -> str:
        """``ASHA``; a scheduler without rungs: ``fifo; every epoch is a milestone``."""
        name, choice, _ = read_choice(SCHEDULERS, self.space.settings.scheduler, "sweep.scheduler")
        return name.upper() if choice.rungs else f"{name}; every epoch is a milestone"

    def status_counts(self) -> dict[str, int]:
        return count_statuses(self.trials)

    def points(self, param: ParamAxis) -> list[tuple[Any, float, str]]:
        """(hyperparameter value, final metric, trial id) for each trial that has both; categorical
        values as their labels."""
        return [(format_value(t.params[param.path]) if param.scale == "categorical" else float(t.params[param.path]),
                 t.value, t.trial_id) for t in self.trials if t.value is not None and t.params.get(param.path) is not None]

    def parallel_coordinates(self) -> ParallelCoordinates:
        """The hyperparameters and the metric as parallel axes."""
        scored = [t for t in self.trials if t.value is not None]
        metric_axis = ParamAxis(self.score_label, "linear")
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
        interrupted_by = read_json_object(directory / SUMMARY_FILE).get("interrupted_by")
    trials, seconds = read_experiment_trials(directory, space, interrupted=bool(interrupted_by))
    return ReportData(
        directory=directory, space=space,
        trials=rank_trials(trials, space.settings.mode), seconds=seconds, params=build_param_axes(space, trials),
        rungs=build_rungs(space, trials), compute=build_compute_account(space, trials, seconds),
        interrupted_by=interrupted_by,
        confirmed=rank_confirmed(trials, read_confirm_record(directory), space.max_epochs, space.settings.mode),
        budget=summarize_budget(directory, space.num_trials))


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
    if not span:
        return scaled, [(0.5, format_value(unscale(low)))]
    return scaled, [(0.0, format_value(unscale(low))), (1.0, format_value(unscale(high)))]


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
