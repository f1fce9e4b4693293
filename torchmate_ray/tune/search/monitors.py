"""Every metric a sweep's config names, checked before launch against the names the learner logs.

A name the learner never logs fails each trial at its first report or validation, on whatever node runs it:
Tune's metric (ray#14159), early stopping's and a plateau scheduler's ``monitor`` (Lightning raises "not
available"), a checkpoint's ``monitor``. Here it is one line naming the key path, before anything starts.

    list_monitors(config)   # [Monitor("training.early_stopping.monitor", "val/loss"), ...]
    check_monitors(sample, "val/accuracy", model)   # ConfigError: sweep.metric: 'val/acc' is not logged by ...
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torchmate_ray.errors import ConfigError, join_path
from torchmate_ray.lightning.build import is_spec
from torchmate_ray.lightning.resolve import resolve_name


@dataclass(frozen=True)
class Monitor:
    """A metric name the config has Lightning watch, and where the config says it."""

    key_path: str
    name: str


def list_monitors(config: Mapping[str, Any]) -> list[Monitor]:
    """The metric names a (sampled) config has Lightning watch: ``training.early_stopping.monitor``; the
    ``monitor`` of each callback in ``training.callbacks`` (an EarlyStopping or a ModelCheckpoint, as a spec
    or an object); the ``monitor`` of each ReduceLROnPlateau entry of ``lr_scheduler`` (one without it
    watches the learner's own validation loss)."""
    training = config.get("training")
    training = training if isinstance(training, Mapping) else {}
    found = []
    early_stopping = training.get("early_stopping")
    if isinstance(early_stopping, Mapping):
        found.append(Monitor("training.early_stopping.monitor", early_stopping.get("monitor")))
    callbacks = training.get("callbacks")
    for index, callback in enumerate(callbacks if isinstance(callbacks, list) else [callbacks]):
        path = join_path("training.callbacks", index) if isinstance(callbacks, list) else "training.callbacks"
        if is_spec(callback) and isinstance(callback.get("cfg"), Mapping):
            found.append(Monitor(join_path(path, "cfg.monitor"), callback["cfg"].get("monitor")))
        elif callback is not None and not isinstance(callback, Mapping):
            found.append(Monitor(join_path(path, "monitor"), getattr(callback, "monitor", None)))
    found += _scheduler_monitors(config.get("lr_scheduler"))
    return [monitor for monitor in found if isinstance(monitor.name, str)]


def _scheduler_monitors(cfg: Any) -> list[Monitor]:
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    entries = cfg if isinstance(cfg, list) else [cfg]
    paths = [join_path("lr_scheduler", i) for i in range(len(entries))] if isinstance(cfg, list) else ["lr_scheduler"]
    found = []
    for entry, path in zip(entries, paths):
        if not isinstance(entry, Mapping) or "monitor" not in entry or not is_spec(entry.get("scheduler")):
            continue
        target = resolve_name(entry["scheduler"]["name"], "lr_scheduler", join_path(path, "scheduler.name"))
        if entry.get("reduce_on_plateau") or (isinstance(target, type) and issubclass(target, ReduceLROnPlateau)):
            found.append(Monitor(join_path(path, "monitor"), entry["monitor"]))
    return found


def check_monitors(config: Mapping[str, Any], metric: str, model: Any) -> None:
    """Refuse the sweep's ``metric`` or a monitored name of ``config`` (:func:`list_monitors`) that ``model``
    does not log; a learner that does not say what it logs (no ``logged_metrics``) is taken at its word."""
    for monitor in [Monitor("sweep.metric", metric), *list_monitors(config)]:
        check_logged(monitor, model)


def check_logged(monitor: Monitor, model: Any) -> None:
    """``<key path>: 'val/acc' is not logged by SupervisedLearner (it logs ...); did you mean 'val/accuracy'?``"""
    logged = model.logged_metrics() if hasattr(model, "logged_metrics") else None
    if logged is None or monitor.name in logged:
        return
    close = difflib.get_close_matches(monitor.name, sorted(logged), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(sorted(logged))}"
    raise ConfigError(monitor.key_path, f"'{monitor.name}' is not logged by {type(model).__name__} (it logs "
                      f"{', '.join(sorted(logged))}); {hint}")
