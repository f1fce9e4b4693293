"""Name -> object: a class given as is, a dotted path imported, a bare name looked up in its slot.

Each config location (a *slot*) has default modules where bare names are looked up, e.g. the
``optimizer`` slot looks in ``torch.optim`` so ``"Adam"`` means ``torch.optim.Adam``. Modules are
named as strings and imported only when a name is resolved.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torchmate_ray.errors import ConfigError, describe, suggest


@dataclass(frozen=True)
class Slot:
    """What a config location builds: a noun for messages and where bare names are looked up."""

    noun: str
    modules: tuple[str, ...] = ()


SLOTS: dict[str, Slot] = {
    "learner": Slot("learner", ("torchmate_ray.lightning.lm",)),
    "dataset": Slot("data module", ("torchmate_ray.lightning.datasets",)),
    "dataset_class": Slot("dataset", ("torchvision.datasets", "torchmate_ray.lightning.datasets")),
    "model": Slot("model", ("torchmate_ray.models", "torch.nn")),
    "compile": Slot("compile function"),
    "criterion": Slot("criterion", ("torch.nn",)),
    "optimizer": Slot("optimizer", ("torch.optim",)),
    "lr_scheduler": Slot("scheduler", ("torch.optim.lr_scheduler",)),
    "transform": Slot("transform", ("torchvision.transforms",)),
    "callback": Slot("callback", ("lightning.pytorch.callbacks",)),
    "logger": Slot("logger", ("lightning.pytorch.loggers",)),
}


def resolve_name(name: Any, slot: str, key_path: str) -> Any:
    """Return the class or function that ``name`` stands for in ``slot``.

    ``name`` may be a class or function (returned as is), a dotted import path
    (``"torchmate_ray.models.LeNet5BNMaxPool"``, ``"torch.compile"``) or a bare name looked up,
    ignoring case when the exact spelling is absent, in the slot's default modules.

    Raises:
        ConfigError: at ``key_path`` when the name cannot be found, with close matches suggested.
    """
    where = SLOTS[slot]
    if inspect.isclass(name) or inspect.isroutine(name):
        return name
    if not isinstance(name, str) or not name:
        raise ConfigError(key_path, f"expected the {where.noun}'s name or class, got {describe(name)}; "
                          f"give a name such as {_example(slot)} or the class itself")
    if "." in name:
        return import_dotted(name, key_path)
    if not where.modules:
        raise ConfigError(key_path, f"'{name}' is not an import path; give the full dotted path "
                          f"(e.g. 'package.module.{name}') or the {where.noun} itself")
    for module in map(importlib.import_module, where.modules):
        found = _lookup(module, name)
        if found is not None:
            return found
    hint = suggest(name, list_names(slot)) or f"; choose one from list_names('{slot}') or give a dotted path"
    raise ConfigError(key_path, f"unknown {where.noun} '{name}' in {' or '.join(where.modules)}{hint}")


def import_dotted(path: str, key_path: str) -> Any:
    """Import ``pkg.module.Attr`` (also ``pkg.module.Class.inner``) and return the object."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and module_name.startswith(err.name):
                continue  # this prefix is not a module: try a shorter one
            raise ConfigError(key_path, f"importing '{module_name}' failed: {err}; install the missing "
                              f"package or fix the path") from err
        except Exception as err:
            raise ConfigError(key_path, f"importing '{module_name}' failed: {type(err).__name__}: {err}; "
                              f"fix that module or the path") from err
        for depth, attr in enumerate(parts[split:], start=split):
            if not hasattr(obj, attr):
                where = ".".join(parts[:depth])
                public = [n for n in dir(obj) if not n.startswith("_")] + _submodule_names(obj)
                hint = suggest(attr, public) or f"; check the spelling of '{attr}'"
                raise ConfigError(key_path, f"'{where}' has no attribute '{attr}'{hint}")
            obj = getattr(obj, attr)
        return obj
    raise ConfigError(key_path, f"cannot import '{path}': no module '{parts[0]}'; install it or fix the path")


def list_names(slot: str) -> list[str]:
    """The public classes a bare name can refer to in ``slot``, e.g. ``list_names("optimizer")``."""
    names: set[str] = set()
    for module in map(importlib.import_module, SLOTS[slot].modules):
        names.update(n for n, obj in vars(module).items() if not n.startswith("_") and inspect.isclass(obj))
    return sorted(names)


def _submodule_names(obj: Any) -> list[str]:
    return [info.name for info in pkgutil.iter_modules(getattr(obj, "__path__", []))]


def _lookup(module: ModuleType, name: str) -> Any:
    if hasattr(module, name):
        return getattr(module, name)
    folded = [n for n in dir(module) if n.lower() == name.lower() and not n.startswith("_")]
    return getattr(module, folded[0]) if len(folded) == 1 else None


def _example(slot: str) -> str:
    examples = {"optimizer": "'Adam'", "criterion": "'CrossEntropyLoss'", "lr_scheduler": "'StepLR'",
                "transform": "'ToTensor'", "learner": "'SupervisedLearner'", "dataset": "'MagicData'",
                "dataset_class": "'MNIST'", "model": "'torchmate_ray.models.LeNet5BNMaxPool'"}
    return examples.get(slot, "'package.module.Name'")
