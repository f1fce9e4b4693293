"""The sweep's choices by name: one table of schedulers, one of searchers.

Each table is the one place a name is listed: the command line's ``--scheduler``/``--search`` choices,
the check of ``sweep.scheduler``/``sweep.search_alg``, the building of the object, ``--dry-run`` and the
report's rungs all read it. Classes are dotted paths, imported only when a sweep builds one (Ray's
schedulers and Optuna are slow to import; the command line reads these tables before anything heavy).

    name, choice, cfg = read_choice(SCHEDULERS, {"name": "asha", "cfg": {"grace_period": 2}}, "sweep.scheduler")
    choice.arguments(cfg, {"max_t": 9})   # {'max_t': 9, 'grace_period': 2, 'reduction_factor': 3}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torchmate_ray.errors import ConfigError, describe, suggest


@dataclass(frozen=True)
class Choice:
    """A scheduler or searcher: its class, its defaults, and what the sweep and the config fill in."""

    target: str                                    # "package.module.Class", imported by load()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Arguments the sweep fills in unless ``cfg`` sets them: time_attr (the rungs' unit: epochs done),
    # max_t (the sweep's max_epochs), max_concurrent (trials at once), points_to_evaluate (--start-from's).
    sweep_args: tuple[str, ...] = ()
    # Arguments built from the trial config unless ``cfg`` sets them: name -> function(config).
    config_args: Mapping[str, Callable[[Mapping[str, Any]], Any]] = field(default_factory=dict)
    check: Callable[[Mapping[str, Any]], None] | None = None  # refuses a config it cannot search (ConfigError)
    seed_arg: str | None = None     # a searcher's argument that fixes which configs it draws: sweep.seed (--seed)
    rungs: bool = False             # stops trials at grace_period * reduction_factor**k epochs (ASHA)
    tune_checkpoints: bool = False  # hands one trial's checkpoint to another: only through Tune's checkpoints

    @property
    def class_name(self) -> str:
        return self.target.rpartition(".")[2]

    def load(self) -> type:
        module, _, name = self.target.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def arguments(self, cfg: Mapping[str, Any], sweep: Mapping[str, Any],
                  config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The keyword arguments: ``sweep``'s values for ``sweep_args`` (those it has) and its ``seed`` (when not
        None) for ``seed_arg``, the defaults, those built from ``config`` (when given), then ``cfg`` over them all."""
        filled = {key: sweep[key] for key in self.sweep_args if key in sweep}
        if self.seed_arg and sweep.get("seed") is not None:
            filled[self.seed_arg] = sweep["seed"]
        if config is not None:
            filled.update({key: build(config) for key, build in self.config_args.items() if key not in cfg})
        return {**filled, **self.defaults, **cfg}


def read_spec(spec: Any) -> tuple[Any, dict[str, Any]]:
    """``"asha"`` or ``{"name": "asha", "cfg": {...}}`` -> (name, cfg)."""
    if isinstance(spec, Mapping):
        return spec.get("name"), dict(spec.get("cfg") or {})
    return spec, {}


def read_choice(table: Mapping[str, Choice], spec: Any, key_path: str) -> tuple[str, Choice, dict[str, Any]]:
    """(name, its Choice, cfg) for ``spec``; an unknown name is a ConfigError at ``key_path`` naming the valid ones."""
    name, cfg = read_spec(spec)
    if not isinstance(name, str) or name not in table:
        raise ConfigError(key_path, f"unknown choice {describe(name)}{suggest(str(name), table) or ''}; "
                          f"use one of {', '.join(table)}")
    return name, table[name], cfg


def describe_choice(table: Mapping[str, Choice], spec: Any, sweep: Mapping[str, Any]) -> str:
    """What ``--dry-run`` shows: ``asha (RecordedASHA: max_t=9, grace_period=1, reduction_factor=3)``, the
    arguments as built but those ``sweep`` lacks."""
    name, choice, cfg = read_choice(table, spec, "")
    arguments = ", ".join(f"{key}={value!r}" for key, value in choice.arguments(cfg, sweep).items())
    return f"{name} ({choice.class_name}{': ' + arguments if arguments else ''})"


def list_milestones(spec: Any, max_epochs: int) -> list[int]:
    """The epochs at which the scheduler ``spec`` decides: with rungs (ASHA), ``grace_period *
    reduction_factor**k`` below ``max_t``, then ``max_t``; otherwise every epoch."""
    _, choice, cfg = read_choice(SCHEDULERS, spec, "sweep.scheduler")
    if not choice.rungs:
        return list(range(1, max_epochs + 1))
    args = choice.arguments(cfg, {"max_t": max_epochs})
    milestone, milestones = args["grace_period"], []
    while milestone < args["max_t"]:
        milestones.append(milestone)
        milestone *= args["reduction_factor"]
    return [*milestones, args["max_t"]]


def pbt_mutations(config: Mapping[str, Any]) -> dict[str, Any]:
    """PBT's ``hyperparam_mutations``: the config's domains that sit at dict-only key paths."""
    from ray.tune.search.sample import Function

    from torchmate_ray.tune.search.domains import find_domains

    mutations: dict[str, Any] = {}
    for found in find_domains(config):
        if found.in_choice or found.in_list or found.is_grid or isinstance(found.domain, Function):
            continue
        node = mutations
        for key in found.steps[:-1]:
            node = node.setdefault(key, {})
        node[found.steps[-1]] = found.domain
    if not mutations:
        raise ConfigError("sweep.scheduler", "PBT needs continuous or choice domains at dict key paths to mutate; "
                          "use another scheduler")
    return mutations


def check_optuna_space(config: Mapping[str, Any]) -> None:
    """Refuse what Optuna cannot draw, by key path (optuna_space.py; imported here only when Optuna is chosen)."""
    from torchmate_ray.tune.search.optuna_space import check_optuna_space as check

    check(config)


SCHEDULERS: dict[str, Choice] = {
    # rebuilds its rungs from the trials' own records on resume (asha.py)
    "asha": Choice("torchmate_ray.tune.search.asha.RecordedASHA", {"grace_period": 1, "reduction_factor": 3},
                   sweep_args=("time_attr", "max_t"), rungs=True),
    "hyperband": Choice("ray.tune.schedulers.HyperBandScheduler", {"reduction_factor": 3},
                        sweep_args=("time_attr", "max_t")),
    "median": Choice("ray.tune.schedulers.MedianStoppingRule", {"grace_period": 1, "min_samples_required": 3},
                     sweep_args=("time_attr",)),
    "pbt": Choice("ray.tune.schedulers.PopulationBasedTraining", {"perturbation_interval": 1},
                  sweep_args=("time_attr",), config_args={"hyperparam_mutations": pbt_mutations},
                  tune_checkpoints=True),
    "fifo": Choice("ray.tune.schedulers.FIFOScheduler"),
}
SEARCHERS: dict[str, Choice] = {
    # Tune's random and grid search; sweep.seed (--seed) is its random_state: the same configs every time
    "random": Choice("ray.tune.search.BasicVariantGenerator", sweep_args=("max_concurrent", "points_to_evaluate"),
                     seed_arg="random_state"),
    # Optuna's TPE over the whole space, choices with domains inside too (define-by-run, optuna_space.py; Tune
    # applies the sweep's concurrency to it); sweep.seed seeds its sampler; its study is kept in the experiment
    "optuna": Choice("torchmate_ray.tune.search.optuna_space.BranchingOptunaSearch",
                     sweep_args=("metric", "mode", "experiment_dir", "points_to_evaluate"),
                     config_args={"config": lambda config: config}, check=check_optuna_space, seed_arg="seed"),
}
DEFAULT_SCHEDULER, DEFAULT_SEARCHER = "asha", "random"
NO_EARLY_STOPPING = "fifo"  # a confirmation's scheduler (sweep/confirm.py): every trial trains every epoch
# random search that starts from given configs (sweep/start_from.py) draws through this one, with a random sampler
DRAWS_FROM_POINTS = "optuna"
