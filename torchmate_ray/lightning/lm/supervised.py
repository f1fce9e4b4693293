"""SupervisedLearner: loss and (top-k) accuracy for ``(x, y)`` batches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from torchmate_ray.errors import ConfigError, describe, join_path, suggest
from torchmate_ray.lightning.module import ConfigurableLightningModule

LEARNER_KEYS = ("classification", "topk")
METRIC_PHASES = ("train", "val", "test")


class SupervisedLearner(ConfigurableLightningModule):
    """Train ``model`` on ``criterion(model(x), y)``.

    Logs ``{phase}/loss`` and, with ``learner.cfg.classification: True``, ``{phase}/accuracy`` (or
    ``{phase}/accuracy@k`` for each k of ``learner.cfg.topk``): each the mean over the phase's epoch (the
    loss weighted by batch size, the accuracy over every target), summed over all DDP ranks. A step adds its
    sums in place to tensors on the device; they are read and logged once, at the epoch's end: a step neither
    waits for the device nor pays per-value bookkeeping (torchmetrics' ``MeanMetric.update`` and Lightning's
    ``log`` each cost a step of a small model on a GPU about 0.3 ms). With a progress bar or a logger the
    training loss is also logged at every step. ``predict_step`` returns the model's outputs and logs nothing.
    """

    log_metrics = {"loss": "loss", "accuracy": "accuracy"}

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        options = read_learner_options(self.hparams.get("learner"))
        self.classification = options.get("classification") is True
        self.topk: list[int] | None = options.get("topk")
        self.epoch_sums = {phase: EpochSums() for phase in METRIC_PHASES}

    def logged_metrics(self) -> set[str]:
        return set(self.metric_keys("train")) | set(self.metric_keys("val")) | set(self.metric_keys("test"))

    def metric_keys(self, phase: str) -> list[str]:
        """The keys ``phase`` logs, in the order of its sums: the loss, then each top-k accuracy."""
        keys = [self.log_key(phase, "loss")]
        if self.classification:
            keys += [self.log_key(phase, "accuracy", f"@{k}" if self.topk else None) for k in self.topk or [1]]
        return keys

    def shared_step(self, batch: Any, batch_idx: int, phase: str) -> Any:
        if phase == "predict":
            return self(batch[0] if isinstance(batch, (list, tuple)) else batch)
        x, y = batch
        output = self(x)
        loss = self.criteria(*output, y) if isinstance(output, tuple) else self.criteria(output, y)
        logits = output[0] if isinstance(output, tuple) else output
        self.epoch_sums[phase].add(loss.detach(), len(y), self.count_correct(logits, y) if self.classification else None,
                                   y.numel())
        if phase == "train" and self.shows_steps():
            self.log(self.log_key(phase, "loss"), loss, prog_bar=True, batch_size=len(y), on_step=True, on_epoch=False)
        return loss

    def count_correct(self, logits: Tensor, y: Tensor) -> Tensor:
        """How many targets are among the top k of ``logits`` (classes on dim 1): for top-1 (no ``topk``) a
        0-dim count, else one count per configured k. ``logits`` may carry a graph: argmax records none."""
        if not self.topk:
            return (logits.argmax(1) == y).sum()
        top = logits.detach().topk(max(self.topk), dim=1).indices == y.unsqueeze(1)
        return torch.stack([top[:, :k].any(1).sum() for k in self.topk])

    def log_epoch_metrics(self, phase: str) -> None:
        """Log ``phase``'s epoch means (read once, summed over DDP ranks) and start its sums anew."""
        means = self.epoch_sums[phase].means(self.trainer.strategy)
        if means is not None:  # none with limit_val_batches=0, say
            for i, (key, value) in enumerate(zip(self.metric_keys(phase), means)):
                self.log(key, value, prog_bar=phase == "val" and i < 2)

    def shows_steps(self) -> bool:
        """Whether anyone reads a per-step value: a progress bar or a logger (a sweep's trial has neither)."""
        return self.trainer.progress_bar_callback is not None or bool(self.trainer.loggers)

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")


class EpochSums:
    """An epoch's sums of a phase's metrics, on the device: the loss times the samples, and the correct counts
    (``correct@k...``), with the numbers of samples and of targets they are over counted on the host (no device
    read per step). A step adds to them in place: two operations beyond computing the counts."""

    def __init__(self) -> None:
        self.sums: tuple[Tensor, Tensor | None] | None = None  # (loss sum, correct counts); None: nothing added
        self.samples = self.targets = 0

    def add(self, loss: Tensor, samples: int, correct: Tensor | None, targets: int) -> None:
        """Add a batch's mean ``loss`` (detached) over ``samples`` and its ``correct`` counts over ``targets``."""
        if self.sums is None:  # the loss sum at least in float32; counts as integers, exact at any size
            dtype = torch.promote_types(loss.dtype, torch.float32)
            self.sums = (torch.zeros((), dtype=dtype, device=loss.device),
                         None if correct is None else torch.zeros_like(correct, dtype=torch.int64))
        loss_sum, correct_sum = self.sums
        loss_sum.add_(loss, alpha=samples)
        if correct_sum is not None:
            correct_sum.add_(correct)
        self.samples, self.targets = self.samples + samples, self.targets + targets

    def means(self, strategy: Any) -> Tensor | None:
        """The epoch's means ``[loss, accuracy@k...]``, summed over the ranks of ``strategy`` (Lightning's), or
        None if nothing was added; the sums start anew."""
        if self.sums is None:
            return None
        loss_sum, correct_sum = self.sums
        sums = loss_sum.reshape(1) if correct_sum is None else torch.cat([loss_sum.reshape(1),
                                                                          correct_sum.reshape(-1).to(loss_sum.dtype)])
        counts = torch.tensor([self.samples] + [self.targets] * (len(sums) - 1), dtype=sums.dtype, device=sums.device)
        totals = strategy.reduce(torch.stack([sums, counts]), reduce_op="sum")
        self.sums, self.samples, self.targets = None, 0, 0
        return totals[0] / totals[1]


def read_learner_options(learner: Any) -> dict[str, Any]:
    """``learner.cfg`` checked: known keys only, ``topk`` a list of positive ints."""
    options = (learner or {}).get("cfg") or {} if isinstance(learner, Mapping) else {}
    for key in options:
        if key not in LEARNER_KEYS:
            raise ConfigError(join_path("learner.cfg", key), f"unknown SupervisedLearner option '{key}'"
                              f"{suggest(key, LEARNER_KEYS) or '; use ' + ' or '.join(LEARNER_KEYS)}")
    topk = options.get("topk")
    if topk is not None and (not isinstance(topk, list) or not topk
                             or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in topk)):
        raise ConfigError("learner.cfg.topk", f"expected a list of positive ints, got {describe(topk)}; write e.g. [1, 5]")
    return dict(options)
