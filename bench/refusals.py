"""How long a refused `torchmate-tune` takes to end once it has printed its error line, as a user runs it.

Each case is a real run (no --dry-run) of lenet.py made bad in one way: a refusal while the space is validated,
by the plan, by the experiment directory, and one in the sweep's pre-flight (data that cannot be cached), which
comes after the local Ray has started. For each it prints the seconds from the command's start to its error line
on stderr, from that line to the process's end, and whether any process it started is left.

    .venv/bin/python bench/refusals.py [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray  # noqa: F401  (its psutil: ray/thirdparty_files)
import psutil

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "search_spaces" / "lenet.py"
CASES = {  # name: the command's arguments after the space file
    "unknown optimizer (validation)": ["--set", "optimizer={'name': 'Adamm'}"],
    "metric not logged (validation)": ["--metric", "val/acc"],
    "more CPUs than the machine (plan)": ["--cpus-per-worker", "1000"],
    "existing experiment, no --resume": ["--name", "taken"],
    "data that cannot be cached (pre-flight)": ["--set", "dataset.cache='memory'",
                                                "--set", "dataset.transforms={'pre': [{'name': 'RandomHorizontalFlip'}]}"],
}


def refuse(args: list[str], storage: Path) -> tuple[float, float, list[str]]:
    """Seconds to the error line, seconds from it to the end, and the descendants alive once it ended."""
    tool = str(Path(sys.executable).parent / "torchmate-tune")
    started = time.monotonic()
    process = subprocess.Popen([tool, str(LENET), "--storage-path", str(storage), "--max-epochs", "1", *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=storage)
    family: set[int] = set()
    line_at = None
    for line in process.stderr:
        if "torchmate-tune: error:" in line and line_at is None:
            line_at = time.monotonic()
            try:
                family = {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
            except psutil.Error:
                pass
    process.wait()
    ended = time.monotonic()
    assert process.returncode == 2 and line_at is not None, f"{args}: exit {process.returncode}"
    left = [f"{pid} {psutil.Process(pid).name()}" for pid in family
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return line_at - started, ended - line_at, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp)
        (storage / "taken").mkdir()
        (storage / "taken" / "tuner.pkl").write_text("")  # an experiment to Tune (Tuner.can_restore)
        print(f"{'case':42} {'to the line':>12} {'line to end':>12}  left")
        tails = []
        for name, args in CASES.items():
            timed = [refuse(args, storage) for _ in range(runs)]
            tails += [tail for _, tail, _ in timed]
            left = sorted({process for _, _, found in timed for process in found})
            print(f"{name:42} {statistics.fmean(t for t, _, _ in timed):10.2f} s "
                  f"{max(tail for _, tail, _ in timed):10.2f} s  {', '.join(left) or 'none'}")
        print(f"line to end over {len(tails)} refusals: max {max(tails):.2f} s, mean {statistics.fmean(tails):.2f} s "
              f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
