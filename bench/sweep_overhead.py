"""Per-trial overhead of the same 16-trial x 1-epoch LeNet5 sweep, run two ways, each in a fresh process:

1. a hand-written Ray Tune function trainable, as Ray's docs show it (Ray's defaults: a new process per trial);
2. torchmate-tune on bench/lenet_grid.py (FIFO, so that both train exactly 16 x 1 epoch).

    .venv/bin/python bench/sweep_overhead.py

Trials run one at a time in both, so that "overhead" has one meaning: the command's wall time minus the
sum of the trials' own time (Tune's ``time_total_s``: from the trial function's start to its last
report), per trial. It is what the sweep spends not training: process starts, imports, Ray's start,
torchmate's validation, the report. Prints both and the ratio torchmate-tune / hand-written (want <= 1/3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "bench" / "lenet_grid.py"

# What a user writes by hand from Ray's "Using PyTorch Lightning with Tune" guide: a LightningModule,
# a DataModule-free loader, a function trainable reporting through TuneReportCheckpointCallback.
HAND_WRITTEN = f"""
import sys
sys.path.insert(0, {str(ROOT / 'bench')!r})
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, random_split
from torchvision import transforms
from ray import tune
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
from lenet_grid import LEARNING_RATES, EPOCHS, BATCH_SIZE


class LitLeNet(pl.LightningModule):
    def __init__(self, lr):
        super().__init__()
        from torchmate_ray.models import LeNet5BNMaxPool
        self.model, self.lr = LeNet5BNMaxPool(10), lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.model(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y))
        self.log("val/accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def train_fn(config):
    from torchmate_ray.lightning.datasets import MNISTSample
    pl.seed_everything(1234)
    full = MNISTSample(train=True, transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.1307], [0.3081])]))
    train, val = random_split(full, [0.9, 0.1], generator=torch.Generator().manual_seed(1234))
    trainer = pl.Trainer(max_epochs=EPOCHS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[TuneReportCheckpointCallback(on="train_epoch_end")])
    trainer.fit(LitLeNet(config["lr"]), DataLoader(train, batch_size=BATCH_SIZE, shuffle=True),
                DataLoader(val, batch_size=256))


tuner = tune.Tuner(tune.with_resources(train_fn, {{"cpu": 1}}),
                   param_space={{"lr": tune.grid_search(LEARNING_RATES)}},
                   tune_config=tune.TuneConfig(metric="val/accuracy", mode="max", max_concurrent_trials=1),
                   run_config=tune.RunConfig(storage_path=sys.argv[1], name="hand", verbose=0))
results = tuner.fit()
assert len(results) == len(LEARNING_RATES) and not results.errors
"""


def timed(command: list[str], cwd: str) -> float:
    env = {**os.environ, "TORCHMATE_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command[:3])}\n{result.stderr[-3000:]}")
    return elapsed


def trial_seconds(experiment: Path) -> list[float]:
    """Each trial's own time: ``time_total_s`` of its last result."""
    return [json.loads((trial / "result.json").read_text().splitlines()[-1])["time_total_s"]
            for trial in experiment.iterdir() if (trial / "result.json").is_file()]


def main() -> None:
    python = sys.executable
    tool = str(Path(python).parent / "torchmate-tune")
    sys.path.insert(0, str(SPACE.parent))
    from lenet_grid import LEARNING_RATES

    trials = len(LEARNING_RATES)
    with tempfile.TemporaryDirectory() as tmp:
        hand_wall = timed([python, "-c", HAND_WRITTEN, tmp], tmp)
        hand = trial_seconds(Path(tmp) / "hand")
        ours_wall = timed([tool, str(SPACE), "--storage-path", tmp, "--name", "ours", "--max-concurrent", "1"], tmp)
        ours = trial_seconds(Path(tmp) / "ours")
    if len(hand) != trials or len(ours) != trials:
        sys.exit(f"expected {trials} trials each, found {len(hand)} and {len(ours)}")
    hand_overhead, ours_overhead = (hand_wall - sum(hand)) / trials, (ours_wall - sum(ours)) / trials
    print(f"{trials} trials x 1 epoch, one at a time, LeNet5 on the 5,000-digit MNIST sample, {os.cpu_count()} CPUs")
    print(f"                                     wall    trials' own   overhead per trial")
    print(f"  hand-written Ray Tune trainable  {hand_wall:6.1f} s  {sum(hand):7.1f} s  {hand_overhead:9.2f} s")
    print(f"  torchmate-tune                   {ours_wall:6.1f} s  {sum(ours):7.1f} s  {ours_overhead:9.2f} s")
    print(f"per-trial overhead, torchmate-tune / hand-written: {ours_overhead / hand_overhead:.2f}  (want <= 0.33)")
    print(f"mean trial time, torchmate-tune / hand-written:    {sum(ours) / sum(hand):.2f}  (dataset.cache: memory)")
    print(f"wall time, torchmate-tune / hand-written:          {ours_wall / hand_wall:.2f}")


if __name__ == "__main__":
    main()
