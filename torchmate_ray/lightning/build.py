"""Spec -> object. A *spec* is ``{"name": <str | class>, "cfg": {...}}``; dicts with ``name`` inside
``cfg`` (or lists of them) are built first, against the same slot.

Every builder takes the config key path it is building, so that each failure is a
:class:`ConfigError` that says where in the config the problem is.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from torchmate_ray.errors import ConfigError, describe, join_path, suggest
from torchmate_ray.lightning.resolve import resolve_name

STAGES = ("train", "val", "test", "predict")


def copy_config(cfg: Any) -> Any:
    """A copy of ``cfg`` made of plain dicts and lists (DotMaps become dicts); leaves are shared.

    Tuples stay tuples; objects at the leaves (classes, tensors, loggers) are not copied.
    """
    if isinstance(cfg, Mapping):
        return {key: copy_config(value) for key, value in cfg.items()}
    if isinstance(cfg, list):
        return [copy_config(value) for value in cfg]
    if isinstance(cfg, tuple):
        return tuple(copy_config(value) for value in cfg)
    return cfg


def is_spec(value: Any) -> bool:
    """True for a mapping with a ``name`` key, i.e. something the builders construct."""
    return isinstance(value, Mapping) and "name" in value


def read_spec(spec: Any, key_path: str) -> tuple[Any, dict[str, Any]]:
    """``(name, kwargs)`` of a spec, with ``kwargs`` a fresh dict copied from ``spec["cfg"]``."""
    if not is_spec(spec):
        raise ConfigError(key_path, f"expected a spec {{'name': ..., 'cfg': {{...}}}}, got {describe(spec)}; "
                          f"add a 'name' key")
    cfg = spec.get("cfg")
    if cfg is None:
        return spec["name"], {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(join_path(key_path, "cfg"), f"expected a dict of keyword arguments, got {describe(cfg)}; "
                          f"write it as {{'argument': value}}")
    return spec["name"], copy_config(cfg)


def build_spec(spec: Any, slot: str, key_path: str, args: Sequence[Any] = (),
               kwargs: Mapping[str, Any] | None = None, nested_args: Sequence[Any] = ()) -> Any:
    """Build ``spec`` as ``target(*args, **spec.cfg, **kwargs)``.

    Nested specs inside ``cfg`` are built first, against the same slot, with ``nested_args`` as
    their positional arguments (a scheduler's nested schedulers get the optimizer).

    Example:
        >>> build_spec({"name": "Linear", "cfg": {"in_features": 2, "out_features": 1}}, "criterion", "criterion")
        Linear(in_features=2, out_features=1, bias=True)
    """
    name, spec_kwargs = read_spec(spec, key_path)
    target = resolve_name(name, slot, join_path(key_path, "name"))
    cfg_path = join_path(key_path, "cfg")
    built = {key: build_nested(value, slot, join_path(cfg_path, key), nested_args)
             for key, value in spec_kwargs.items()}
    built.update(kwargs or {})
    return call_checked(target, args, built, cfg_path)


def build_nested(value: Any, slot: str, key_path: str, nested_args: Sequence[Any] = ()) -> Any:
    """A ``cfg`` value with its specs built: a spec, or a list whose elements may be specs."""
    if is_spec(value):
        return build_spec(value, slot, key_path, nested_args)
    if isinstance(value, list):
        return [build_spec(item, slot, join_path(key_path, i), nested_args) if is_spec(item) else item
                for i, item in enumerate(value)]
    return value


def call_checked(target: Any, args: Sequence[Any], kwargs: dict[str, Any], cfg_path: str) -> Any:
    """``target(*args, **kwargs)`` with the arguments checked first and failures as ConfigErrors."""
    check_arguments(target, args, kwargs, cfg_path)
    try:
        return target(*args, **kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(cfg_path, f"{name_of(target)} rejected its arguments: {err}; "
                          f"fix the values under {cfg_path}") from err


def check_arguments(target: Any, args: Sequence[Any], kwargs: Mapping[str, Any], cfg_path: str) -> None:
    """Raise a ConfigError naming the key if ``kwargs`` do not fit ``target``'s signature."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # builtins without a signature: let the call itself decide
    try:
        signature.bind(*args, **kwargs)
        return
    except TypeError as err:
        bind_error = err
    params = signature.parameters
    named = [p.name for p in params.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][len(args):]
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for key in kwargs:
            if key not in named:
                hint = suggest(key, named) or (f"; remove it ({name_of(target)} takes {', '.join(named)})"
                                               if named else f"; remove it ({name_of(target)} takes no arguments)")
                raise ConfigError(join_path(cfg_path, key), f"unexpected argument '{key}' for {name_of(target)}{hint}")
    positional = [p for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for param in positional[len(args):] + [p for p in params.values() if p.kind == p.KEYWORD_ONLY]:
        if param.default is param.empty and param.name not in kwargs:
            raise ConfigError(cfg_path, f"missing required argument '{param.name}' for {name_of(target)}; "
                              f"add it under {cfg_path}")
    raise ConfigError(cfg_path, f"arguments do not fit {name_of(target)}: {bind_error}; fix the values under {cfg_path}")


def name_of(target: Any) -> str:
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__


def build_modules(cfg: Any, slot: str, key_path: str, skip: Sequence[str] = ()) -> nn.Module:
    """One module from a spec, an ``nn.ModuleList`` from a list, an ``nn.ModuleDict`` from a dict of specs.

    Keys in ``skip`` (e.g. the model's ``extra``) are not treated as modules.
    """
    if isinstance(cfg, list):
        return nn.ModuleList([build_spec(item, slot, join_path(key_path, i)) for i, item in enumerate(cfg)])
    if isinstance(cfg, Mapping) and "name" not in cfg and cfg:
        return nn.ModuleDict({key: build_spec(item, slot, join_path(key_path, key))
                              for key, item in cfg.items() if key not in skip})
    if isinstance(cfg, tuple):
        raise ConfigError(key_path, "a tuple of specs is ambiguous; use a list (ModuleList) or a dict (ModuleDict)")
    return build_spec(cfg, slot, key_path)


def build_transform(cfg: Any, key_path: str) -> Any:
    """A transform from a spec or a list of specs: ``None`` when empty, one bare, several in a Compose."""
    if cfg is None:
        return None
    specs = [cfg] if isinstance(cfg, Mapping) else cfg
    if not isinstance(specs, list):
        raise ConfigError(key_path, f"expected a transform spec or a list of them, got {describe(cfg)}; "
                          f"write e.g. [{{'name': 'ToTensor'}}]")
    built = [build_spec(spec, "transform", join_path(key_path, i) if cfg is specs else key_path)
             for i, spec in enumerate(specs)]
    return compose(built)


def compose(transforms: Sequence[Any]) -> Any:
    """``None`` for no transforms, the transform itself for one, a torchvision Compose for several."""
    transforms = [t for t in transforms if t is not None]
    if not transforms:
        return None
    if len(transforms) == 1:
        return transforms[0]
    from torchvision.transforms import Compose

    return Compose(transforms)


def build_dataloader_kwargs(cfg: Mapping[str, Any] | None, stage: str) -> dict[str, Any]:
    """DataLoader kwargs for ``stage``: ``default`` overlaid by the stage's own entry.

    A dict with none of ``default``/``train``/``val``/``test``/``predict`` is used as is for every
    stage. The train loader shuffles unless the config says otherwise (or gives a sampler).
    """
    cfg = cfg or {}
    if not any(key in cfg for key in ("default", *STAGES)):
        kwargs = dict(cfg)
    else:
        kwargs = {**(cfg.get("default") or {}), **(cfg.get(stage) or {})}
    if stage == "train" and "sampler" not in kwargs and "batch_sampler" not in kwargs:
        kwargs.setdefault("shuffle", True)
    return kwargs


def build_trainer_kwargs(cfg: Mapping[str, Any], caller_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Trainer kwargs from ``cfg["training"]`` overlaid by ``caller_kwargs``.

    ``training.early_stopping`` becomes an ``EarlyStopping`` callback that is *added* to the callbacks
    of ``training.callbacks`` (objects or specs from ``lightning.pytorch.callbacks``) and of the caller.
    ``training.logger`` may be a spec from ``lightning.pytorch.loggers``. Every other key goes to the
    Trainer as is and is checked against its signature.
    """
    from lightning.pytorch import Trainer

    training = cfg.get("training") or {}
    if not isinstance(training, Mapping):
        raise ConfigError("training", f"expected a dict of Trainer arguments, got {describe(training)}; "
                          f"write e.g. {{'max_epochs': 10}}")
    kwargs = {key: value for key, value in training.items() if key not in ("early_stopping", "callbacks")}
    check_arguments(Trainer, (), kwargs, "training")
    callbacks = [*_build_callbacks(training.get("callbacks")), *_build_early_stopping(training.get("early_stopping"))]
    if is_spec(kwargs.get("logger")):
        kwargs["logger"] = build_spec(kwargs["logger"], "logger", "training.logger")
    caller = dict(caller_kwargs or {})
    callbacks += _as_list(caller.pop("callbacks", None))
    kwargs.update(caller)
    if callbacks:
        kwargs["callbacks"] = callbacks
    return kwargs


def _build_callbacks(cfg: Any) -> list[Any]:
    return [build_spec(item, "callback", join_path("training.callbacks", i)) if is_spec(item) else item
            for i, item in enumerate(_as_list(cfg))]


def _build_early_stopping(cfg: Any) -> list[Any]:
    if not cfg:
        return []
    if not isinstance(cfg, Mapping):
        raise ConfigError("training.early_stopping", f"expected EarlyStopping arguments as a dict, got "
                          f"{describe(cfg)}; write e.g. {{'monitor': 'val/loss', 'patience': 10}}")
    from lightning.pytorch.callbacks import EarlyStopping

    return [call_checked(EarlyStopping, (), copy_config(cfg), "training.early_stopping")]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
