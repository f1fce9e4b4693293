"""Command lines: ``torchmate-tune SPACE.py`` and ``torchmate-train CONFIG.py``.

Parse, call the library, print, return an exit code: 0 done (a sweep with no errored trial); 1 a sweep
that finished with errored trials; 2 bad input (one line on stderr: ``<prog>: error: <key.path>: <why>;
<fix>``, and nothing was started); 130 (SIGINT, Ctrl-C) or 143 (SIGTERM): the sweep was stopped before its
trials ended, its results so far are written, and ``--resume`` continues it.
"""

from __future__ import annotations

import time

# The command's start: the console scripts import this module first, before anything heavy. A sweep's
# milestones (summary.json "timings") count from here (from the call, when tune_main is called in-process).
COMMAND_START = time.time()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Sequence  # noqa: E402

from torchmate_ray.cli_args import (build_report_parser, build_train_parser,  # noqa: E402,F401  (imports nothing heavy)
                                    build_tune_parser, read_extend_args)
from torchmate_ray.errors import ConfigError  # noqa: E402  (the standard library only)

if TYPE_CHECKING:
    from torchmate_ray.tune.sweep.local_ray import EarlyRay

EXIT_OK, EXIT_TRIALS_ERRORED, EXIT_BAD_INPUT = 0, 1, 2


def train_main(argv: Sequence[str] | None = None) -> int:
    """``torchmate-train CONFIG.py [--set KEY.PATH=VALUE ...] [--ckpt PATH [--test]]``: fit (from the checkpoint's
    weights, with ``--ckpt``) and test, or with ``--test`` only validate and test; print the final metrics."""
    args = build_train_parser().parse_args(argv)
    from torchmate_ray.lightning.files import load_config_file
    from torchmate_ray.lightning.train import run_evaluation, run_training

    trainer_kwargs = {"accelerator": args.accelerator, "enable_progress_bar": sys.stderr.isatty()}
    if args.root_dir:
        trainer_kwargs["default_root_dir"] = args.root_dir
    try:
        if args.test and not args.ckpt:
            raise ConfigError("--test", "tests a trained model: give it with --ckpt (e.g. <experiment>/best/model.ckpt)")
        config = load_config_file(args.config_file, args.overrides)
        if args.test:
            metrics = run_evaluation(config, args.ckpt, trainer_kwargs)
        else:
            metrics = run_training(config, trainer_kwargs, args.ckpt)
    except ConfigError as err:
        print(f"torchmate-train: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    width = max(map(len, metrics), default=0)
    print("final metrics:")
    for name in sorted(metrics):
        print(f"  {name:<{width}}  {metrics[name]:.4f}")
    return EXIT_OK


def train_entry() -> None:
    sys.exit(train_main())


def tune_main(argv: Sequence[str] | None = None, started_at: float | None = None) -> int:
    """``torchmate-tune SPACE.py [...]``: validate, plan, sweep, report (``torchmate-tune report ...``: report_main).

    A sweep on this machine starts its Ray at once, in the background (local_ray.EarlyRay), while this
    thread imports Lightning, validates the space and builds the shared cache; a refused sweep shuts it
    down again before the process ends. ``started_at``: the command's start (``time.time()``), from
    which its milestones count; None: now.
    """
    started_at = time.time() if started_at is None else started_at
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    args = read_extend_args(argv[1:]) if argv[:1] == ["extend"] else build_tune_parser().parse_args(argv)
    if args.tracker:  # a missing package is refused before Ray starts
        from torchmate_ray.tune.search.trackers import check_tracker

        try:
            check_tracker(args.tracker, "--tracker")
        except ConfigError as err:
            print(f"torchmate-tune: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
    early_ray = start_local_ray(args)
    try:
        return run_tune(args, early_ray, started_at)
    finally:  # refused or failed: Ray shuts down in its own thread, which the process waits for before it ends
        if early_ray is not None:
            early_ray.close(wait=False)


def run_tune(args: argparse.Namespace, early_ray: EarlyRay | None, started_at: float) -> int:
    """tune_main once the command line is read (and Ray started, ``early_ray``): the sweep (sweep/workflow.py), what
    it tells the user, and the exit code."""
    from torchmate_ray.tune.sweep.interrupt import StoppedAtOnce, exit_code
    from torchmate_ray.tune.sweep.workflow import run_sweep_command

    try:
        outcome = run_sweep_command(args, early_ray, started_at)
    except StoppedAtOnce as stop:  # a second Ctrl-C: nothing more is written; the last saved state resumes
        print(f"torchmate-tune: {stop.signal_name} again: stopped at once; continue it with: torchmate-tune "
              f"{stop.directory} --resume", file=sys.stderr)
        return exit_code(stop.signal_name)
    except ConfigError as err:  # refused: nothing was written
        print(f"torchmate-tune: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if outcome is None:  # a dry run
        return EXIT_OK
    print(outcome.text)
    if outcome.interrupted_by:
        return exit_code(outcome.interrupted_by)
    return EXIT_TRIALS_ERRORED if outcome.summary["trials"]["errored"] else EXIT_OK


def start_local_ray(args: argparse.Namespace) -> EarlyRay | None:
    """Start the sweep's own Ray in the background (a ``local_ray.EarlyRay``), or None: a ``--dry-run``, or a
    sweep on a cluster (``--address``, or an experiment that ran on one), or a file or directory that
    resolve_invocation will refuse. Imports Ray, not Lightning."""
    from torchmate_ray.tune.experiment.directory import read_invocation

    path = Path(args.space_file)
    saved = read_invocation(path) if (args.resume or args.extend) and path.is_dir() else None
    settings, resources = (saved.settings, saved.resources) if saved else ({}, {})
    if args.address or settings.get("address"):
        return None
    # Ray 2.60 turns 127.0.0.1 into the machine's reachable IP and listens on every interface; this
    # switch (meant for single-node macOS/Windows) keeps a local sweep's Ray on the loopback interface.
    # It must be set before Ray is first imported (here, or by the search-space file).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if args.dry_run or not (path.is_file() or saved):
        return None
    from torchmate_ray.tune.sweep.local_ray import EarlyRay, LocalRay

    # the trials as the command line (or the experiment) says; the sweep restarts Ray if its file says otherwise
    workers = args.workers or resources.get("workers") or 1
    cpus = args.cpus_per_worker if args.cpus_per_worker is not None else resources.get("cpus_per_worker", 1)
    return EarlyRay(LocalRay.for_trials(workers, cpus))


def report_main(argv: Sequence[str]) -> int:
    """``torchmate-tune report EXPERIMENT_DIR [DIR_B] [--output PATH]``: write the page, print where."""
    args = build_report_parser().parse_args(argv)
    from torchmate_ray.tune.results.page import write_comparison, write_report

    try:
        if args.other_dir:
            path = write_comparison(args.experiment_dir, args.other_dir, args.output)
        else:
            path = write_report(args.experiment_dir, output=args.output)
    except ConfigError as err:
        print(f"torchmate-tune: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report: {path}")
    return EXIT_OK


def tune_entry() -> None:
    exit_now(tune_main(started_at=COMMAND_START))


def exit_now(code: int) -> None:
    """End the process with ``code``: its threads end and its exit handlers run as at a normal exit, but Python's
    teardown of the modules' objects does not (with Torch and Ray loaded, 2 s after every sweep on 2 CPUs,
    in native code)."""
    import threading

    from torchmate_ray.tune.private import run_exit_handlers

    local_ray = sys.modules.get("torchmate_ray.tune.sweep.local_ray")
    if local_ray is not None and local_ray.EarlyRay.still_closing():
        local_ray.kill_early_ray()  # refused after Ray started early: nothing of it was used
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    for thread in threading.enumerate():  # what a normal exit waits for (the Ray a refused sweep shuts down)
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    run_exit_handlers()  # Ray's and logging's handlers: everything written is flushed and closed
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
