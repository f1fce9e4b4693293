"""What saved bytecode is worth: the default sweep with it, and as a venv without it runs.

Where PYTHONDONTWRITEBYTECODE is set (this machine's image sets it, and CI's, by its timings), Python never
saves the bytecode it compiles on import: a venv installed with ``pip --no-compile`` compiles torch, Lightning and
Ray again in every process of every sweep (the driver, each trial's process). The Makefile's commands run without
that variable, so that the first process to import a module saves its bytecode in .venv.
The run without bytecode points PYTHONPYCACHEPREFIX, which every Ray process inherits, at an empty directory:
each process then finds no bytecode, as in such a venv.

    .venv/bin/python bench/bytecode.py [--space search_spaces/lenet.py] [--runs 2]

Prints each run's milestones (the sweep's own summary.json "timings") and the ratio of the mean ends,
without / with (the runs alternate, so that both see the same machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_sweep(space: Path, storage: Path, name: str, env: dict[str, str]) -> dict[str, float]:
    """The sweep's milestones, in seconds from the command's start."""
    tool = str(Path(sys.executable).parent / "torchmate-tune")
    subprocess.run([tool, str(space), "--storage-path", str(storage), "--name", name], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return json.loads((storage / name / "summary.json").read_text())["timings"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "lenet.py")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    ends: dict[str, list[float]] = {"compiled": [], "no bytecode": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for label in ends:
                env = dict(os.environ)
                if label == "no bytecode":
                    env["PYTHONPYCACHEPREFIX"] = str(Path(tmp, f"empty-{run}"))
                    env["PYTHONDONTWRITEBYTECODE"] = "1"
                timings = run_sweep(args.space, Path(tmp, "results"), f"{label.replace(' ', '-')}-{run}", env)
                ends[label].append(timings["end_s"])
                print(f"{label:<12} experiment line {timings['experiment_line_s']:5.1f} s, first epoch "
                      f"{timings['first_epoch_s']:5.1f} s, end {timings['end_s']:5.1f} s", flush=True)
    compiled, cold = statistics.fmean(ends["compiled"]), statistics.fmean(ends["no bytecode"])
    print(f"mean end: compiled {compiled:.1f} s, no bytecode {cold:.1f} s; ratio {cold / compiled:.2f}")


if __name__ == "__main__":
    main()
