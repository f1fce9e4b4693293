"""ConfigurableLightningModule: a LightningModule whose model, criteria, optimizers and schedulers
come from the config, each through a hook that a subclass may override."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from torch import nn
from torch.optim import Optimizer

from torchmate_ray.lightning.build import build_modules, build_spec
from torchmate_ray.lightning.errors import ConfigError
from torchmate_ray.lightning.optim import build_optimizers, build_schedulers, package_optimizers


class ConfigurableLightningModule(pl.LightningModule):
    """A LightningModule built from the whole training config.

    Construction calls, in order: ``configure_configuration(cfg)`` (its result becomes
    ``self.hparams``), ``configure_model()``, ``compile_model(model)``, ``configure_criteria()``.
    Lightning later calls ``configure_optimizers``, which calls ``configure_optimizers_only()`` and
    ``configure_schedulers(optimizers)``. Every step calls ``shared_step(batch, batch_idx, phase)``.

    Log keys are ``log_key(phase, metric)``: ``"val/loss"`` with the default class attributes.
    """

    log_separator = "/"
    log_metrics: dict[str, str] = {}
    log_phases = {"train": "train", "val": "val", "test": "test", "predict": "predict"}
    log_order = "phase-metric"

    def __init__(self, cfg: Mapping[str, Any]):
        super().__init__()
        self.save_hyperparameters(self.configure_configuration(cfg))
        self._model = self.compile_model(self.configure_model())
        self.criteria = self.configure_criteria()
        self._retire_configure_model()

    def _retire_configure_model(self) -> None:
        # Lightning (>= 2.1) calls a hook of the same name, configure_model(), at the start of every
        # fit/validate/test to create layers late. Ours has already built the model: shadow it on the
        # instance with Lightning's no-op, so Lightning neither calls it nor builds and discards a second
        # model (which would also consume the seeded RNG).
        self.__dict__["configure_model"] = types.MethodType(pl.LightningModule.configure_model, self)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("configure_model", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._retire_configure_model()

    # --- hooks -------------------------------------------------------------------------------
    def configure_configuration(self, cfg: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return the configuration to use; it becomes ``self.hparams``."""
        return cfg

    def configure_model(self) -> nn.Module:
        """Return the model to train, from ``model`` (a spec, a list, or a dict of specs)."""
        cfg = self.hparams.get("model")
        if cfg is None:
            raise ConfigError("model", "missing; add {'name': 'torchmate_ray.models.LeNet5BNMaxPool', 'cfg': {...}} "
                              "or override configure_model")
        return build_modules(cfg, "model", "model", skip=("extra",))

    def compile_model(self, model: nn.Module) -> nn.Module:
        """Return ``model`` compiled by ``model.extra.compile`` (e.g. ``{"name": "torch.compile"}``), if set."""
        cfg = self.hparams.get("model")
        extra = cfg.get("extra") if isinstance(cfg, Mapping) else None
        spec = extra.get("compile") if isinstance(extra, Mapping) else None
        if not spec:
            return model
        return build_spec(spec, "compile", "model.extra.compile", args=(model,))

    def configure_criteria(self) -> nn.Module:
        """Return the criterion (or a ModuleList / ModuleDict of criteria) from ``criterion``."""
        cfg = self.hparams.get("criterion")
        if cfg is None:
            raise ConfigError("criterion", "missing; add e.g. {'name': 'CrossEntropyLoss'} or override configure_criteria")
        return build_modules(cfg, "criterion", "criterion")

    def configure_optimizers_only(self) -> list[Optimizer]:
        """Return the optimizers from ``optimizer`` (a spec or a list of specs)."""
        return build_optimizers(self.hparams.get("optimizer"), self.get_model())

    def configure_schedulers(self, optimizers: list[Optimizer]) -> list[dict[str, Any]] | None:
        """Return Lightning scheduler dicts from ``lr_scheduler``, or None."""
        monitor = self.log_key("val", "loss") if "loss" in self.log_metrics else None
        return build_schedulers(self.hparams.get("lr_scheduler"), optimizers, monitor)

    def shared_step(self, batch: Any, batch_idx: int, phase: str) -> Any:
        """The work of every step; ``phase`` is ``train``, ``val``, ``test`` or ``predict``."""
        raise NotImplementedError(f"{type(self).__name__} must implement shared_step(batch, batch_idx, phase)")

    def logged_metrics(self) -> set[str] | None:
        """The metric names this learner logs (for checking a sweep's metric up front), or None if unknown."""
        return None

    # --- Lightning entry points ----------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizers = self.configure_optimizers_only()
        return package_optimizers(optimizers, self.configure_schedulers(optimizers))

    def forward(self, x: Any) -> Any:
        return self.get_model()(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return self.shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Any:
        return self.shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Any:
        return self.shared_step(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self.shared_step(batch, batch_idx, "predict")

    # --- helpers -------------------------------------------------------------------------------
    def get_model(self, *names: Any) -> Any:
        """The model; ``get_model("a")`` a submodule, ``get_model("a", "b")`` or ``get_model(["a"])`` a list."""
        if not names:
            return self._model
        if len(names) == 1 and isinstance(names[0], Sequence) and not isinstance(names[0], str):
            return [self._submodule(name) for name in names[0]]
        picked = [self._submodule(name) for name in names]
        return picked[0] if len(picked) == 1 else picked

    def _submodule(self, name: Any) -> nn.Module:
        return getattr(self._model, name) if isinstance(name, str) else self._model[name]

    def log_key(self, phase: str, metric: str, postfix: str | None = None) -> str:
        """The logged name of ``metric`` in ``phase``, e.g. ``log_key("val", "accuracy", "@5")`` -> ``val/accuracy@5``."""
        if metric not in self.log_metrics:
            raise KeyError(f"{type(self).__name__}.log_metrics has no '{metric}'; it has {sorted(self.log_metrics)}")
        metric_name = self.log_metrics[metric] + (postfix or "")
        phase_name = self.log_phases[phase]
        if self.log_order == "phase-metric":
            return f"{phase_name}{self.log_separator}{metric_name}"
        if self.log_order == "metric-phase":
            return f"{metric_name}{self.log_separator}{phase_name}"
        raise ValueError(f"log_order must be 'phase-metric' or 'metric-phase', not {self.log_order!r}")
