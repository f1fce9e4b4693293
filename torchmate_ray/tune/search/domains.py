"""Where a search space's domains sit: each found as a typed place, not a string to parse back.

    for found in find_domains({"optimizer": tune.choice([{"name": "Adam", "cfg": {"lr": tune.loguniform(1e-4, 1e-1)}},
                                                         "SGD"])}):
        found.path        # "optimizer", then "optimizer.<option 0>.cfg.lr" (as --dry-run shows it)
        found.trial_path  # "optimizer", then "optimizer.cfg.lr" (where a sampled trial config holds the value)
        found.in_choice   # False, then True

Ray-free at import (the command line reads it before Ray starts): a domain is recognised as the
Lightning side recognises one, by the module its class comes from (``configure.is_search_domain``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torchmate_ray.lightning.configure import is_search_domain


@dataclass(frozen=True)
class Option:
    """A step into the ``index``-th option of a choice or grid: a sampled config has no key for it."""

    index: int

    def __str__(self) -> str:
        return f"<option {self.index}>"


@dataclass(frozen=True)
class FoundDomain:
    """A search domain and the steps that lead to it: dict keys (str), list positions (int), options."""

    steps: tuple[str | int | Option, ...]
    domain: Any

    @property
    def path(self) -> str:
        """The key path as the user reads it, options named: ``optimizer.<option 0>.cfg.lr``."""
        return ".".join(map(str, self.steps))

    @property
    def trial_path(self) -> str:
        """The key path of the value in a sampled trial config: ``optimizer.cfg.lr``."""
        return ".".join(str(step) for step in self.steps if not isinstance(step, Option))

    @property
    def in_choice(self) -> bool:
        """Inside an option of a choice or grid: sampled only in the trials that take that option."""
        return any(isinstance(step, Option) for step in self.steps)

    @property
    def in_list(self) -> bool:
        return any(isinstance(step, int) for step in self.steps)

    @property
    def is_grid(self) -> bool:
        return isinstance(self.domain, Mapping)


def find_domains(config: Any, steps: tuple[str | int | Option, ...] = ()) -> list[FoundDomain]:
    """Every search domain in ``config``, at any depth, in dicts and lists and in the options of choices and
    grids (after the choice or grid itself), in the config's order."""
    if is_search_domain(config):
        options = config["grid_search"] if isinstance(config, Mapping) else getattr(config, "categories", [])
        return [FoundDomain(steps, config)] + [found for i, option in enumerate(options)
                                               for found in find_domains(option, (*steps, Option(i)))]
    if isinstance(config, Mapping):
        return [found for key, value in config.items() for found in find_domains(value, (*steps, str(key)))]
    if isinstance(config, (list, tuple)):
        return [found for i, value in enumerate(config) for found in find_domains(value, (*steps, i))]
    return []


def varied_paths(config: Mapping[str, Any]) -> list[str]:
    """The trial-config key paths that the domains of ``config`` vary, each once, in the config's order."""
    return list(dict.fromkeys(found.trial_path for found in find_domains(config)))


# --- how --dry-run shows a domain (Ray's domain classes, imported when one is shown) ---
def describe_domain(domain: Any) -> str:
    """``loguniform(0.0001, 0.1)``, ``choice(['Adam', 'SGD'])``, ``grid_search([32, 64])``, ..."""
    from ray.tune.search.sample import Categorical, Function, Integer, Quantized

    if isinstance(domain, Mapping):
        return f"grid_search({_short(domain['grid_search'])})"
    if isinstance(domain, Categorical):
        return f"choice({_short(domain.categories)})"
    if isinstance(domain, Function):
        return f"sample_from({getattr(domain.func, '__name__', 'function')})"
    sampler = domain.get_sampler()
    quantized = isinstance(sampler, Quantized)
    base = sampler.sampler if quantized else sampler
    kind = type(base).__name__.lstrip("_").lower()
    if isinstance(domain, Integer):
        kind = {"uniform": "randint", "loguniform": "lograndint"}.get(kind, kind)
    prefix, q = ("q", f", {sampler.q}") if quantized else ("", "")
    if kind == "normal":
        return f"{prefix}randn({base.mean}, {base.sd}{q})"
    return f"{prefix}{kind}({domain.lower}, {domain.upper}{q})"


def _short(values: Any) -> str:
    text = repr([_name(v) for v in values])
    return text if len(text) <= 80 else text[:77] + "...]"


def _name(value: Any) -> Any:
    if isinstance(value, Mapping) and "name" in value:
        return f"{{name: {_name(value['name'])}, ...}}"
    return getattr(value, "__name__", value)
