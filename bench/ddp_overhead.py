"""The same 4-trial x 2-epoch sweep with 2 DDP workers per trial, run two ways, each in a fresh process:

1. Ray's documented Train V2 pattern, written by hand: a Tune function trainable (the driver, 0.01 CPU)
   that runs a TorchTrainer of 2 workers with Lightning inside (RayDDPStrategy, RayLightningEnvironment,
   RayTrainReportCallback, prepare_trainer) and TuneReportCallback, ASHA, 2 trials at once, Ray's defaults;
2. torchmate-tune bench/lenet_ddp.py --workers-per-trial 2.

Both give each worker a quarter of this machine's CPUs (CPUS_PER_WORKER=1 in the environment to
change it: on 2 CPUs the documented pattern then never places a trial, its driver's 0.01 CPU plus two
1-CPU workers being more than the machine has). The hand-written run is stopped after --limit
seconds if it has not finished (on 2 CPUs it can wait forever for a worker group). Prints both wall
times and the ratio.

    .venv/bin/python bench/ddp_overhead.py [--limit 400]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "bench" / "lenet_ddp.py"
CPUS_PER_WORKER = float(os.environ.get("CPUS_PER_WORKER", (os.cpu_count() or 2) / 4))  # default: two trials fill it

DOCUMENTED = f"""
import os, sys
sys.path.insert(0, {str(ROOT / 'bench')!r})
import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, random_split
from torchvision import transforms
import ray.train
from ray import tune
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer
from ray.tune.integration.ray_train import TuneReportCallback
from lenet_ddp import EPOCHS, LEARNING_RATES
STORAGE = sys.argv[1]  # read here, in the driver script: Ray's workers have argv of their own


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
        self.log("val/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)
        self.log("val/accuracy", (logits.argmax(1) == y).float().mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def train_worker(config):
    from torchmate_ray.lightning.datasets import MNISTSample
    pl.seed_everything(1234)
    full = MNISTSample(train=True, transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.1307], [0.3081])]))
    train, val = random_split(full, [0.9, 0.1], generator=torch.Generator().manual_seed(1234))
    trainer = pl.Trainer(max_epochs=EPOCHS, devices="auto", accelerator="auto", strategy=RayDDPStrategy(),
                         plugins=[RayLightningEnvironment()], callbacks=[RayTrainReportCallback()],
                         enable_progress_bar=False, logger=False, enable_checkpointing=False)
    trainer = prepare_trainer(trainer)
    trainer.fit(LitLeNet(config["lr"]), DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256))


def driver(config):
    trial_id = tune.get_context().get_trial_id()
    TorchTrainer(train_worker, train_loop_config=config,
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={{"CPU": {CPUS_PER_WORKER}}}),
                 run_config=RunConfig(name=trial_id, storage_path=STORAGE, callbacks=[TuneReportCallback()])).fit()


tuner = tune.Tuner(tune.with_resources(driver, {{"cpu": 0.01}}),
                   param_space={{"lr": tune.grid_search(LEARNING_RATES)}},
                   tune_config=tune.TuneConfig(metric="val/accuracy", mode="max", max_concurrent_trials=2,
                       scheduler=tune.schedulers.ASHAScheduler(max_t=EPOCHS, grace_period=1, reduction_factor=2)),
                   run_config=tune.RunConfig(storage_path=STORAGE, name="documented", verbose=0))
results = tuner.fit()
assert len(results) == 4 and not results.errors
"""


def timed(command: list[str], cwd: str, limit: float) -> tuple[float, bool]:
    """(seconds, finished) for ``command``; a run past ``limit`` is killed with all it started, and counts as unfinished."""
    env = {**os.environ, "TORCHMATE_OFFLINE": "1"}
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-KILL", "-s", str(process.pid)], capture_output=True)  # Ray's processes too
        process.communicate()
        return limit, False
    if process.returncode != 0:
        sys.exit(f"failed: {' '.join(command[:3])}\n{stderr[-3000:]}")
    return time.monotonic() - started, True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=400, help="seconds before a run counts as hung")
    args = parser.parse_args()
    python = sys.executable
    tool = str(Path(python).parent / "torchmate-tune")
    with tempfile.TemporaryDirectory() as tmp:
        documented, documented_done = timed([python, "-c", DOCUMENTED, tmp], tmp, args.limit)
        ours, ours_done = timed([tool, str(SPACE), "--workers-per-trial", "2", "--cpus-per-worker",
                                 f"{CPUS_PER_WORKER:g}", "--storage-path", tmp, "--name", "ours"], tmp, args.limit)
    shown = {True: "", False: f"  (did not finish in {args.limit:.0f} s: stopped)"}
    print(f"4 trials x 2 epochs, 2 DDP workers x {CPUS_PER_WORKER:g} CPU per trial, {os.cpu_count()} CPUs")
    print(f"  Ray's documented pattern, by hand   {documented:7.1f} s{shown[documented_done]}")
    print(f"  torchmate-tune                      {ours:7.1f} s{shown[ours_done]}")
    bound = "" if documented_done else " (at least)"
    print(f"documented pattern / torchmate-tune: {documented / ours:.2f}{bound}")


if __name__ == "__main__":
    main()
