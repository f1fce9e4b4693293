"""Ray's MLflow callback, each epoch logged without the trial's config (imported only by a sweep that tracks
with MLflow: importing it imports MLflow, 0.7 s on 2 CPUs)."""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback


class MLflowTrialRuns(MLflowLoggerCallback):
    """Ray's ``MLflowLoggerCallback``: one MLflow run per trial, its config as the run's params. Ray's also logs
    every numeric leaf of the config as a metric at every epoch: a second copy of the params that took half of
    the driver's calls to the store (29 metrics an epoch for search_spaces/lenet.py, 14 of them the config)."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        super().log_trial_result(iteration, trial, {key: value for key, value in result.items() if key != "config"})
