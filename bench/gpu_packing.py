"""Aggregate throughput with k = 1, 4, 8 trials packed on each GPU (GPU machines only), then the 50-trial
ASHA sweep of bench/lenet_shaped.py (LeNet5, 60,000 MNIST-shaped images, cache on the device).

    .venv/bin/python bench/gpu_packing.py [--trials 8] [--epochs 2] [--sweep-trials 50]

Each k runs the same ``--trials`` FIFO trials of ``--epochs`` epochs with ``--gpus-per-worker 1/k``, in a
fresh torchmate-tune process; throughput is trial-epochs per second of the command's wall time. Prints
each k against k = 1 (want k = 8 >= 6x), then the 50-trial sweep's wall time and summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SPACE = Path(__file__).resolve().parent / "lenet_shaped.py"


def run_sweep(storage: str, name: str, *flags: str) -> tuple[float, dict]:
    tool = str(Path(sys.executable).parent / "torchmate-tune")
    started = time.monotonic()
    result = subprocess.run([tool, str(SPACE), "--storage-path", storage, "--name", name, *flags],
                            capture_output=True, text=True, env={**os.environ, "TORCHMATE_OFFLINE": "1"})
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"torchmate-tune {' '.join(flags)} failed:\n{result.stderr[-3000:]}")
    return wall, json.loads((Path(storage) / name / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sweep-trials", type=int, default=50, help="the ASHA sweep's trials (0: skip it)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("no GPU here: this benchmark packs trials onto GPUs (run it on a GPU machine)")
    gpus = torch.cuda.device_count()
    print(f"{args.trials} trials x {args.epochs} epochs of LeNet5 on 60,000 MNIST-shaped images, "
          f"{gpus} x {torch.cuda.get_device_name()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as storage:
        base = None
        for k in (1, 4, 8):
            cpus = min(1.0, os.cpu_count() / (k * gpus))
            wall, summary = run_sweep(storage, f"k{k}", "--num-samples", str(args.trials), "--max-epochs",
                                      str(args.epochs), "--scheduler", "fifo", "--gpus-per-worker", str(1 / k),
                                      "--cpus-per-worker", f"{cpus:g}")
            throughput = summary["epochs_run"] / wall
            base = base or throughput
            print(f"  k = {k} trials per GPU: {wall:6.1f} s, {throughput:5.2f} trial-epochs/s, "
                  f"{throughput / base:4.1f}x k = 1")
        if args.sweep_trials:
            wall, summary = run_sweep(storage, "asha", "--num-samples", str(args.sweep_trials))
            print(f"{args.sweep_trials}-trial ASHA sweep (default packing): {wall:.0f} s wall, {summary['trials']}, "
                  f"{summary['epochs_run']} of {summary['epoch_budget']} epochs, best {summary['metric']} "
                  f"{summary['best_value']:.4f}")


if __name__ == "__main__":
    main()
