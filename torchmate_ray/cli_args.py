"""The command lines' parsers: ``torchmate-train``, ``torchmate-tune`` and ``torchmate-tune report``.

Imports nothing heavy: the command reads its arguments before Ray and Lightning are imported.
"""

from __future__ import annotations

import argparse

from torchmate_ray.tune.records.files import MLFLOW_STORE
from torchmate_ray.tune.search.choices import SCHEDULERS, SEARCHERS
from torchmate_ray.tune.search.trackers import DEFAULT_TRACKER, TRACKERS
from torchmate_ray.tune.sweep.tracker_callbacks import WANDB_DEFAULT_PROJECT


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchmate-train",
        description="Train one config (a Python file defining `config`) with PyTorch Lightning, without Ray.")
    parser.add_argument("config_file", help="Python file that defines `config` (e.g. a sweep's best_config.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set optimizer.cfg.lr=0.01 (repeatable)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    parser.add_argument("--root-dir", default=None, help="where Lightning writes logs and checkpoints (default: .)")
    parser.add_argument("--ckpt", metavar="PATH", help="a trained model (e.g. a sweep's best/model.ckpt): with --test, "
                        "its metrics; without, fine-tune from its weights (a fresh optimizer, training.max_epochs)")
    parser.add_argument("--test", action="store_true", help="with --ckpt: validate and test the model, no training")
    return parser


def build_tune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchmate-tune",
        description="Run an ASHA-scheduled Ray Tune sweep over a search-space file (a config with tune domains).",
        epilog="Exit codes: 0 done, 1 some trials errored, 2 bad input, 130/143 interrupted (Ctrl-C/SIGTERM; "
               "continue with --resume). An experiment's offline HTML report (also written when a sweep ends): torchmate-tune report "
               "EXPERIMENT_DIR [DIR_B] [--output PATH]; see torchmate-tune report --help. More trials in a finished "
               "experiment: torchmate-tune extend EXPERIMENT_DIR --num-samples N")
    parser.add_argument("space_file", metavar="SPACE.py|EXPERIMENT_DIR",
                        help="Python file that defines `config` (with tune domains) and optionally `sweep`; or, with "
                             "--resume, the directory of an experiment to continue")
    parser.add_argument("--num-samples", type=int, help="number of trials (default: sweep['num_samples'] or 10)")
    parser.add_argument("--max-epochs", type=int, help="epochs per trial; also ASHA's max_t (sets training.max_epochs)")
    parser.add_argument("--metric", help="metric to optimize, one the learner logs (e.g. val/accuracy)")
    parser.add_argument("--mode", choices=["min", "max"], help="minimize or maximize --metric")
    parser.add_argument("--scheduler", choices=list(SCHEDULERS))
    parser.add_argument("--search", dest="search_alg", choices=list(SEARCHERS))
    parser.add_argument("--seed", type=int, help="the search's seed: the same N draws the same configs (sweep['seed']); "
                        "training's own seed is the config's 'seed'")
    parser.add_argument("--workers-per-trial", type=int, dest="workers")
    parser.add_argument("--cpus-per-worker", type=float)
    parser.add_argument("--gpus-per-worker", type=float)
    parser.add_argument("--max-concurrent", type=int, help="most trials at once (default: what the cluster holds)")
    parser.add_argument("--address", help="join a running Ray cluster: auto or HOST:PORT (default: start a local Ray)")
    parser.add_argument("--storage-path", help="where experiments live (default: ./ray_results)")
    parser.add_argument("--name", help="experiment name (default: <space file>-<date>-<time>); reuse it with --resume")
    parser.add_argument("--resume", action="store_true", help="continue the experiment --storage-path/--name (or "
                        "EXPERIMENT_DIR): finished trials are kept, interrupted ones go on from their checkpoint")
    parser.add_argument("--retry-errored", action="store_true", help="with --resume: also continue errored trials")
    parser.add_argument("--time-budget", metavar="DURATION", help="the sweep's wall time, e.g. 90s, 30m, 1.5h: no trial "
                        "starts that cannot report an epoch in it, running ones stop at the epoch that would overrun "
                        "it, the summary lists what was cut (sweep['time_budget'])")
    parser.add_argument("--epoch-budget", type=int, metavar="N", help="epochs of all trials together, never exceeded "
                        "(sweep['epoch_budget'])")
    parser.add_argument("--gpu-hours", type=float, metavar="H", help="GPU-hours of all trials together (each trial's "
                        "GPUs x its time; sweep['gpu_hours'])")
    parser.add_argument("--start-from", metavar="EXPERIMENT_DIR", help="first run the best configs of that experiment "
                        "(their values of this space's domains; the rest drawn; sweep['start_from'])")
    parser.add_argument("--start-top", type=int, metavar="K", help="how many of its best configs (default 3)")
    parser.add_argument("--confirm-top", type=int, metavar="K", help="after the search, train its K best configs again "
                        "with other training seeds (full epochs, no early stopping) and rank them by the mean "
                        "(sweep['confirm_top'])")
    parser.add_argument("--seeds", type=int, dest="confirm_seeds", metavar="S", help="with --confirm-top: how many "
                        "other seeds each (default 3)")
    parser.add_argument("--dry-run", action="store_true", help="print domains, settings and the resource plan; run nothing")
    parser.add_argument("--tracker", choices=list(TRACKERS), help=(
        f"one tracker run per trial, grouped by the sweep's name (default: sweep['tracker'] or {DEFAULT_TRACKER}: "
        "Ray's event files in each trial's directory, written whatever the choice). mlflow: experiment = the sweep's "
        f"name, at MLFLOW_TRACKING_URI or else file:EXPERIMENT_DIR/{MLFLOW_STORE}; wandb: group = the sweep's "
        f"name, project WANDB_PROJECT or {WANDB_DEFAULT_PROJECT}, WANDB_API_KEY or WANDB_MODE=offline (runs under "
        "WANDB_DIR or EXPERIMENT_DIR/wandb). Credentials come from the environment only; pip install "
        "'torchmate_ray[trackers]' installs both"))
    parser.add_argument("--verbose", action="store_true", help="Ray Tune's own progress output instead of the compact "
                        "table (a terminal) or one line per ended trial (a log)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value (a tune domain or a fixed value), repeatable")
    parser.set_defaults(extend=False)
    return parser


def build_extend_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchmate-tune extend",
        description="Run N more trials in a finished experiment, with its space and settings: the trials that ran are "
                    "kept, Optuna's study (--search optuna) and ASHA's rungs start from them, random search draws new "
                    "configs. The results and the report then cover every trial.")
    parser.add_argument("experiment_dir", metavar="EXPERIMENT_DIR", help="a finished experiment (<storage_path>/<name>)")
    parser.add_argument("--num-samples", type=int, required=True, help="how many trials to add")
    parser.add_argument("--address", help="run them on a Ray cluster: auto or HOST:PORT (default: as the sweep ran)")
    parser.add_argument("--dry-run", action="store_true", help="print what would run; run nothing")
    parser.add_argument("--verbose", action="store_true", help="Ray Tune's own progress output")
    return parser


def read_extend_args(argv: list[str]) -> argparse.Namespace:
    """``extend``'s command line, as the sweep's own (``build_tune_parser``'s) with ``extend`` set."""
    extend = build_extend_parser().parse_args(argv)
    args = build_tune_parser().parse_args([extend.experiment_dir])
    args.extend, args.num_samples, args.dry_run, args.verbose = True, extend.num_samples, extend.dry_run, extend.verbose
    args.address = extend.address
    return args


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchmate-tune report",
        description="Write an experiment's offline report: one self-contained HTML page (no server, nothing "
                    "fetched) with learning curves, ASHA rung survival, each hyperparameter against the metric, "
                    "parallel coordinates, the leaderboard and the compute spent with and without early stopping. "
                    "Works on a finished, running or interrupted experiment. With DIR_B: two experiments side by side.")
    parser.add_argument("experiment_dir", metavar="EXPERIMENT_DIR", help="an experiment (<storage_path>/<name>)")
    parser.add_argument("other_dir", metavar="DIR_B", nargs="?", help="a second experiment to compare with the first")
    parser.add_argument("--output", metavar="PATH", help="where to write the page (default: EXPERIMENT_DIR/report.html, "
                        "or with DIR_B: EXPERIMENT_DIR/compare-<DIR_B's name>.html); a report's PNGs always go to "
                        "EXPERIMENT_DIR/report/")
    return parser
