"""Multi-worker trials: the Tune trial is a thin driver of a Ray Train V2 ``TorchTrainer`` whose workers run
Lightning with ``RayDDPStrategy``. Imported only by trials that have several workers (Ray Train is heavy)."""

from __future__ import annotations

import os
from typing import Any

import ray
from lightning.pytorch.callbacks import Checkpoint
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from torchmate_ray.lightning.configure import configure_all
from torchmate_ray.tune.records.checkpoints import KeepRule
from torchmate_ray.tune.records.trial_record import EPOCHS
from torchmate_ray.tune.trial.setup import (TRIAL_TRAINER_DEFAULTS, TrialLayout, check_storage_visible,
                                            register_file_classes, use_shared_cache, use_worker_start_timeout)


def run_distributed_trial(config: dict[str, Any], layout: TrialLayout) -> None:
    """Drive a Ray Train V2 run of ``layout.workers`` DDP workers; rank 0's metrics reach Tune.

    The run is named after the trial, so a restarted trial's Train run restores its own checkpoint.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    register_file_classes(config, by_value=True)
    use_worker_start_timeout(layout)
    resources = {"CPU": layout.cpus_per_worker, **({"GPU": layout.gpus_per_worker} if layout.gpus_per_worker else {})}
    trainer = TorchTrainer(
        train_worker, train_loop_config={"config": config, "data_cache": layout.data_cache,
                                         "experiment_dir": layout.experiment_dir},
        scaling_config=ScalingConfig(num_workers=layout.workers, use_gpu=layout.gpus_per_worker > 0,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=f"train-{tune.get_context().get_trial_id()}", storage_path=layout.train_storage,
                             callbacks=[EpochsTuneReportCallback()],
                             checkpoint_config=build_checkpoint_config(layout.keep),
                             failure_config=FailureConfig(max_failures=layout.max_failures)))
    trainer.fit()


def build_checkpoint_config(keep: KeepRule | None) -> Any:
    """Ray Train's CheckpointConfig for ``keep``: Train keeps the ``num_to_keep`` best by the score and, besides
    them, always its latest checkpoint (the one a restored run continues from): the rule of one-worker trials."""
    from ray.train import CheckpointConfig

    if keep is None or keep.best is None:
        return CheckpointConfig()
    if keep.best == 0:  # the latest alone (Train's num_to_keep is at least 1; without a score, the newest rank best)
        return CheckpointConfig(num_to_keep=1)
    return CheckpointConfig(num_to_keep=keep.best, checkpoint_score_attribute=keep.metric,
                            checkpoint_score_order=keep.mode)


class EpochsTuneReportCallback(TuneReportCallback):
    """Ray Train's report to Tune, plus the epochs done (rank 0's ``epoch`` is Lightning's, counted from 0)."""

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        first = {**metrics[0], EPOCHS: int(metrics[0]["epoch"]) + 1}
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


def train_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: the same configure_all, with Ray's DDP strategy, environment and reporting.

    ``loop_config`` holds the trial's ``config``, the sweep's shared ``data_cache`` (or None) and the
    ``experiment_dir``, which a worker's node must see (its checkpoints go there).
    """
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    class EpochEndTrainReport(RayTrainReportCallback, Checkpoint):
        """Ray Train's report, run after the LightningModule's ``on_train_epoch_end``, where the learner logs
        its epoch metrics (Lightning calls Checkpoint callbacks last)."""

    config, data_cache = loop_config["config"], loop_config["data_cache"]
    check_storage_visible(loop_config["experiment_dir"])
    register_file_classes(config)
    training = config.get("training") or {}
    kwargs = {key: value for key, value in TRIAL_TRAINER_DEFAULTS.items() if key not in training}
    kwargs.update(devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()],
                  callbacks=[EpochEndTrainReport()], enable_checkpointing=True)
    trainer, model, data = configure_all(config, kwargs)
    use_shared_cache(data, data_cache)
    trainer = prepare_trainer(trainer)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        trainer.fit(model, data)
        return
    with checkpoint.as_directory() as directory:
        trainer.fit(model, data, ckpt_path=os.path.join(directory, RayTrainReportCallback.CHECKPOINT_NAME),
                    weights_only=False)


