"""ConfigurableLightningModule: a LightningModule whose model, criteria, optimizers and schedulers
come from the config, each through a hook that a subclass may override."""

from __future__ import annotations

import inspect
import types
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import GradientAccumulationScheduler, ModelCheckpoint
from lightning.pytorch.plugins.precision import DoublePrecision, HalfPrecision, MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor, nn
from torch.optim import Optimizer

from torchmate_ray.errors import ConfigError
from torchmate_ray.lightning.build import build_modules, build_spec
from torchmate_ray.lightning.optim import build_optimizers, build_schedulers, package_optimizers

# Values that are never a Parameter, a Module or a buffer: see ConfigurableLightningModule.__setattr__.
PLAIN_TYPES = (str, bool, int, float, type(None))
# What the automatic optimization loop calls around a step and a fast step does not: a module or callback that
# overrides one of these keeps the automatic loop.
AUTOMATIC_ONLY_HOOKS = ("optimizer_step", "optimizer_zero_grad", "configure_gradient_clipping", "on_before_zero_grad")
# Precision plugins whose manual optimization (manual_backward, LightningOptimizer.step) Lightning supports as
# its automatic one, on one device; their subclasses (DeepSpeed's, FSDP's, XLA's...) keep the automatic loop.
FAST_STEP_PRECISIONS = (Precision, MixedPrecision, HalfPrecision, DoublePrecision)
# What manual_backward adds to loss.backward() with the plain 32-bit plugin on one device: these hooks' calls.
BACKWARD_HOOKS = ("on_before_backward", "on_after_backward")


class ConfigurableLightningModule(pl.LightningModule):
    """A LightningModule built from the whole training config.

    Construction calls, in order: ``configure_configuration(cfg)`` (its result becomes
    ``self.hparams``), ``configure_model()``, ``compile_model(model)``, ``configure_criteria()``.
    Lightning later calls ``configure_optimizers``, which calls ``configure_optimizers_only()`` and
    ``configure_schedulers(optimizers)``. Every step calls ``shared_step(batch, batch_idx, phase)``.

    Log keys are ``log_key(phase, metric)``: ``"val/loss"`` with the default class attributes.

    Fast steps: where a fit needs nothing of Lightning's automatic optimization loop but the optimizer step
    itself (one optimizer, no LR scheduler, no gradient clipping or accumulation, one device: see
    ``can_take_fast_steps``), ``training_step`` zeroes the gradients, calls ``manual_backward`` (or, where
    nothing hooks into it, ``loss.backward()``: ``can_skip_backward_hooks``) and steps the optimizer itself,
    through Lightning's manual optimization: the same updates, precision handling and ``global_step``, without
    the loop's closure and the per-step hooks that nothing here uses. Any other fit takes Lightning's automatic
    optimization as configured.
    """

    _fast_step_trainer: weakref.ref | None = None  # the Trainer whose fit takes fast steps (see on_fit_start)
    _fast_backward = False  # whether those steps call loss.backward() directly (see on_fit_start)

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
        state.pop("_fast_step_trainer", None)  # a weak reference; a copy is not in that fit
        return state

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets bookkeeping values on the module around every hook it calls (the hook's name, some 25
        # times a step), and nn.Module.__setattr__ checks each against Parameter, Module and buffer first. A value
        # of a plain type set on an existing plain attribute (one in __dict__, where nn.Module keeps none of
        # those) ends up where nn.Module would put it: set it directly.
        if type(value) in PLAIN_TYPES and name in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

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

    def can_take_fast_steps(self) -> bool:
        """Whether this fit's training steps may be fast steps (see the class docstring): the module is in
        automatic optimization with its own ``training_step``, overrides none of the hooks only that loop calls
        (``AUTOMATIC_ONLY_HOOKS``) and neither does a callback; one optimizer, no LR scheduler, no gradient
        clipping or accumulation; one device with a plain, mixed, half or double precision plugin; and no
        callback that acts differently under manual optimization (ModelCheckpoint,
        GradientAccumulationScheduler)."""
        trainer = self.trainer
        module_type = type(self)
        return (pl.LightningModule.automatic_optimization.fget(self)
                and module_type.training_step is ConfigurableLightningModule.training_step
                and not any(overrides(module_type, pl.LightningModule, hook) for hook in AUTOMATIC_ONLY_HOOKS)
                and not any(overrides(type(callback), pl.Callback, "on_before_zero_grad")
                            or isinstance(callback, (ModelCheckpoint, GradientAccumulationScheduler))
                            for callback in trainer.callbacks)
                and len(trainer.optimizers) == 1 and not trainer.lr_scheduler_configs
                and not trainer.gradient_clip_val and trainer.accumulate_grad_batches == 1
                and type(trainer.strategy) is SingleDeviceStrategy
                and type(trainer.precision_plugin) in FAST_STEP_PRECISIONS)

    def can_skip_backward_hooks(self) -> bool:
        """Whether a fast step may call ``loss.backward()`` itself rather than ``manual_backward``: with the plain
        32-bit precision plugin, where neither the module (``backward`` included) nor a callback overrides the
        hooks that manual_backward would call around it (``BACKWARD_HOOKS``)."""
        module_type = type(self)
        return (type(self.trainer.precision_plugin) is Precision
                and not any(overrides(module_type, pl.LightningModule, hook) for hook in (*BACKWARD_HOOKS, "backward"))
                and not any(overrides(type(callback), pl.Callback, hook)
                            for callback in self.trainer.callbacks for hook in BACKWARD_HOOKS))

    def takes_fast_steps(self) -> bool:
        """Whether the current fit takes fast steps (decided at its start by ``can_take_fast_steps``)."""
        fast = self._fast_step_trainer() if self._fast_step_trainer is not None else None
        return fast is not None and fast is self._attached_trainer()

    def _attached_trainer(self) -> pl.Trainer | None:
        try:
            return self.trainer
        except RuntimeError:  # not attached to a Trainer
            return None

    def fast_step(self, batch: Any, batch_idx: int) -> Any:
        """A training step that optimizes: ``shared_step``, then zero_grad, backward, ``step``, in the order of
        Lightning's automatic loop. Returns what ``shared_step`` returned."""
        optimizer = self.optimizers()
        output = self.shared_step(batch, batch_idx, "train")
        loss = output.get("loss") if isinstance(output, Mapping) else output
        if isinstance(output, Mapping) and loss is None:
            raise KeyError(f"{type(self).__name__}.shared_step returned a dict without 'loss'; add it")
        if loss is not None and not isinstance(loss, Tensor):
            raise TypeError(f"{type(self).__name__}.shared_step returned {type(loss).__name__}, not a loss tensor, "
                            f"a dict with 'loss', or None")
        optimizer.zero_grad()
        if loss is None:  # as Lightning's automatic loop does: gradients zeroed, no backward, no step
            return None
        if self._fast_backward:
            loss.backward()
        else:
            self.manual_backward(loss)
        optimizer.step()
        return output

    # --- Lightning entry points ----------------------------------------------------------------
    @property
    def automatic_optimization(self) -> bool:
        """Lightning's flag, as set on the module; False during a fit that takes fast steps."""
        return pl.LightningModule.automatic_optimization.fget(self) and not self.takes_fast_steps()

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        pl.LightningModule.automatic_optimization.fset(self, value)

    def on_fit_start(self) -> None:
        # After the optimizers and schedulers are set up and before any step; tied to this Trainer, so that the
        # next fit (another Trainer, maybe with gradient clipping) starts in automatic optimization until its
        # own start decides.
        fast = self.can_take_fast_steps()
        self._fast_step_trainer = weakref.ref(self.trainer) if fast else None
        self._fast_backward = fast and self.can_skip_backward_hooks()

    def configure_optimizers(self) -> Any:
        optimizers = self.configure_optimizers_only()
        return package_optimizers(optimizers, self.configure_schedulers(optimizers))

    def forward(self, x: Any) -> Any:
        return self.get_model()(x)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.takes_fast_steps():
            return self.fast_step(batch, batch_idx)
        return self.shared_step(batch, batch_idx, "train")

    # Lightning reads training_step's signature at every step (does it take batch_idx?); inspect returns a
    # function's __signature__ as is, instead of building it anew from the code each time.
    training_step.__signature__ = inspect.signature(training_step)  # type: ignore[attr-defined]

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


def overrides(cls: type, base: type, name: str) -> bool:
    """Whether ``cls`` defines ``name`` otherwise than ``base`` does."""
    return getattr(cls, name, None) is not getattr(base, name, None)
