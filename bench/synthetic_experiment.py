"""A finished experiment directory of any number of trials, written as a torchmate-tune sweep of
search_spaces/lenet.py writes one (its saved invocation, Tune's state file, each trial's params.json and
result.json, the checkpoints of the trials that ran every epoch), without training anything: what the end of a
10,000-trial sweep reads (bench/end_scale.py) and what tests/test_report.py's scale test reads at 500.

    write_synthetic_experiment(Path("/tmp/exp"), trials=10_000)

The trials are stopped as ASHA stops them (reduction factor 3, rungs at 1, 3 and 9 epochs: two thirds after 1
epoch, two thirds of the rest after 3), their configs drawn from lenet.py's space by a seeded random generator,
their curves rising towards a value that depends on the config; a few errored. The same arguments write the same
directory.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "lenet.py"
MAX_EPOCHS, RUNGS = 9, (1, 3, 9)
METRIC = "val/accuracy"


def draw_config(rng: random.Random) -> dict:
    """A config of lenet.py's space as params.json holds one: the varied keys drawn, the rest as the file says."""
    from torchmate_ray.lightning.files import load_python_file

    config = json.loads(json.dumps(load_python_file(SPACE).config, default=str))
    adam = rng.random() < 0.5
    config["optimizer"] = {"name": "Adam" if adam else "SGD",
                           "cfg": {"lr": math.exp(rng.uniform(math.log(1e-4), math.log(1e-2) if adam else math.log(0.3))),
                                   "weight_decay": math.exp(rng.uniform(math.log(1e-6), math.log(1e-3))),
                                   **({} if adam else {"momentum": 0.9})}}
    config["dataloaders"]["train"]["batch_size"] = rng.choice([32, 64])
    return config


def trial_epochs(index: int) -> int:
    """How far ASHA let trial ``index`` run: 1, 3 or 9 epochs (a third of each rung goes on)."""
    return 9 if index % 9 == 0 else 3 if index % 3 == 0 else 1


def write_synthetic_experiment(directory: Path, trials: int, seed: int = 0, errored_every: int = 97) -> Path:
    """Write the experiment; returns ``directory``."""
    rng = random.Random(seed)
    directory.mkdir(parents=True)
    invocation = {"space_file": str(SPACE), "overrides": [], "max_epochs": MAX_EPOCHS,
                  "settings": {"name": directory.name, "storage_path": str(directory.parent), "num_samples": trials},
                  "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0}, "grown": [],
                  "stage": "search"}
    (directory / "torchmate_sweep.json").write_text(json.dumps(invocation, indent=2))
    states = []
    for index in range(trials):
        trial_id = f"5ca1e_{index:05d}"
        errored = errored_every and index % errored_every == errored_every - 1
        states.append([json.dumps({"trial_id": trial_id, "status": "ERROR" if errored else "TERMINATED"}), "{}"])
        write_trial(directory / trial_id, trial_id, draw_config(rng), trial_epochs(index), errored, rng)
    (directory / "experiment_state-2026-12-04_00-00-00.json").write_text(json.dumps({"trial_data": states}))
    return directory


def write_trial(trial_dir: Path, trial_id: str, config: dict, epochs: int, errored: bool, rng: random.Random) -> None:
    trial_dir.mkdir()
    (trial_dir / "params.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    ceiling = 0.9 + 0.09 * rng.random() - 0.02 * abs(math.log10(config["optimizer"]["cfg"]["lr"]) + 2.5)
    lines, seconds = [], 0.0
    for epoch in range(1, (1 if errored else epochs) + 1):
        seconds += 2.0 + rng.random()
        value = ceiling - (ceiling - 0.6) * math.exp(-epoch / 2) + rng.gauss(0, 0.004)
        lines.append(json.dumps({"epochs": epoch, "training_iteration": epoch, METRIC: value, "val/loss": 1 - value,
                                 "time_this_iter_s": seconds / epoch, "time_total_s": seconds, "trial_id": trial_id,
                                 "node_ip": "127.0.0.1", "done": epoch == epochs and not errored}))
    (trial_dir / "result.json").write_text("\n".join(lines) + "\n")
    if errored:
        (trial_dir / "error.txt").write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    elif epochs == MAX_EPOCHS:  # the checkpoint the trial kept: its newest and best (a stand-in, not Lightning's)
        checkpoint = trial_dir / f"checkpoint_{epochs:06d}"
        checkpoint.mkdir()
        (checkpoint / "trainer.ckpt").write_bytes(b"\0" * 1024)
        (checkpoint / "progress.json").write_text(json.dumps({"epochs": epochs, "metrics": {METRIC: value}}))
