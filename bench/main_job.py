"""torchmate-tune against the expert's hand-written Ray Tune script (bench/expert.py), the same job for both,
each run as a whole fresh process, the expert first, timed from the command's start to its end.

``--job main``: ``expert.py --job main`` then ``torchmate-tune bench/lenet_seeded.py --num-samples 50``
(search_spaces/lenet.py with its random search seeded, which the expert samples with the same seed: both train
the same 50 configs; ASHA, up to 9 epochs, the 5,000-digit MNIST sample offline). With ``--space
bench/lenet_shaped.py`` the expert trains on the same 60,000 MNIST-shaped images (``--expert-data shaped``,
chosen by default for it), configs drawn apart.

``--job packed``: ``expert.py --job packed`` (8 trials x 3 epochs, a pure PyTorch loop, a grid of 8 Adam
learning rates) then ``torchmate-tune bench/lenet_shaped.py --num-samples 8 --max-epochs 3 --scheduler fifo``
(``--gpus-per-worker 0.125`` on a GPU), its optimizer set to Adam at one learning rate: the same work,
8 trials x 3 epochs of LeNet5 on 60,000 images (10% validated every epoch), batch 512. (The learning rate
changes the numbers, not the work.)

    .venv/bin/python bench/main_job.py [--job main|packed] [--num-samples 50] [--space bench/lenet_seeded.py]
                                       [--expert-data mnist|shaped]

MNIST_SHAPED_SIZE=6000 makes the 60,000-image data smaller for both (a quick check on a CPU). Prints both
walls, both bests and the ratio torchmate-tune / expert (want <= 0.7 on a CPU and <= 0.5 on a GPU for the
main job; <= 1.0 for the packed one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERT = ROOT / "bench" / "expert.py"
SHAPED = ROOT / "bench" / "lenet_shaped.py"
PACKED_ADAM = "optimizer={'name': 'Adam', 'cfg': {'lr': 0.001}}"
EXPERT_LINE = re.compile(r"expert \w+: wall ([\d.]+) s \(imports ([\d.]+) s\), best \S+ (\S+), (\d+) trials, "
                         r"\d+ errored, (\d+) epochs")


def has_gpu() -> bool:
    """Whether this machine has a CUDA GPU, asked of a child process (this one stays free of torch)."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def timed(command: list[str], label: str) -> tuple[float, str]:
    """Run ``command`` in ROOT; its wall time and stdout. Exits with its stderr's tail if it fails."""
    env = {**os.environ, "TORCHMATE_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"{label} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n"
                 f"{result.stderr[-3000:]}")
    return wall, result.stdout


def run_expert(args: argparse.Namespace, storage: str) -> dict:
    command = [sys.executable, str(EXPERT), "--job", args.job, "--storage-path", storage]
    if args.job == "main":
        command += ["--num-samples", str(args.num_samples), "--data", args.expert_data]
    wall, stdout = timed(command, "expert.py")
    match = EXPERT_LINE.search(stdout)
    if not match:
        sys.exit(f"expert.py printed no result line:\n{stdout[-2000:]}")
    return {"wall": wall, "own_wall": float(match[1]), "imports": float(match[2]), "best": float(match[3]),
            "trials": int(match[4]), "epochs": int(match[5])}


def run_torchmate(args: argparse.Namespace, storage: str, gpu: bool) -> dict:
    tool = str(Path(sys.executable).parent / "torchmate-tune")
    if args.job == "main":
        flags = [str(Path(args.space).resolve()), "--num-samples", str(args.num_samples)]
    else:
        flags = [str(SHAPED), "--num-samples", "8", "--max-epochs", "3", "--scheduler", "fifo",
                 "--set", PACKED_ADAM, *(["--gpus-per-worker", "0.125"] if gpu else [])]
    wall, _ = timed([tool, *flags, "--storage-path", storage, "--name", "ours"], "torchmate-tune")
    summary = json.loads((Path(storage) / "ours" / "summary.json").read_text())
    return {"wall": wall, "best": summary["best_value"], "trials": summary["num_trials"],
            "counts": summary["trials"], "epochs": summary["epochs_run"], "inside": summary["wall_seconds"],
            "timings": summary.get("timings") or {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=["main", "packed"], default="main")
    parser.add_argument("--num-samples", type=int, default=50, help="trials of the main job (default 50)")
    parser.add_argument("--space", default=str(ROOT / "bench" / "lenet_seeded.py"),
                        help="torchmate-tune's space for the main job (default bench/lenet_seeded.py)")
    parser.add_argument("--expert-data", choices=["mnist", "shaped"],
                        help="the expert's data for the main job (default: shaped for bench/lenet_shaped.py, "
                             "else mnist)")
    parser.add_argument("--keep", metavar="DIR", help="keep both experiments in DIR (default: a temporary directory)")
    args = parser.parse_args()
    if args.num_samples < 1:
        parser.error("--num-samples must be at least 1")
    if not Path(args.space).is_file():
        parser.error(f"--space {args.space}: no such file")
    args.expert_data = args.expert_data or ("shaped" if Path(args.space).stem == "lenet_shaped" else "mnist")
    gpu = has_gpu()
    where = "a GPU" if gpu else f"{os.cpu_count()} CPUs, no GPU"
    if args.job == "main":
        what = f"{Path(args.space).name} --num-samples {args.num_samples} (expert data: {args.expert_data})"
    else:
        what = "8 trials x 3 epochs of LeNet5 on MNIST-shaped images, FIFO"
    with tempfile.TemporaryDirectory() as scratch:
        storage = args.keep or scratch
        expert = run_expert(args, storage)
        ours = run_torchmate(args, storage, gpu)
    ratio = ours["wall"] / expert["wall"]
    want = "1.0" if args.job == "packed" else ("0.5" if gpu else "0.7")
    print(f"{args.job} job, {what}, on {where}; each a whole process, the expert's first")
    print(f"  expert's script  wall {expert['wall']:6.1f} s (its imports {expert['imports']:4.1f} s)  "
          f"best {expert['best']:.4f}  {expert['trials']} trials, {expert['epochs']} epochs")
    print(f"  torchmate-tune   wall {ours['wall']:6.1f} s (its sweep {ours['inside']:5.1f} s)   "
          f"best {ours['best']:.4f}  {ours['trials']} trials {ours['counts']}, {ours['epochs']} epochs")
    milestones = ", ".join(f"{name.removesuffix('_s').replace('_', ' ')} {seconds:.1f} s"
                           for name, seconds in ours["timings"].items() if seconds is not None)
    print(f"  torchmate-tune since its start: {milestones}")
    per_epoch = (ours["wall"] / ours["epochs"]) / (expert["wall"] / expert["epochs"])
    print(f"{args.job} job wall, torchmate-tune / expert: {ratio:.2f}  (want <= {want}); "
          f"wall per epoch trained: {per_epoch:.2f}")


if __name__ == "__main__":
    main()
