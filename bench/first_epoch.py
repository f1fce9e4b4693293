"""Fixed costs, the CPU proxy for a GPU machine's: from torchmate-tune's start to its first reported epoch,
against the least any sweep must spend before it: importing Lightning and Ray Tune, and training one epoch.

1. ``torchmate-tune search_spaces/lenet.py --num-samples 2 --max-epochs 1`` in a fresh process: the time
   from its start to its experiment line (read from its output as it comes), to its first trial's first
   reported epoch (the moment that trial's result.json, which Tune's driver writes and flushes on each
   report, is first seen non-empty; polled every 10 ms) and to its end;
2. the least: ``python -c "import lightning, ray.tune"`` timed as a process, plus one epoch (validation
   included) of the config of that same first trial (its params.json), built with configure_all and the
   trial's Trainer settings and fitted in this process, data loading included.

    .venv/bin/python bench/first_epoch.py [--space search_spaces/lenet.py]

Prints the steps and the ratio (1) / (2) (want <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.01


def read_lines(stream, seen: dict[str, float], started: float, lines: list[str]) -> None:
    """Keep each line of ``stream``; note when the experiment line came."""
    for line in stream:
        lines.append(line)
        if line.startswith("experiment:") and "experiment" not in seen:
            seen["experiment"] = time.monotonic() - started


def first_result(experiment: Path) -> Path | None:
    """The result.json of a trial that has reported, if any has."""
    if not experiment.is_dir():
        return None
    for path in experiment.glob("*/result.json"):
        try:
            if path.stat().st_size > 0:
                return path
        except OSError:
            continue
    return None


def run_sweep(space: Path, storage: str) -> tuple[dict[str, float], Path]:
    """Run the 2-trial, 1-epoch sweep; when each step came (seconds from the command's start) and the first
    trial's directory."""
    tool = str(Path(sys.executable).parent / "torchmate-tune")
    command = [tool, str(space), "--num-samples", "2", "--max-epochs", "1", "--storage-path", storage,
               "--name", "x"]
    seen: dict[str, float] = {}
    lines: list[str] = []
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "TORCHMATE_OFFLINE": "1"}, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reader = threading.Thread(target=read_lines, args=(process.stdout, seen, started, lines), daemon=True)
    reader.start()
    first = None
    while first is None and process.poll() is None:
        first = first_result(Path(storage) / "x")
        if first is None:
            time.sleep(POLL_S)
        else:
            seen["first epoch"] = time.monotonic() - started
    process.wait()
    seen["end"] = time.monotonic() - started
    reader.join(timeout=5)
    first = first or first_result(Path(storage) / "x")
    if process.returncode != 0 or first is None:
        sys.exit(f"torchmate-tune failed (exit {process.returncode}) or reported nothing:\n"
                 f"{''.join(lines)[-3000:]}")
    seen.setdefault("first epoch", seen["end"])  # it ended before the poll saw the file
    return seen, first.parent


def import_seconds() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import lightning, ray.tune"], check=True, cwd=ROOT)
    return time.monotonic() - started


def one_epoch_seconds(trial_dir: Path) -> float:
    """configure_all + fit of one epoch of the trial's own config, in this process (imports done before)."""
    from torchmate_ray.lightning.configure import configure_all
    from torchmate_ray.tune.trial.setup import TRIAL_TRAINER_DEFAULTS

    config = json.loads((trial_dir / "params.json").read_text())
    config["training"] = {**(config.get("training") or {}), "max_epochs": 1}
    started = time.monotonic()
    trainer, model, data = configure_all(config, dict(TRIAL_TRAINER_DEFAULTS))
    trainer.fit(model, data)
    return time.monotonic() - started


def quiet_lightning() -> None:
    """No info lines ("GPU available: ...", tips) nor deprecation warnings from Lightning between the figures."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|does not have many workers|litlogger).*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "lenet.py"),
                        help="the search space (default search_spaces/lenet.py)")
    args = parser.parse_args()
    quiet_lightning()
    space = Path(args.space).resolve()
    if not space.is_file():
        parser.error(f"--space {args.space}: no such file")
    os.environ.setdefault("TORCHMATE_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as storage:
        seen, trial_dir = run_sweep(space, storage)
        imports = import_seconds()
        import lightning.pytorch  # noqa: F401  (imported before the epoch is timed, as counted above)

        epoch = one_epoch_seconds(trial_dir)
    least = imports + epoch
    print(f"torchmate-tune {space.name} --num-samples 2 --max-epochs 1, from the command's start:")
    for step in ("experiment", "first epoch", "end"):
        label = step + " line" if step == "experiment" else step
        print(f"  {label:<18} {seen.get(step, float('nan')):6.1f} s")
    print(f"the least: import lightning, ray.tune {imports:5.1f} s + one epoch of {trial_dir.name} in-process "
          f"{epoch:5.1f} s = {least:5.1f} s")
    print(f"first reported epoch / (imports + one epoch): {seen['first epoch'] / least:.2f}  (want <= 1.5)")


if __name__ == "__main__":
    main()
