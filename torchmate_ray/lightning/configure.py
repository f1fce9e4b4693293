"""configure_all and friends: the whole config -> (Trainer, LightningModule, LightningDataModule).

Everything is built, and so every config error raised, before anything trains. The caller's config
is never changed: each function works on its own copy.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from torchmate_ray.errors import ConfigError, describe, join_path, suggest
from torchmate_ray.lightning.build import STAGES, build_dataloader_kwargs, build_spec, build_trainer_kwargs, copy_config
from torchmate_ray.lightning.optim import build_optimizers, build_schedulers

TOP_LEVEL_KEYS = ("learner", "criterion", "lr_scheduler", "model", "optimizer", "training", "seed", "dataset",
                  "dataloaders")


def configure_all(cfg: Mapping[str, Any], trainer_kwargs: Mapping[str, Any] | None = None,
                  model_kwargs: Mapping[str, Any] | None = None, data_kwargs: Mapping[str, Any] | None = None,
                  del_dataset_module_kwargs: bool = True) -> tuple[pl.Trainer, pl.LightningModule, pl.LightningDataModule]:
    """Build ``(trainer, model, data)`` from ``cfg``; ``trainer.fit(model, data)`` then trains.

    Args:
        cfg: the training config (dict or DotMap) with ``learner``, ``dataset`` and what they need.
        trainer_kwargs: Trainer arguments that win over ``cfg["training"]``; their ``callbacks`` are
            added to the config's.
        model_kwargs / data_kwargs: extra constructor arguments for the learner / data module, winning
            over ``learner.kwargs`` / ``dataset.kwargs``.
        del_dataset_module_kwargs: keep ``dataset.kwargs`` (machine-specific, e.g. ``root``) out of
            both modules' hparams.

    Raises:
        ConfigError: for any bad name, argument, missing key or wrong type, naming its key path.

    Example:
        >>> trainer, model, data = configure_all(config, {"max_epochs": 1})
        >>> trainer.fit(model, data)
    """
    model, data = configure_model_data(cfg, model_kwargs, data_kwargs, del_dataset_module_kwargs)
    trainer = configure_trainer(cfg, **(trainer_kwargs or {}))
    return trainer, model, data


def configure_model_data(cfg: Mapping[str, Any], model_kwargs: Mapping[str, Any] | None = None,
                         data_kwargs: Mapping[str, Any] | None = None,
                         del_dataset_module_kwargs: bool = True) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """Seed, then build the data module and the learner: ``(model, data)``."""
    cfg = copy_config(cfg)
    check_config(cfg)
    seed_everything(cfg)
    data_module_kwargs = split_dataset_kwargs(cfg, del_dataset_module_kwargs)
    data = _build_data(cfg, {**data_module_kwargs, **(data_kwargs or {})})
    model = _build_learner(copy_config(cfg), model_kwargs)
    return model, data


def configure_trainer(cfg: Mapping[str, Any], **trainer_kwargs: Any) -> pl.Trainer:
    """A Trainer from ``cfg["training"]`` (``early_stopping`` added as a callback) and ``trainer_kwargs``."""
    kwargs = build_trainer_kwargs(copy_config(cfg), trainer_kwargs)
    try:
        return pl.Trainer(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError("training", f"Trainer rejected its arguments: {err}; fix training") from err
    except Exception as err:  # Lightning's MisconfigurationException, e.g. accelerator='gpu' without a GPU
        if type(err).__name__ != "MisconfigurationException":
            raise
        raise ConfigError("training", f"{err}; fix training") from err


def configure_data(cfg: Mapping[str, Any], del_dataset_module_kwargs: bool = True, **data_kwargs: Any) -> pl.LightningDataModule:
    """The data module of ``dataset.name``, built as ``DataModule(cfg, **dataset.kwargs, **data_kwargs)``."""
    cfg = copy_config(cfg)
    check_config(cfg)
    return _build_data(cfg, {**split_dataset_kwargs(cfg, del_dataset_module_kwargs), **data_kwargs})


def configure_model(cfg: Mapping[str, Any], **model_kwargs: Any) -> pl.LightningModule:
    """The learner of ``learner.name``, built as ``Learner(cfg, **learner.kwargs, **model_kwargs)``."""
    cfg = copy_config(cfg)
    check_config(cfg)
    return _build_learner(cfg, model_kwargs)


def _build_data(cfg: dict[str, Any], kwargs: Mapping[str, Any]) -> pl.LightningDataModule:
    name = _required(cfg, "dataset", "{'name': 'MagicData', 'cfg': {...}, 'kwargs': {'root': './data'}}")
    data = build_spec({"name": name}, "dataset", "dataset", args=(cfg,), kwargs=kwargs)
    if not isinstance(data, pl.LightningDataModule):
        raise ConfigError("dataset.name", f"{type(data).__name__} is not a LightningDataModule; "
                          f"name a data module such as 'MagicData'")
    return data


def _build_learner(cfg: dict[str, Any], model_kwargs: Mapping[str, Any] | None) -> pl.LightningModule:
    name = _required(cfg, "learner", "{'name': 'SupervisedLearner', 'cfg': {'classification': True}}")
    kwargs = {**(cfg["learner"].get("kwargs") or {}), **(model_kwargs or {})}
    learner = build_spec({"name": name}, "learner", "learner", args=(cfg,), kwargs=kwargs)
    if not isinstance(learner, pl.LightningModule):
        raise ConfigError("learner.name", f"{type(learner).__name__} is not a LightningModule; "
                          f"name a learner such as 'SupervisedLearner'")
    return learner


def _required(cfg: Mapping[str, Any], key: str, example: str) -> Any:
    section = cfg.get(key)
    if not isinstance(section, Mapping) or not section.get("name"):
        raise ConfigError(join_path(key, "name"), f"missing; add {key} = {example}")
    return section["name"]


def split_dataset_kwargs(cfg: dict[str, Any], delete: bool) -> dict[str, Any]:
    """``dataset.kwargs`` (constructor arguments of the data module), removed from ``cfg`` if ``delete``."""
    dataset = cfg.get("dataset")
    if not isinstance(dataset, Mapping):
        return {}
    kwargs = dataset.pop("kwargs", None) if delete else dataset.get("kwargs")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ConfigError("dataset.kwargs", f"expected a dict, got {describe(kwargs)}; write e.g. {{'root': './data'}}")
    return dict(kwargs or {})


def seed_everything(cfg: Mapping[str, Any]) -> None:
    """Seed Python, NumPy and torch (and dataloader workers) with ``cfg["seed"]`` if present, 0 included."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg["seed"], workers=True, verbose=False)


# --- checks that run before anything is built ---------------------------------------------------
def check_config(cfg: Any) -> None:
    """Raise a ConfigError for what can be caught without building the modules.

    Checks: the config is a dict; a top-level key that looks like a typo of a known one; search-space
    domains left in the config; ``seed``; the dataloader arguments of every stage; optimizers and
    schedulers (built once against a throwaway parameter).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError("config", f"expected a dict (or DotMap), got {describe(cfg)}; define config = {{...}}")
    for key in cfg:
        close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.8)
        if key not in TOP_LEVEL_KEYS and close:
            raise ConfigError(str(key), f"unknown top-level key; did you mean '{close[0]}'?")
    check_no_search_domains(cfg)
    seed = cfg.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise ConfigError("seed", f"expected an int in [0, 2**32), got {describe(seed)}; use e.g. 42")
    check_dataloaders(cfg.get("dataloaders"))
    if cfg.get("optimizer") is not None:
        check_optimization(cfg)


def is_search_domain(value: Any) -> bool:
    """A Ray Tune domain (``tune.uniform(...)``, ``tune.choice(...)``, ...) or a ``{"grid_search": [...]}`` dict.

    Recognised by the module its class comes from, so that the Lightning side never imports Ray.
    """
    return type(value).__module__.startswith("ray.tune") or (isinstance(value, Mapping) and list(value) == ["grid_search"])


def first_search_domain(cfg: Any, key_path: str = "") -> tuple[str, Any] | None:
    """``(key path, domain)`` of the first search domain left in ``cfg`` (dicts and lists, at any depth), or None.

    All the Lightning side needs of search spaces: that a config to train holds none. Where each domain
    sits (inside a choice's option, in a list) is the sweep's business: ``tune.domains``.
    """
    if is_search_domain(cfg):
        return key_path, cfg
    items = cfg.items() if isinstance(cfg, Mapping) else enumerate(cfg) if isinstance(cfg, (list, tuple)) else ()
    for key, value in items:
        found = first_search_domain(value, join_path(key_path, key))
        if found is not None:
            return found
    return None


def check_no_search_domains(cfg: Mapping[str, Any]) -> None:
    found = first_search_domain(cfg)
    if found is not None:
        path, domain = found
        raise ConfigError(path, f"is a search-space domain ({type(domain).__name__}), not a value; run the file "
                          f"with torchmate-tune, or give a value (e.g. --set {path}=...)")


def check_dataloaders(cfg: Any) -> None:
    """Check every stage's DataLoader arguments, by key, and build a DataLoader over ``[0]`` with them."""
    if cfg is None:
        return
    if not isinstance(cfg, Mapping):
        raise ConfigError("dataloaders", f"expected a dict, got {describe(cfg)}; write {{'default': {{'batch_size': 64}}}}")
    single = not any(key in cfg for key in ("default", *STAGES))
    for section in () if single else ("default", *STAGES):
        if not isinstance(cfg.get(section) or {}, Mapping):
            raise ConfigError(f"dataloaders.{section}", f"expected a dict, got {describe(cfg[section])}; "
                              f"write {{'batch_size': 64}}")
    accepted = list(inspect.signature(DataLoader).parameters)[1:]
    for stage in STAGES:
        kwargs = build_dataloader_kwargs(cfg, stage)
        for key in kwargs:
            if key not in accepted:
                source = "dataloaders" if single else f"dataloaders.{stage if key in (cfg.get(stage) or {}) else 'default'}"
                raise ConfigError(join_path(source, key), f"unexpected argument '{key}' for DataLoader"
                                  f"{suggest(key, accepted) or '; remove it'}")
        where = "dataloaders" if single else f"dataloaders.{stage}"
        try:
            DataLoader([0], **kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(where, f"DataLoader rejected its arguments: {err}; fix {where} "
                              f"(or dataloaders.default)") from err


def check_optimization(cfg: Mapping[str, Any]) -> None:
    """Build the optimizers and schedulers once on a throwaway parameter, to fail before training."""
    probe = torch.nn.Linear(1, 1)
    optimizer_cfg = cfg["optimizer"]
    specs = optimizer_cfg if isinstance(optimizer_cfg, list) else [optimizer_cfg]
    without_params = [({k: v for k, v in s.items() if k != "params"} if isinstance(s, Mapping) else s) for s in specs]
    optimizers = build_optimizers(without_params if isinstance(optimizer_cfg, list) else without_params[0], probe)
    build_schedulers(cfg.get("lr_scheduler"), optimizers, "val/loss")


def pre_cli(module_cls: type, cfg: Mapping[str, Any]) -> Any:
    """A factory for LightningCLI that fills in ``cfg`` as ``module_cls``'s first argument.

    Example:
        >>> LightningCLI(pre_cli(SupervisedLearner, cfg), pre_cli(MagicData, cfg))
    """
    base = pl.LightningDataModule if issubclass(module_cls, pl.LightningDataModule) else pl.LightningModule

    def factory(*args: Any, **kwargs: Any) -> Any:
        return module_cls(copy_config(cfg), *args, **kwargs)

    params = list(inspect.signature(module_cls).parameters.values())[1:]
    factory.__signature__ = inspect.Signature(params, return_annotation=base)  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = module_cls.__name__
    return factory
