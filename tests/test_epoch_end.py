"""What a trial does at an epoch's end: metrics accumulated on the device and logged once, as the epoch's
means; and checkpoints written off the training thread, each whole, beside the record of their epoch."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.nn import functional as F

from torchmate_ray.lightning.configure import configure_all
from torchmate_ray.tune.records.checkpoints import KeepRule
from torchmate_ray.tune.records.files import CHECKPOINT_FILE, PROGRESS_FILE
from torchmate_ray.tune.trial.checkpoint_writer import BackgroundCheckpointIO, checkpoint_epochs, find_resume_checkpoint


def evaluate(model, loader):
    """(mean loss, accuracy) of ``model`` over every sample of ``loader``."""
    losses, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            losses += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            count += len(y)
    return losses / count, correct / count


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_logged_metrics_are_the_means_over_the_epochs_samples(tiny_config, fast_trainer, cache):
    """With a learning rate of 0 the model never changes, so the epoch's train and val means are its loss and
    accuracy over the whole splits (the last batch is smaller: means weighted by batch size)."""
    tiny_config["optimizer"] = {"name": "SGD", "cfg": {"lr": 0.0}}
    tiny_config["dataset"]["cache"] = cache
    tiny_config["dataloaders"] = {"default": {"batch_size": 256}, "train": {"batch_size": 500, "shuffle": False}}
    trainer_kwargs = {**fast_trainer, "limit_train_batches": None, "limit_val_batches": None}
    trainer, model, data = configure_all(tiny_config, trainer_kwargs)
    trainer.fit(model, data)
    logged = {name: float(value) for name, value in trainer.callback_metrics.items()}
    train_loss, train_accuracy = evaluate(model, data.train_dataloader())
    val_loss, val_accuracy = evaluate(model, data.val_dataloader())
    assert logged == pytest.approx({"train/loss": train_loss, "train/accuracy": train_accuracy,
                                    "val/loss": val_loss, "val/accuracy": val_accuracy}, rel=1e-5)


def test_topk_accuracies_are_torchmetrics_over_the_epoch(tiny_config, fast_trainer):
    """Each top-k accuracy is what torchmetrics computes over the whole validation split at once."""
    from torchmetrics.functional.classification import multiclass_accuracy

    tiny_config["learner"]["cfg"]["topk"] = [1, 3]
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "limit_val_batches": None})
    trainer.fit(model, data)
    assert set(trainer.callback_metrics) == {"train/loss", "train/accuracy@1", "train/accuracy@3",
                                             "val/loss", "val/accuracy@1", "val/accuracy@3"}
    with torch.no_grad():
        batches = list(data.val_dataloader())
        logits, y = torch.cat([model(x) for x, _ in batches]), torch.cat([y for _, y in batches])
    for k in (1, 3):
        expected = multiclass_accuracy(logits, y, num_classes=10, top_k=k, average="micro")
        assert float(trainer.callback_metrics[f"val/accuracy@{k}"]) == pytest.approx(float(expected), abs=1e-6)
    assert all(sums.sums is None for sums in model.epoch_sums.values())  # started anew for the next epoch


class SaveEveryEpoch(pl.Callback):
    """Saves as a trial's report does, with the epoch's record as storage options; its metric ``score`` is
    ``scores[epoch]`` (epochs counted from 1), where given."""

    def __init__(self, trial_dir: Path, scores: dict[int, float] | None = None):
        self.trial_dir, self.scores = trial_dir, scores or {}

    def on_train_epoch_end(self, trainer, pl_module):
        epochs = trainer.current_epoch + 1
        metrics = {"epochs": epochs, **({"score": self.scores[epochs]} if epochs in self.scores else {})}
        trainer.save_checkpoint(self.trial_dir / f"checkpoint_{epochs:06d}" / CHECKPOINT_FILE,
                                storage_options={"epochs": epochs, "metrics": metrics})


# (keep, the score of each of 5 epochs, the epochs whose checkpoints stay)
KEPT = [
    ("all", KeepRule("score", "max", None), {}, [1, 2, 3, 4, 5]),
    ("no-rule", None, {}, [1, 2, 3, 4, 5]),
    ("newest-and-best-max", KeepRule("score", "max", 1), {1: 0.1, 2: 0.9, 3: 0.5, 4: 0.2, 5: 0.3}, [2, 5]),
    ("newest-and-best-min", KeepRule("score", "min", 1), {1: 0.1, 2: 0.9, 3: 0.5, 4: 0.2, 5: 0.3}, [1, 5]),
    ("newest-and-best-two", KeepRule("score", "max", 2), {1: 0.1, 2: 0.9, 3: 0.5, 4: 0.2, 5: 0.3}, [2, 3, 5]),
    ("newest-is-best", KeepRule("score", "max", 1), {1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}, [5]),
    ("tie-to-earlier", KeepRule("score", "max", 1), {1: 0.1, 2: 0.7, 3: 0.7, 4: 0.2, 5: 0.3}, [2, 5]),
    ("newest-only", KeepRule("score", "max", 0), {1: 0.9, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.5}, [5]),
    ("nan-never-best", KeepRule("score", "max", 1), {1: float("nan"), 2: 0.2, 3: 0.1, 4: 0.1, 5: 0.1}, [2, 5]),
    ("no-metric", KeepRule("score", "max", 1), {}, [5]),
]


@pytest.mark.parametrize("keep, scores, kept", [k[1:] for k in KEPT], ids=[k[0] for k in KEPT])
def test_checkpoints_are_written_whole_in_the_background_and_kept_by_score(tiny_config, fast_trainer, tmp_path,
                                                                           keep, scores, kept):
    trial_dir = tmp_path / "trial"
    fast_trainer = {**fast_trainer, "max_epochs": 5, "enable_checkpointing": True}
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "callbacks": [SaveEveryEpoch(trial_dir, scores)],
                                                       "plugins": [BackgroundCheckpointIO(keep)]})
    trainer.fit(model, data)  # returns once the writes are done (the plugin's teardown waits)
    directories = sorted(trial_dir.iterdir())
    assert [int(d.name.split("_")[1]) for d in directories] == kept
    for directory in directories:
        assert sorted(p.name for p in directory.iterdir()) == [PROGRESS_FILE, CHECKPOINT_FILE]
        record = json.loads((directory / PROGRESS_FILE).read_text())
        assert checkpoint_epochs(directory / CHECKPOINT_FILE) == record["epochs"]
    resumed, record = find_resume_checkpoint(None, trial_dir)
    assert (resumed, record["epochs"]) == (trial_dir / "checkpoint_000005", 5)
    state = torch.load(resumed / CHECKPOINT_FILE, weights_only=False)["state_dict"]
    assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())


def test_a_failed_checkpoint_write_fails_the_fit(tiny_config, fast_trainer, tmp_path):
    blocker = tmp_path / "trial"
    blocker.write_text("a file where the trial's directory should be")
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "enable_checkpointing": True,
                                                       "callbacks": [SaveEveryEpoch(blocker)],
                                                       "plugins": [BackgroundCheckpointIO()]})
    with pytest.raises((FileExistsError, NotADirectoryError)):
        trainer.fit(model, data)
