"""Tuner assembly: the scheduler (ASHA by default), the searcher, resources, storage, restore."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchGenerator, Searcher

from torchmate_ray.lightning.build import call_checked
from torchmate_ray.lightning.configure import configure_data
from torchmate_ray.lightning.files import module_name
from torchmate_ray.tune.experiment.directory import Experiment
from torchmate_ray.tune.private import restored_run_config
from torchmate_ray.tune.records.checkpoints import KeepRule
from torchmate_ray.tune.records.files import CODE_ERRORS, TRAIN_RUNS_DIR
from torchmate_ray.tune.records.trial_record import EPOCHS
from torchmate_ray.tune.search.asha import RecordedASHA
from torchmate_ray.tune.search.budget_settings import check_budget_plan, describe_budget, has_budget, planned_epochs
from torchmate_ray.tune.search.choices import (DEFAULT_SEARCHER, DRAWS_FROM_POINTS, SCHEDULERS, SEARCHERS, list_milestones,
                                        read_choice)
from torchmate_ray.tune.search.domains import find_domains
from torchmate_ray.tune.search.space import SearchSpace, sample_configs
from torchmate_ray.tune.sweep.budget import SweepBudget, build_budget, open_budget
from torchmate_ray.tune.sweep.budget_hooks import BudgetedSearch, BudgetEnd
from torchmate_ray.tune.sweep.extend import earlier_trials
from torchmate_ray.tune.sweep.interrupt import Interruption
from torchmate_ray.tune.sweep.local_ray import EarlyRay, LocalRay, connect_ray
from torchmate_ray.tune.sweep.progress import SweepProgress, build_progress
from torchmate_ray.tune.sweep.ray_output import quiet_ray_output
from torchmate_ray.tune.sweep.resources import ResourcePlan, cluster_nodes, local_nodes, plan_resources
from torchmate_ray.tune.sweep.result_record import FailureBudget, ResultRecord
from torchmate_ray.tune.sweep.start_from import random_start_arguments, read_start_points
from torchmate_ray.tune.sweep.storage import check_storage_shared
from torchmate_ray.tune.sweep.tracker_callbacks import build_tracker_callbacks
from torchmate_ray.tune.sweep.tune_environment import pending_trials, state_snapshots
from torchmate_ray.tune.trial.setup import TrialLayout
from torchmate_ray.tune.trial.train import train_trial

# Rungs in epochs done, as the trials report them: Tune's own training_iteration counts reports, and a
# trial continued from a checkpoint newer than Tune's state knew of would be behind in it.
TIME_ATTR = EPOCHS
# How long a multi-worker trial waits for its worker group on an autoscaling cluster (Ray Train's default is 60 s):
# a cloud node boots, mounts the shared storage and installs torch and the package (cluster.yaml's setup
# commands) in several minutes. Set RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S to choose another.
NODE_BOOT_S = 900.0


@dataclass
class SweepRun:
    """What a finished sweep hands to the report: Ray's results and where they live."""

    results: Any
    experiment_dir: Path
    plan: ResourcePlan
    wall_seconds: float
    first_result_at: float | None = None  # time.time() when the first trial's first epoch was reported (None: --verbose)
    ended_at: float = 0.0                 # time.time() when the last trial ended
    interrupted_by: str | None = None     # "SIGINT" or "SIGTERM": the sweep was stopped before its trials ended


def plan_sweep(space: SearchSpace) -> ResourcePlan:
    """The resource plan against this machine (local) or the cluster at ``address`` (connects to it), at the largest
    size its autoscaler can reach."""
    if space.settings.address:
        connect_ray(space.settings.address)
        alive, launchable = cluster_nodes()
        return plan_resources(space.settings, alive, space.num_trials, launchable)
    return plan_resources(space.settings, local_nodes(), space.num_trials)


def describe_plan(space: SearchSpace, plan: ResourcePlan) -> list[str]:
    """What ``--dry-run`` says of the plan: the resources, what the budgets hold of it, the configs it starts from."""
    s, start = space.settings, read_start_points(space)
    then = start.describe() if start else []
    if s.confirm_top:
        then.append(f"then confirms the {s.confirm_top} best configs, each with {s.confirm_seeds} other training seeds: "
                    f"{s.confirm_top * s.confirm_seeds} more trials of {space.max_epochs} epochs")
    if not has_budget(s):
        return [*plan.describe(), *then]
    _, choice, cfg = read_choice(SCHEDULERS, s.scheduler, "sweep.scheduler")
    rungs = choice.arguments(cfg, {"max_t": space.max_epochs})["reduction_factor"] if choice.rungs else None
    planned = planned_epochs(space.num_trials, space.max_epochs, list_milestones(s.scheduler, space.max_epochs), rungs)
    return [*plan.describe(), "budget:", *(f"  {line}" for line in describe_budget(
        s, planned, space.num_trials * space.max_epochs, plan.max_concurrent, plan.gpus_per_trial)), *then]


def run_sweep(space: SearchSpace, plan: ResourcePlan, experiment: Experiment, retry_errored: bool = False,
              verbose: bool = False, early_ray: EarlyRay | None = None, started_at: float | None = None,
              searcher: Any = None) -> SweepRun:
    """Run (or resume: ``experiment.resume``) the sweep of ``space`` under ``plan`` and return its results.

    Resuming keeps finished trials as they are and continues interrupted ones from their last
    checkpoint; errored ones continue from theirs only with ``retry_errored``. The config must
    already be validated (``validate_space``) and the experiment opened (``experiment.open_experiment``):
    nothing here checks names. The pre-flight (data, cache, Ray, storage) may still refuse the sweep, before
    anything is written; once it passes, the experiment keeps its invocation (``Experiment.accept``). Progress
    shows as a compact table (progress.py), or with ``verbose`` as Ray Tune's own output. ``early_ray``: the
    local Ray the command started before it knew the plan (used if it fits the plan). ``started_at``: the
    command's start (``time.time()``; None: now), from which a time budget counts. ``searcher``: one that hands
    out whole configs, instead of the sweep's (a confirmation's: confirm.py).
    """
    path = experiment.directory
    budget = build_budget(space.settings, plan.gpus_per_trial, space.max_epochs, path,
                          time.time() if started_at is None else started_at)
    run_config = build_run_config(space, path, verbose, budget)  # may refuse: before Ray starts
    trainable = prepare_trials(space, plan, experiment, early_ray)
    experiment.accept(plan.resources())  # as planned: GPU shares included
    # the command refused what it cannot search before (sweep/workflow.py); Optuna keeps its study in the experiment
    tune_config = build_tune_config(space, plan, path, budget)
    if searcher is not None:
        tune_config.search_alg, tune_config.max_concurrent_trials = searcher, plan.max_concurrent
    if experiment.extends and isinstance(tune_config.scheduler, RecordedASHA):  # judged against the earlier trials
        tune_config.scheduler.add_history(earlier_trials(path))
    # a searcher with a space of its own (Optuna's define-by-run) draws whole configs: Tune's must hold no domain
    param_space = {} if getattr(tune_config.search_alg, "draws_whole_configs", False) else prepare_trial_config(space)
    if budget is not None:
        open_budget(budget)
    started = time.monotonic()
    with quiet_ray_output(verbose), Interruption() as interruption, pending_trials(plan.max_concurrent), \
            state_snapshots(space.num_trials):
        tuner = (restore_tuner(path, trainable, param_space, run_config, retry_errored) if experiment.resume else
                 tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config))
        results = tuner.fit()
    if budget is not None:
        budget.flush()
    progress = find_progress(run_config)
    return SweepRun(results, path, plan, time.monotonic() - started,
                    first_result_at=progress.first_result_at if progress else None, ended_at=time.time(),
                    interrupted_by=interruption.signal_name)


def prepare_trials(space: SearchSpace, plan: ResourcePlan, experiment: Experiment, early_ray: EarlyRay | None) -> Any:
    """The pre-flight, then the trainable: the data prepared once, the shared cache built, Ray started (or joined)
    and the storage checked, the search-space file's classes shipped by value, the trials' layout and resources."""
    path, trial_config = experiment.directory, prepare_trial_config(space)
    data = configure_data(sample_configs(trial_config)[0])
    data.prepare_data()  # download once, here, not in every trial
    cache = build_shared_cache(data, trial_config)
    local_ray = LocalRay.for_trials(plan.workers, plan.cpus_per_worker)
    if early_ray is not None:
        early_ray.use(local_ray)
    connect_ray(space.settings.address, local_ray)
    if space.settings.address:
        check_storage_shared(path)
    ray.cloudpickle.register_pickle_by_value(_space_module(space))  # classes defined in the file reach the trials
    shared_cache = cache and ray.put(cache)
    del data, cache  # the object store holds the cache now
    s = space.settings
    _, scheduler, _ = read_choice(SCHEDULERS, s.scheduler, "sweep.scheduler")
    layout = TrialLayout(workers=plan.workers, cpus_per_worker=plan.cpus_per_worker,
                         gpus_per_worker=plan.gpus_per_worker, max_failures=s.max_failures,
                         keep=KeepRule(s.metric, s.mode, s.keep_best), experiment_dir=str(path),
                         tune_checkpoints=scheduler.tune_checkpoints,
                         train_storage=str(path / TRAIN_RUNS_DIR), data_cache=shared_cache,
                         worker_start_timeout_s=NODE_BOOT_S if plan.autoscaled else None)
    return tune.with_resources(tune.with_parameters(train_trial, layout=layout), plan.bundle)


def restore_tuner(path: Path, trainable: Any, param_space: Mapping[str, Any], run_config: RunConfig,
                  retry_errored: bool) -> tune.Tuner:
    """The sweep's Tuner restored from its experiment: finished trials kept, interrupted ones continued from their
    last checkpoint, errored ones too with ``retry_errored`` (their own errors then count again from 0)."""
    if retry_errored:  # (FailureBudget)
        for record in path.glob(f"*/{CODE_ERRORS}"):
            record.unlink()
    tuner = tune.Tuner.restore(str(path), trainable, param_space=param_space, resume_unfinished=True,
                               resume_errored=retry_errored)
    restore_run_output(tuner, run_config)
    return tuner


def restore_run_output(tuner: tune.Tuner, run_config: RunConfig) -> None:
    """Give a restored tuner this run's output settings (progress display or ``--verbose``): ``Tuner.restore``
    brings back the RunConfig saved when the sweep began (tuner.pkl) and takes no other (private.py)."""
    restored = restored_run_config(tuner)
    restored.callbacks, restored.verbose = run_config.callbacks, run_config.verbose


def find_progress(run_config: RunConfig) -> SweepProgress | None:
    return next((c for c in run_config.callbacks if isinstance(c, SweepProgress)), None)


def build_shared_cache(data: Any, config: Mapping[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """The ``dataset.cache`` splits as arrays, built once here for every trial (the sweep puts them in Ray's
    object store: each node then holds one copy that its trials read in place), or None: no cache, or
    trials whose data differ (``dataset`` or ``seed`` sampled) and build their own. Raises ConfigError
    for data that cannot be cached, before Ray starts."""
    if getattr(data, "cache", "none") == "none" or find_domains({"dataset": config.get("dataset"), "seed": config.get("seed")}):
        return None
    for stage, phases in (("fit", ("train", "val")), ("test", ("test",))):
        data.setup(stage)
        for phase in phases:
            data.get_cached_dataset(phase)
    return {phase: (x.numpy(), y.numpy()) for phase, (x, y) in data.cached_tensors.items()}


def build_tune_config(space: SearchSpace, plan: ResourcePlan, experiment_dir: Path | None = None,
                      budget: SweepBudget | None = None) -> TuneConfig:
    """Tune's config: the scheduler and searcher (each refused here, a dry run's as a real one's), concurrency.
    ``experiment_dir``: where a searcher that keeps state of its own (Optuna's study) keeps it; None: nowhere.
    ``budget``: draws a new trial only while it holds one (budget.BudgetedSearch)."""
    s = space.settings
    check_budget_plan(s, plan.gpus_per_trial)
    searcher = build_searcher(space, plan.max_concurrent, prepare_trial_config(space), experiment_dir)
    if budget is not None:  # around Tune's own search algorithm, which holds a Searcher (Optuna) to the concurrency
        if not isinstance(searcher, BasicVariantGenerator):
            searcher = SearchGenerator(ConcurrencyLimiter(searcher, plan.max_concurrent))
        searcher = BudgetedSearch(searcher, budget)
    return TuneConfig(metric=s.metric, mode=s.mode, num_samples=s.num_samples,
                      scheduler=build_scheduler(space), search_alg=searcher,
                      # Tune applies it to a Searcher (Optuna); random search takes it itself
                      max_concurrent_trials=(plan.max_concurrent if isinstance(searcher, Searcher) else None),
                      # Warm actors save a process start per trial; a multi-worker trial's driver is still
                      # inside TorchTrainer.fit when Tune tries to reset it, and that reset hangs the sweep.
                      reuse_actors=plan.workers == 1,
                      trial_dirname_creator=lambda trial: trial.trial_id)


def build_run_config(space: SearchSpace, path: Path, verbose: bool = False,
                     budget: SweepBudget | None = None) -> RunConfig:
    """Tune's run config. The checkpoints that go through Tune (PBT's) are all kept: Tune deletes old ones as new ones come, and
    a driver killed before its next state snapshot then resumes trials from a checkpoint that no longer
    exists ("Could not recover from checkpoint", seen with 1 and with 2 kept). Refuses a tracker
    (``sweep.tracker``) whose package or credentials are missing. ``budget``: the run's stopper."""
    s = space.settings
    return RunConfig(name=path.name, storage_path=str(path.parent), verbose=1 if verbose else 0, stop=budget,
                     callbacks=[ResultRecord(str(path)), FailureBudget(str(path), s.max_failures),
                                *build_tracker_callbacks(s.tracker, path),
                                *([BudgetEnd(budget)] if budget and (budget.seconds or budget.gpu_hours) else []),
                                *([] if verbose else [build_progress(space, TIME_ATTR, budget)])],
                     checkpoint_config=CheckpointConfig(num_to_keep=None),  # PBT's, through Tune: all kept
                     # Tune counts every failure alike: FailureBudget ends a trial whose own code raised once
                     # more than max_failures allows, and the rest of the budget is for processes that died
                     failure_config=FailureConfig(max_failures=-1 if s.max_failures < 0 else
                                                  s.max_failures + s.max_process_failures))


def build_scheduler(space: SearchSpace) -> Any:
    """The trial scheduler from ``sweep.scheduler`` (a name or ``{"name", "cfg"}``), rungs in epochs."""
    _, choice, cfg = read_choice(SCHEDULERS, space.settings.scheduler, "sweep.scheduler")
    arguments = choice.arguments(cfg, {"time_attr": TIME_ATTR, "max_t": space.max_epochs}, space.config)
    return call_checked(choice.load(), (), arguments, "sweep.scheduler.cfg")


def build_searcher(space: SearchSpace, max_concurrent: int | None = None, config: Mapping[str, Any] | None = None,
                   experiment_dir: Path | None = None) -> Any:
    """The searcher from ``sweep.search_alg`` (a name or ``{"name", "cfg"}``; see choices.SEARCHERS), over
    ``config`` (default: the space's), keeping its state in ``experiment_dir`` if it keeps any."""
    config, start = space.config if config is None else config, read_start_points(space)
    name, choice, cfg = read_choice(SEARCHERS, space.settings.search_alg, "sweep.search_alg")
    seed = space.settings.seed
    if start is not None and name == DEFAULT_SEARCHER:  # Tune's random search cannot start from them all
        choice, cfg, seed = SEARCHERS[DRAWS_FROM_POINTS], random_start_arguments(config, cfg.get("random_state", seed)), None
    elif choice.check is not None:
        choice.check(config)
    sweep = {"max_concurrent": max_concurrent or 0, "seed": seed, "metric": space.settings.metric,
             "mode": space.settings.mode, **({"experiment_dir": str(experiment_dir)} if experiment_dir else {}),
             **({"points_to_evaluate": start.points} if start else {})}
    arguments = choice.arguments(cfg, sweep, config)
    return call_checked(choice.load(), (), arguments, "sweep.search_alg.cfg")


def prepare_trial_config(space: SearchSpace) -> dict[str, Any]:
    """The config the trials get: a relative ``dataset.kwargs.root`` made absolute (trials run elsewhere)."""
    config = dict(space.config)
    dataset = config.get("dataset")
    root = dataset.get("kwargs", {}).get("root") if isinstance(dataset, Mapping) else None
    if isinstance(root, str) and not os.path.isabs(root):
        config["dataset"] = {**dataset, "kwargs": {**dataset["kwargs"], "root": os.path.abspath(root)}}
    return config


def _space_module(space: SearchSpace) -> Any:
    return sys.modules[module_name(space.path)]
