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
    ``{phase}/accuracy@k`` for each k of ``learner.cfg.topk``). Accuracy is averaged over the
    epoch and over all DDP ranks by torchmetrics, so ``val/accuracy`` is the whole validation set's.
    ``predict_step`` returns the model's outputs and logs nothing.
    """

    log_metrics = {"loss": "loss", "accuracy": "accuracy"}

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__(cfg)
        options = read_learner_options(self.hparams.get("learner"))
        self.classification = options.get("classification") is True
        self.topk: list[int] | None = options.get("topk")
        ks = (self.topk or [1]) if self.classification else []
        self.accuracy = nn.ModuleDict({f"{phase}_top{k}": MeanMetric() for phase in METRIC_PHASES for k in ks})

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
        train = phase == "train"
        self.log(self.log_key(phase, "loss"), loss, prog_bar=phase == "val", batch_size=len(y), sync_dist=not train)
        if self.classification:
            self.log_accuracy(output[0] if isinstance(output, tuple) else output, y, phase)
        return loss

    def log_accuracy(self, logits: Tensor, y: Tensor, phase: str) -> None:
        """Log top-k accuracy of ``logits`` against class indices ``y`` for each configured k."""
        for i, k in enumerate(self.topk or [1]):
            batch_accuracy = multiclass_accuracy(logits, y, num_classes=logits.shape[-1], top_k=k,
                                                 average="micro", validate_args=False)
            metric = self.accuracy[f"{phase}_top{k}"]
            metric(batch_accuracy, len(y))
            key = self.log_key(phase, "accuracy", f"@{k}" if self.topk else None)
            self.log(key, metric, prog_bar=phase == "val" and i == 0, on_step=phase == "train",
                     on_epoch=phase != "train")


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
