"""SupervisedLearner: loss and (top-k) accuracy for ``(x, y)`` batches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.functional.classification import multiclass_accuracy

from torchmate_ray.lightning.errors import ConfigError, describe, join_path, suggest
from torchmate_ray.lightning.module import ConfigurableLightningModule

LEARNER_KEYS = ("classification", "topk")
METRIC_PHASES = ("train", "val", "test")


class SupervisedLearner(ConfigurableLightningModule):
    """Train ``model`` on ``criterion(model(x), y)``.

    Logs ``{phase}/loss`` and, with ``learner.cfg.classification: True``, ``{phase}/accuracy`` (or
    ``{phase}/accuracy@k`` for each k of ``learner.cfg.topk``): each the mean over the phase's epoch,
    weighted by batch size and over all DDP ranks (torchmetrics). They are accumulated on the device and
    logged once, at the epoch's end: a step neither waits for the device nor pays Lightning's per-``log``
    bookkeeping. With a progress bar or a logger the training loss is also logged at every step.
    ``predict_step`` returns the model's outputs and logs nothing.
    """

    log_metrics = {"loss": "loss", "accuracy": "accuracy"}

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        options = read_learner_options(self.hparams.get("learner"))
        self.classification = options.get("classification") is True
        self.topk: list[int] | None = options.get("topk")
        # "disable": no NaN check, which would read every value back to the host; a NaN shows in the mean
        self.epoch_means = nn.ModuleDict({key: MeanMetric(nan_strategy="disable") for key in self._mean_keys()})

    def _mean_keys(self) -> list[str]:
        ks = (self.topk or [1]) if self.classification else []
        return [f"{phase}_{name}" for phase in METRIC_PHASES for name in ["loss", *(f"top{k}" for k in ks)]]

    def logged_metrics(self) -> set[str]:
        keys = {self.log_key(phase, "loss") for phase in METRIC_PHASES}
        if self.classification:
            postfixes = [f"@{k}" for k in self.topk] if self.topk else [None]
            keys |= {self.log_key(phase, "accuracy", p) for phase in METRIC_PHASES for p in postfixes}
        return keys

    def shared_step(self, batch: Any, batch_idx: int, phase: str) -> Any:
        if phase == "predict":
            return self(batch[0] if isinstance(batch, (list, tuple)) else batch)
        x, y = batch
        output = self(x)
        loss = self.criteria(*output, y) if isinstance(output, tuple) else self.criteria(output, y)
        self.accumulate(phase, "loss", loss.detach(), len(y))
        if self.classification:
            self.accumulate_accuracy(output[0] if isinstance(output, tuple) else output, y, phase)
        if phase == "train" and self.shows_steps():
            self.log(self.log_key(phase, "loss"), loss, prog_bar=True, batch_size=len(y), on_step=True, on_epoch=False)
        return loss

    def accumulate(self, phase: str, name: str, value: Tensor, count: int) -> None:
        """Add ``value``, the mean over ``count`` samples, to the epoch's mean of ``name`` in ``phase``."""
        self.epoch_means[f"{phase}_{name}"].update(value.expand(count))  # weighted by count, without a host copy

    def accumulate_accuracy(self, logits: Tensor, y: Tensor, phase: str) -> None:
        """Add the batch's top-k accuracy of ``logits`` against class indices ``y`` for each configured k."""
        for k in self.topk or [1]:
            accuracy = multiclass_accuracy(logits.detach(), y, num_classes=logits.shape[-1], top_k=k,
                                           average="micro", validate_args=False)
            self.accumulate(phase, f"top{k}", accuracy, len(y))

    def log_epoch_metrics(self, phase: str) -> None:
        """Log ``phase``'s epoch means (each read once, synchronised over DDP ranks) and start them anew."""
        names = {"loss": self.log_key(phase, "loss")}
        if self.classification:
            for k in self.topk or [1]:
                names[f"top{k}"] = self.log_key(phase, "accuracy", f"@{k}" if self.topk else None)
        for name, key in names.items():
            metric = self.epoch_means[f"{phase}_{name}"]
            if metric.update_count:  # none with limit_val_batches=0, say
                self.log(key, metric.compute(), prog_bar=phase == "val" and name in ("loss", "top1"))
            metric.reset()

    def shows_steps(self) -> bool:
        """Whether anyone reads a per-step value: a progress bar or a logger (a sweep's trial has neither)."""
        return self.trainer.progress_bar_callback is not None or bool(self.trainer.loggers)

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")


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
