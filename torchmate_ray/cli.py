"""Command lines: ``torchmate-train CONFIG.py``. Parse, call the library, print, return an exit code.

Exit codes: 0 done; 2 bad input (one line on stderr: ``<prog>: error: <key.path>: <why>; <fix>``,
and nothing was started).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchmate-train",
        description="Train one config (a Python file defining `config`) with PyTorch Lightning, without Ray.")
    parser.add_argument("config_file", help="Python file that defines `config` (e.g. a sweep's best_config.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a config value, e.g. --set optimizer.cfg.lr=0.01 (repeatable)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (default: auto)")
    parser.add_argument("--root-dir", default=None, help="where Lightning writes logs and checkpoints (default: .)")
    return parser


def train_main(argv: Sequence[str] | None = None) -> int:
    """``torchmate-train CONFIG.py [--set KEY.PATH=VALUE ...]``: fit, test, print the final metrics."""
    args = build_train_parser().parse_args(argv)
    from torchmate_ray.lightning.errors import ConfigError
    from torchmate_ray.lightning.files import load_config_file
    from torchmate_ray.lightning.train import run_training

    trainer_kwargs = {"accelerator": args.accelerator, "enable_progress_bar": sys.stderr.isatty()}
    if args.root_dir:
        trainer_kwargs["default_root_dir"] = args.root_dir
    try:
        config = load_config_file(args.config_file, args.overrides)
        metrics = run_training(config, trainer_kwargs)
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
