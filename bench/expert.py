"""The strongest hand-written peer of torchmate-tune: Ray Tune 2.60 used as an expert would, by hand.

Two jobs, each the same work as a torchmate-tune run (bench/main_job.py runs both sides):

``main``: the very same sweep as ``torchmate-tune bench/lenet_seeded.py --num-samples 50`` (lenet.py's config
as the param space, random search with the same seed, so both train the same configs): Adam or SGD
(Nesterov, momentum 0.9), each with its own log-uniform learning rate and weight decay, train batch 32, 64
or 128 (val 256), StepLR(2, 0.5), 9 epochs, seed 1234, ASHA on val/accuracy (grace 1, reduction 3, rungs
in epochs). A LightningModule (LeNet5BNMaxPool) trained in a Tune function trainable, the data normalized
once and held as tensors (on the trial's GPU when there is one), batches drawn by index; 1/8 GPU and 1 CPU
per trial (1 CPU without a GPU), ``reuse_actors=True``, a report and a checkpoint every epoch the way Ray's
Lightning guide does. ``--data mnist`` is the 5,000-digit MNIST sample torchmate uses offline (4,000 train,
10% of them for validation); ``--data shaped`` is bench/lenet_shaped.py's 60,000 MNIST-shaped images, train
batch 512.

``packed``: 8 trials x 3 epochs of LeNet5 on MNISTShaped (60,000, 10% for validation) in a pure PyTorch
loop (normalized tensors on the device, batches by index, Adam, batch 512, a grid of 8 learning rates),
1/8 GPU per trial, ``reuse_actors=True``, FIFO, a report every epoch.

    .venv/bin/python bench/expert.py [--job main|packed] [--num-samples 50] [--data mnist|shaped]

Prints one line at the end, timed from the top of this file (before any import), e.g.
``expert main: wall 56.7 s (imports 19.0 s), best val/accuracy 0.9800, 50 trials``.
"""

import time

STARTED = time.monotonic()

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

os.environ.setdefault("TORCHMATE_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # noqa: E402
from ray.tune.search import BasicVariantGenerator  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import random_split  # noqa: E402

from torchmate_ray.models import LeNet5BNMaxPool  # noqa: E402

IMPORTED = time.monotonic()

MEAN, STD, SEED, VAL_SHARE, VAL_BATCH = 0.1307, 0.3081, 1234, 0.1, 256
METRIC = "val/accuracy"
PACKED_LRS = [round(1e-4 * 10 ** (i / 3.5), 6) for i in range(8)]  # 1e-4 to 1e-2, log-spaced
PACKED_EPOCHS, PACKED_BATCH = 3, 512

# search_spaces/lenet.py's very config as the param space (its domains: the optimizer, its learning rate and
# weight decay, the train batch size), searched with bench/lenet_seeded.py's seed: both sides train the same
# 50 configs, and the trainable reads from the sampled config only what it needs
from lenet_seeded import SEARCH_SEED, config as MAIN_SPACE  # noqa: E402  (bench/ is this script's directory)


class Batches:
    """Batches of ``(x, y)`` tensors drawn by index, on their device: a plain iterable, no DataLoader.

    It draws from the global generator what a DataLoader over a ``TensorDataset`` draws (a base seed per pass,
    and with ``shuffle`` a ``RandomSampler``'s seed for the pass's permutation), so that with the same seed
    the expert's trials see the batches torchmate-tune's see, train alike, and ASHA judges both alike.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        count, size = len(self.y), self.batch_size
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed
        if not self.shuffle:  # slices: views, no copy
            yield from ((self.x[i:i + size], self.y[i:i + size]) for i in range(0, count, size))
            return
        generator = torch.Generator()
        generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        order = torch.randperm(count, generator=generator).to(self.y.device)
        for start in range(0, count, size):
            index = order[start:start + size]
            yield self.x[index], self.y[index]


class LitLeNet(pl.LightningModule):
    def __init__(self, optimizer: dict):
        super().__init__()
        self.model, self.optimizer = LeNet5BNMaxPool(10), optimizer

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log(METRIC, (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        name, cfg = self.optimizer["name"], self.optimizer["cfg"]
        if name == "Adam":
            optimizer = torch.optim.Adam(self.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        else:
            optimizer = torch.optim.SGD(self.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True,
                                        weight_decay=cfg["weight_decay"])
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)]


def trial_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def normalized_splits(images: torch.Tensor, targets: torch.Tensor, device: torch.device):
    """ToTensor + Normalize once, on ``device``; split 90/10 as MagicData does (random_split, seeded)."""
    x = ((images.to(device).float() / 255 - MEAN) / STD).unsqueeze(1)
    y = targets.to(device)
    seeded = torch.Generator().manual_seed(SEED)
    split = random_split(range(len(y)), [1 - VAL_SHARE, VAL_SHARE], generator=seeded)
    train, val = (torch.tensor(part.indices, device=device) for part in split)
    return (x[train], y[train]), (x[val], y[val])


def train_main(config: dict, images: torch.Tensor, targets: torch.Tensor, max_epochs: int,
               train_batch: int | None):
    """One trial of the main job: Lightning, reporting and checkpointing every epoch."""
    pl.seed_everything(SEED, verbose=False)
    (x, y), (val_x, val_y) = normalized_splits(images, targets, trial_device())
    report = TuneReportCheckpointCallback(on="train_epoch_end")  # after validation: one report per epoch
    trainer = pl.Trainer(max_epochs=max_epochs, accelerator="auto", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[report])
    train = Batches(x, y, train_batch or config["dataloaders"]["train"]["batch_size"], shuffle=True)
    trainer.fit(LitLeNet(config["optimizer"]), train, Batches(val_x, val_y, VAL_BATCH, shuffle=False))


def train_packed(config: dict, images: torch.Tensor, targets: torch.Tensor):
    """One trial of the packed job: a pure PyTorch loop, a report every epoch."""
    torch.manual_seed(SEED)
    (x, y), (val_x, val_y) = normalized_splits(images, targets, trial_device())
    model = LeNet5BNMaxPool(10).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    for _ in range(PACKED_EPOCHS):
        model.train()
        for batch_x, batch_y in Batches(x, y, PACKED_BATCH, shuffle=True):
            loss = F.cross_entropy(model(batch_x), batch_y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val = Batches(val_x, val_y, VAL_BATCH, shuffle=False)
            correct = sum((model(batch_x).argmax(1) == batch_y).sum() for batch_x, batch_y in val)
        tune.report({METRIC: float(correct) / len(val_y), "train/loss": float(loss)})


def load_data(data: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``[N, 28, 28]`` and int64 labels of the train split."""
    if data == "mnist":
        from torchmate_ray.lightning.datasets import MNISTSample

        dataset = MNISTSample(train=True)
    else:
        from lenet_shaped import MNISTShaped  # bench/ is this script's directory

        dataset = MNISTShaped("", train=True)
    return dataset.data, dataset.targets


def resources() -> dict:
    return {"cpu": 1, "gpu": 1 / 8} if torch.cuda.is_available() else {"cpu": 1}


def build_tuner(args: argparse.Namespace, storage: str) -> tune.Tuner:
    images, targets = load_data("shaped" if args.job == "packed" else args.data)
    run_config = tune.RunConfig(storage_path=storage, name=f"expert_{args.job}", verbose=0)
    if args.job == "packed":
        trainable = tune.with_parameters(train_packed, images=images, targets=targets)
        return tune.Tuner(tune.with_resources(trainable, resources()),
                          param_space={"lr": tune.grid_search(PACKED_LRS)}, run_config=run_config,
                          tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=FIFOScheduler(),
                                                      reuse_actors=True))
    trainable = tune.with_parameters(train_main, images=images, targets=targets, max_epochs=args.max_epochs,
                                     train_batch=512 if args.data == "shaped" else None)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=args.max_epochs, grace_period=1,
                              reduction_factor=3)
    tune_config = tune.TuneConfig(metric=METRIC, mode="max", scheduler=scheduler, num_samples=args.num_samples,
                                  search_alg=BasicVariantGenerator(random_state=SEARCH_SEED), reuse_actors=True)
    return tune.Tuner(tune.with_resources(trainable, resources()), param_space=MAIN_SPACE,
                      run_config=run_config, tune_config=tune_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=["main", "packed"], default="main")
    parser.add_argument("--num-samples", type=int, default=50, help="trials of the main job (default 50)")
    parser.add_argument("--max-epochs", type=int, default=9, help="epochs per main-job trial, ASHA's max_t")
    parser.add_argument("--data", choices=["mnist", "shaped"], default="mnist",
                        help="the main job's data: the 5,000-digit MNIST sample, or 60,000 MNIST-shaped ones")
    parser.add_argument("--storage-path", help="where Tune writes the experiment (default: a temporary one)")
    args = parser.parse_args()
    if args.num_samples < 1 or args.max_epochs < 1:
        parser.error("--num-samples and --max-epochs must be at least 1")
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        results = build_tuner(args, args.storage_path or scratch).fit()
    scores = [r.metrics.get(METRIC) for r in results if r.metrics and r.metrics.get(METRIC) is not None]
    best = max(scores) if scores else float("nan")
    epochs = sum(int(r.metrics.get("training_iteration", 0)) for r in results if r.metrics)
    print(f"expert {args.job}: wall {time.monotonic() - STARTED:.1f} s (imports {IMPORTED - STARTED:.1f} s), "
          f"best {METRIC} {best:.4f}, {len(results)} trials, {len(results.errors)} errored, {epochs} epochs",
          flush=True)


if __name__ == "__main__":
    main()
