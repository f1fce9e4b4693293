"""A sweep from the command line's request to its report: the invocation resolved, the space validated, the plan
made (a dry run stops there), the experiment opened, the search run, its winners confirmed if asked, the results
and report written. The command line (cli.py) only reads its arguments, and turns what this returns, or raises,
into what it prints and its exit code.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchmate_ray.tune.experiment.directory import (CONFIRM_STAGE, Experiment, Invocation, open_experiment,
                                                     resolve_invocation)
from torchmate_ray.tune.results.finish import finish_sweep
from torchmate_ray.tune.search.space import SearchSpace, describe_space, validate_space
from torchmate_ray.tune.sweep.confirm import confirmation_due, prepare_confirmation, resumed_confirmation
from torchmate_ray.tune.sweep.extend import extend_experiment
from torchmate_ray.tune.sweep.interrupt import StoppedAtOnce
from torchmate_ray.tune.sweep.local_ray import EarlyRay
from torchmate_ray.tune.sweep.resources import ResourcePlan
from torchmate_ray.tune.sweep.run import SweepRun, build_tune_config, describe_plan, plan_sweep, run_sweep

# what a command line may set of the sweep's settings and resources, by the argparse destination
SETTING_ARGS = ("num_samples", "metric", "mode", "scheduler", "search_alg", "seed", "max_concurrent", "name",
                "storage_path", "address", "tracker", "time_budget", "epoch_budget", "gpu_hours", "start_from",
                "start_top", "confirm_top", "confirm_seeds")
RESOURCE_ARGS = ("workers", "cpus_per_worker", "gpus_per_worker")


@dataclass
class SweepOutcome:
    """A sweep that ran: its summary (summary.json's), what to tell the user, and the signal that stopped it."""

    summary: dict[str, Any]
    text: str
    interrupted_by: str | None


def run_sweep_command(args: argparse.Namespace, early_ray: EarlyRay | None, started_at: float) -> SweepOutcome | None:
    """The sweep the command line asks for (``args``: ``torchmate-tune``'s, Ray started early as ``early_ray``), and
    its report; None for a dry run (its plan is printed). Raises ConfigError for bad input (nothing was written), and
    StoppedAtOnce, with ``directory`` set, for a second Ctrl-C."""
    extension = extend_experiment(args.space_file, args.num_samples) if args.extend else None
    invocation = extension.invocation if extension else resolve_invocation(given_invocation(args), args.resume)
    if extension and args.address:
        invocation.settings["address"] = args.address
    space = invocation.load_space()
    validate_space(space)
    plan = plan_sweep(space)
    build_tune_config(space, plan)  # the scheduler and searcher refuse here, in a dry run as in a real one
    if args.dry_run:
        print(describe_space(space, describe_plan(space, plan)))
        return None
    experiment = extension or open_experiment(space, invocation, args.resume)
    print(f"experiment: {experiment.directory}  (continue it with: torchmate-tune {experiment.directory} --resume)",
          flush=True)
    experiment_line_at = time.time()
    try:
        run = search_and_confirm(space, plan, experiment, args, early_ray, started_at)
    except StoppedAtOnce as stop:  # nothing more is written; the last saved state resumes
        stop.directory = experiment.directory
        raise
    milestones = {"experiment_line_s": experiment_line_at, "first_epoch_s": run.first_result_at, "end_s": run.ended_at}
    return report_sweep(run, space, early_ray, milestones, started_at)


def search_and_confirm(space: SearchSpace, plan: ResourcePlan, experiment: Experiment, args: argparse.Namespace,
                       early_ray: EarlyRay | None, started_at: float) -> SweepRun:
    """The search (or what is left of it, resumed), then the confirmation of its winners if it is due."""
    resumed_confirming = args.resume and experiment.invocation.stage == CONFIRM_STAGE
    # a resumed confirmation (the sweep's last Tune run) goes on as it ran: confirm.py
    space_run, searcher = (resumed_confirmation(space, experiment.directory) if resumed_confirming
                           else (space, None))
    run = run_sweep(space_run, plan, experiment, retry_errored=args.retry_errored, verbose=args.verbose,
                    early_ray=early_ray, started_at=started_at, searcher=searcher)
    if not run.interrupted_by and confirmation_due(space, experiment.directory):
        run = confirm_winners(space, plan, experiment, run, args.verbose, early_ray)
    return run


def confirm_winners(space: SearchSpace, plan: ResourcePlan, experiment: Experiment, search: SweepRun, verbose: bool,
                    early_ray: EarlyRay | None) -> SweepRun:
    """After the search (``search``), its best configs trained again with other seeds (confirm.py); the two runs as
    one for the report."""
    confirm_space, searcher = prepare_confirmation(space, experiment.directory, search.results)
    s = space.settings
    print(f"confirming the {s.confirm_top} best configs with {s.confirm_seeds} other training seeds each: "
          f"{confirm_space.settings.num_samples} trials", flush=True)
    confirming = dataclasses.replace(experiment, resume=False, saved=None,
                                     invocation=dataclasses.replace(experiment.invocation, stage=CONFIRM_STAGE))
    run = run_sweep(confirm_space, plan, confirming, verbose=verbose, early_ray=early_ray, searcher=searcher)
    return dataclasses.replace(run, wall_seconds=search.wall_seconds + run.wall_seconds,
                               first_result_at=search.first_result_at)


def report_sweep(run: SweepRun, space: SearchSpace, early_ray: EarlyRay | None,
                 milestones: dict[str, float | None], started_at: float) -> SweepOutcome:
    """Write the finished (or interrupted) sweep's results and report. ``milestones``: when each happened
    (``time.time()``), recorded as seconds since ``started_at``."""
    if early_ray is not None:
        early_ray.close(wait=False)  # Ray shuts down while the report is written
    timings = {key: None if at is None else round(at - started_at, 2) for key, at in milestones.items()}
    summary, text = finish_sweep(run.experiment_dir, space, run.wall_seconds, timings, run.interrupted_by)
    if early_ray is not None:
        early_ray.close()
    return SweepOutcome(summary, text, run.interrupted_by)


def given_invocation(args: argparse.Namespace) -> Invocation:
    """What the command line says to run: the file, ``--set``, ``--max-epochs``, the settings and resources given."""
    settings = {key: getattr(args, key) for key in SETTING_ARGS if getattr(args, key) is not None}
    if "start_from" in settings:  # read again by a resume, which may run elsewhere
        settings["start_from"] = str(Path(settings["start_from"]).expanduser().resolve())
    return Invocation(space_file=args.space_file, overrides=args.overrides, max_epochs=args.max_epochs,
                      settings=settings,
                      resources={key: getattr(args, key) for key in RESOURCE_ARGS if getattr(args, key) is not None})
