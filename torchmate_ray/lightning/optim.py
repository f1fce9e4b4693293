"""Optimizers and learning-rate schedulers from the config, packaged the way Lightning expects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

from torchmate_ray.errors import ConfigError, describe, join_path, suggest
from torchmate_ray.lightning.build import build_spec, is_spec

SCHEDULER_KEYS = ("interval", "frequency", "monitor", "strict", "name", "reduce_on_plateau")


def build_optimizers(cfg: Any, model: nn.Module, key_path: str = "optimizer") -> list[Optimizer]:
    """One optimizer per spec in ``cfg`` (a spec or a list of specs), built from ``torch.optim``.

    Each spec optimizes all of ``model``'s parameters unless it names submodules of the model
    under ``params`` (a name or a list of names), e.g. ``{"name": "SGD", "params": "encoder", ...}``.
    """
    if cfg is None:
        raise ConfigError(key_path, "missing; add e.g. {'name': 'Adam', 'cfg': {'lr': 0.001}} "
                          "or override configure_optimizers_only")
    specs = cfg if isinstance(cfg, list) else [cfg]
    paths = [join_path(key_path, i) for i in range(len(specs))] if isinstance(cfg, list) else [key_path]
    return [build_spec(spec, "optimizer", path, args=(_select_parameters(model, spec, path),))
            for spec, path in zip(specs, paths)]


def _select_parameters(model: nn.Module, spec: Any, key_path: str) -> list[nn.Parameter]:
    names = spec.get("params") if isinstance(spec, Mapping) else None
    if names is None:
        return list(model.parameters())
    children = dict(model.named_children())
    selected = []
    for name in names if isinstance(names, list) else [names]:
        if name not in children:
            raise ConfigError(join_path(key_path, "params"), f"the model has no submodule '{name}'"
                              f"{suggest(str(name), children) or '; choose from ' + ', '.join(children)}")
        selected += list(children[name].parameters())
    return selected


def build_schedulers(cfg: Any, optimizers: Sequence[Optimizer], default_monitor: str | None = None,
                     key_path: str = "lr_scheduler") -> list[dict[str, Any]] | None:
    """Lightning scheduler dicts ``{"scheduler": ..., "interval": ..., ...}``, or None without a config.

    ``cfg`` is one entry or a list of entries ``{"scheduler": spec, **lightning_keys}``; the i-th
    entry drives the i-th optimizer. A ReduceLROnPlateau without ``monitor`` watches
    ``default_monitor`` (the learner's validation loss).
    """
    if not cfg:
        return None
    entries = cfg if isinstance(cfg, list) else [cfg]
    paths = [join_path(key_path, i) for i in range(len(entries))] if isinstance(cfg, list) else [key_path]
    if len(entries) > len(optimizers):
        raise ConfigError(key_path, f"{len(entries)} schedulers for {len(optimizers)} optimizer(s); "
                          f"give at most one scheduler per optimizer")
    return [_build_scheduler(entry, optimizer, default_monitor, path)
            for entry, optimizer, path in zip(entries, optimizers, paths)]


def _build_scheduler(entry: Any, optimizer: Optimizer, default_monitor: str | None, key_path: str) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or "scheduler" not in entry:
        hint = "move name/cfg under 'scheduler'" if is_spec(entry) else "write it that way"
        raise ConfigError(key_path, f"expected {{'scheduler': {{'name': ..., 'cfg': {{...}}}}, 'interval': ...}}, "
                          f"got {describe(entry)}; {hint}")
    for key in entry:
        if key != "scheduler" and key not in SCHEDULER_KEYS:
            raise ConfigError(join_path(key_path, key), f"unknown scheduler setting '{key}'"
                              f"{suggest(key, SCHEDULER_KEYS) or '; use one of ' + ', '.join(SCHEDULER_KEYS)}")
    if entry.get("interval", "epoch") not in ("epoch", "step"):
        raise ConfigError(join_path(key_path, "interval"), f"expected 'epoch' or 'step', got "
                          f"{describe(entry['interval'])}; use one of those")
    scheduler = build_spec(entry["scheduler"], "lr_scheduler", join_path(key_path, "scheduler"),
                           args=(optimizer,), nested_args=(optimizer,))
    packed = {"scheduler": scheduler, **{k: v for k, v in entry.items() if k != "scheduler"}}
    if isinstance(scheduler, ReduceLROnPlateau) and "monitor" not in packed and default_monitor:
        packed["monitor"] = default_monitor
    return packed


def package_optimizers(optimizers: list[Optimizer], schedulers: list[dict[str, Any]] | None) -> Any:
    """What ``configure_optimizers`` returns: a bare optimizer, ``{optimizer, lr_scheduler}``, or lists."""
    if not schedulers:
        return optimizers[0] if len(optimizers) == 1 else optimizers
    if len(optimizers) == 1 and len(schedulers) == 1:
        return {"optimizer": optimizers[0], "lr_scheduler": schedulers[0]}
    return optimizers, schedulers
