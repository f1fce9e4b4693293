"""How late the driver records what the trials report: for every epoch of a sweep, the time from the trial
reporting it (``reported_at`` in the trial's own ``epochs.jsonl``) to the driver writing its row in the
trial's ``result.json`` (``recorded_at``). What a killed driver could lose is what lies in that gap (a
resumed trial reports it again from its own record, so it is not lost, only late).

    .venv/bin/python bench/record_lag.py [--space bench/lenet_seeded.py] [--num-samples 50] [EXPERIMENT_DIR]

With an experiment directory, reads that one; else runs the sweep first (``torchmate-tune SPACE
--num-samples N``, the main job of bench/main_job.py) in a temporary directory. Prints the lag's mean, median,
95th percentile and maximum, and the epochs read.
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


def lags(experiment: Path) -> list[float]:
    """Seconds from report to record, one per epoch that has both (epochs reported again after a resume: the last)."""
    found = []
    for trial in sorted(p for p in experiment.iterdir() if (p / "epochs.jsonl").is_file()):
        reported = {line["epochs"]: line["reported_at"] for line in map(json.loads, (trial / "epochs.jsonl").open())}
        for line in map(json.loads, (trial / "result.json").open()):
            if line.get("epochs") in reported and "recorded_at" in line:
                found.append(line["recorded_at"] - reported[line["epochs"]])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", type=Path)
    parser.add_argument("--space", default=str(ROOT / "bench" / "lenet_seeded.py"))
    parser.add_argument("--num-samples", type=int, default=50)
    args = parser.parse_args()
    experiment = args.experiment
    if experiment is None:
        storage = Path(tempfile.mkdtemp(prefix="record-lag-"))
        command = [str(Path(sys.executable).parent / "torchmate-tune"), args.space, "--num-samples",
                   str(args.num_samples), "--storage-path", str(storage), "--name", "lag"]
        subprocess.run(command, cwd=ROOT, env={**os.environ, "TORCHMATE_OFFLINE": "1"}, check=True,
                       stdout=subprocess.DEVNULL)
        experiment = storage / "lag"
    found = sorted(lags(experiment))
    if not found:
        sys.exit(f"{experiment}: no epoch with both a report time and a record time")
    p95 = found[min(len(found) - 1, int(0.95 * len(found)))]
    print(f"record lag over {len(found)} epochs: mean {statistics.mean(found) * 1000:.1f} ms, median "
          f"{statistics.median(found) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {found[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
