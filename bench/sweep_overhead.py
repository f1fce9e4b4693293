"""The same 8-trial x 2-epoch LeNet5 sweep run three ways, each in a fresh process, wall time compared:

1. plain Lightning in a loop, no Ray (torchmate_ray.lightning.configure_all + fit, one config after another);
2. a hand-written Ray Tune function trainable, as Ray's docs show it (Ray's defaults);
3. torchmate-tune on bench/lenet_grid.py (FIFO, so that all three train exactly 8 x 2 epochs).

    .venv/bin/python bench/sweep_overhead.py

Prints the wall times and two ratios: torchmate-tune / hand-written Ray Tune (want <= 1) and
torchmate-tune / plain loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "bench" / "lenet_grid.py"

PLAIN_LOOP = f"""
import sys
sys.path.insert(0, {str(ROOT / 'bench')!r})
from ray.tune.search.variant_generator import generate_variants
from torchmate_ray.lightning import configure_all
from torchmate_ray.lightning.files import load_config_file
config = load_config_file({str(SPACE)!r})
for _, variant in generate_variants(config):
    trainer, model, data = configure_all(variant, {{"logger": False, "enable_checkpointing": False,
                                                  "enable_progress_bar": False, "enable_model_summary": False}})
    trainer.fit(model, data)
"""

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
                   tune_config=tune.TuneConfig(metric="val/accuracy", mode="max"),
                   run_config=tune.RunConfig(storage_path=sys.argv[1], name="hand", verbose=0))
results = tuner.fit()
assert len(results) == 8 and not results.errors
"""


def timed(command: list[str], cwd: str) -> float:
    env = {**os.environ, "TORCHMATE_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command[:3])}\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    python = sys.executable
    tool = str(Path(python).parent / "torchmate-tune")
    with tempfile.TemporaryDirectory() as tmp:
        plain = timed([python, "-c", PLAIN_LOOP], tmp)
        hand = timed([python, "-c", HAND_WRITTEN, tmp], tmp)
        ours = timed([tool, str(SPACE), "--storage-path", tmp, "--name", "ours"], tmp)
    print(f"8 trials x 2 epochs, LeNet5 on the 5,000-digit MNIST sample, {os.cpu_count()} CPUs")
    print(f"  plain Lightning loop (no Ray)      {plain:7.1f} s")
    print(f"  hand-written Ray Tune trainable    {hand:7.1f} s")
    print(f"  torchmate-tune                     {ours:7.1f} s")
    print(f"torchmate-tune / hand-written Ray Tune: {ours / hand:.2f}  (want <= 1)")
    print(f"torchmate-tune / plain loop:            {ours / plain:.2f}")


if __name__ == "__main__":
    main()
