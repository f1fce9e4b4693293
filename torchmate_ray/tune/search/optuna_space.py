"""Optuna's TPE over the whole search space, choices with domains inside included (define-by-run).

Ray's OptunaSearch turns a space into Optuna distributions one key path at a time, and so cannot search a
choice whose options hold domains of their own (``search_spaces/lenet.py``: Adam or SGD, each with its own
learning-rate range). Here the space is walked for each trial instead: a choice is one categorical parameter
named by its key path, and a domain inside an option is a parameter named by the path with the option taken:

    optimizer                       categorical: "Adam" or "SGD" (the options' names)
    optimizer[Adam].cfg.lr          float, log, 3e-4 .. 1e-2: asked only in the trials that took Adam
    optimizer[SGD].cfg.lr           float, log, 3e-3 .. 2e-1: its own parameter, with its own history
    dataloaders.train.batch_size    categorical: 32, 64 or 128

Each name stays the same from trial to trial, so TPE learns each branch from the trials that took it. A
trial gets the config with every domain replaced by its value, as random search would give it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Categorical, Function

from torchmate_ray.errors import ConfigError
from torchmate_ray.lightning.configure import is_search_domain
from torchmate_ray.tune.records.files import STUDY_FILE
from torchmate_ray.tune.records.rows import MISSING
from torchmate_ray.tune.search.domains import find_domains

SAMPLED = "config"  # the one key of the define-by-run function's result: the trial's config


class BranchingOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch with :func:`sample_config` as its define-by-run space; each suggestion is the trial's
    whole config. ``metric`` and ``mode`` are given here: Tune hands a searcher with a space of its own none.

    ``experiment_dir``: the study is kept there (``optuna.db``, SQLite, the study named as the experiment), where
    ``optuna.load_study`` and optuna-dashboard read it, and where a sweep that grows finds its history.
    """

    draws_whole_configs = True  # Tune's param_space must then hold no domain (sweep/run.run_sweep gives it none)

    def __init__(self, config: Mapping[str, Any], metric: str, mode: str, experiment_dir: str | None = None,
                 **kwargs: Any):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created ...": the sweep says what runs
        self._space_config = config
        if experiment_dir and "storage" not in kwargs:
            kwargs["storage"] = optuna.storages.RDBStorage(study_url(experiment_dir))
            kwargs.setdefault("study_name", Path(experiment_dir).name)
        if kwargs.get("points_to_evaluate"):  # --start-from's configs: under this search's parameter names
            kwargs["points_to_evaluate"] = optuna_points(config, kwargs["points_to_evaluate"])
        super().__init__(space=self._define, metric=metric, mode=mode, **kwargs)

    def _define(self, trial: Any) -> dict[str, Any]:
        return {SAMPLED: sample_config(self._space_config, trial)}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        suggested = super().suggest(trial_id)  # the parameters Optuna drew, by their names, and SAMPLED
        return suggested[SAMPLED] if isinstance(suggested, dict) else suggested


def study_url(experiment_dir: str | Path) -> str:
    """Where an experiment's Optuna study is: ``optuna.load_study(study_name=<experiment's name>, storage=...)``."""
    return f"sqlite:///{Path(experiment_dir) / STUDY_FILE}"


def sample_config(config: Any, trial: Any, name: str = "") -> Any:
    """``config`` with each domain replaced by what ``trial`` (an Optuna trial) suggests for it."""
    if is_search_domain(config):
        if isinstance(config, Categorical):
            labels = option_labels(config.categories)
            index = labels.index(trial.suggest_categorical(name, labels))
            return sample_config(config.categories[index], trial, f"{name}[{labels[index]}]")
        return suggest(trial, name, distribution(config))
    if isinstance(config, Mapping):
        return {key: sample_config(value, trial, f"{name}.{key}" if name else str(key)) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        items = [sample_config(value, trial, f"{name}.{i}" if name else str(i)) for i, value in enumerate(config)]
        return items if isinstance(config, list) else tuple(items)
    return config


def option_labels(options: list[Any]) -> list[Any]:
    """What Optuna chooses among for a choice: the options themselves when they are plain values; else each
    option's ``name`` (a spec), class name or position, made unique by its position where two are alike."""
    if all(isinstance(option, (str, int, float, bool, type(None))) for option in options):
        return list(options)
    labels = [str(option["name"]) if isinstance(option, Mapping) and isinstance(option.get("name"), str)
              else getattr(option, "__name__", None) or str(i) for i, option in enumerate(options)]
    return [label if labels.count(label) == 1 else f"{label}#{i}" for i, label in enumerate(labels)]


def distribution(domain: Any) -> Any:
    """The Optuna distribution Ray's OptunaSearch makes of a non-choice ``domain`` (the same conversion)."""
    return OptunaSearch.convert_search_space({"domain": domain})["domain"]


def suggest(trial: Any, name: str, drawn_from: Any) -> Any:
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(drawn_from, FloatDistribution):
        return trial.suggest_float(name, drawn_from.low, drawn_from.high, step=drawn_from.step, log=drawn_from.log)
    if isinstance(drawn_from, IntDistribution):
        return trial.suggest_int(name, drawn_from.low, drawn_from.high, step=drawn_from.step, log=drawn_from.log)
    return trial.suggest_categorical(name, drawn_from.choices)


def check_optuna_space(config: Mapping[str, Any]) -> None:
    """Refuse, by key path, what Optuna cannot draw: grid_search (a list to run through, not a distribution),
    sample_from (a function of the other values), a sampler Optuna has no distribution for (normal)."""
    for found in find_domains(config):
        domain = found.domain
        if found.is_grid or isinstance(domain, Function):
            what = "grid_search" if found.is_grid else "sample_from"
            raise ConfigError(found.path, f"Optuna cannot search {what}; use --search random, or a tune.choice")
        if not isinstance(domain, Categorical):
            try:
                distribution(domain)
            except ValueError:
                sampler = type(domain.get_sampler()).__name__.strip("_").lower()
                raise ConfigError(found.path, f"Optuna has no distribution for a {type(domain).__name__.lower()} "
                                  f"with a {sampler} sampler; use --search random, or a uniform or log-uniform "
                                  f"domain") from None


def optuna_points(config: Mapping[str, Any], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point (a partial trial config: sweep/start_from.py) as Optuna's parameters of ``config`` (sample_config's
    names); a choice whose old value is none of its options now is left to Optuna."""
    return [_optuna_params(config, point, "", {}) for point in points]


def _optuna_params(config: Any, value: Any, name: str, params: dict[str, Any]) -> dict[str, Any]:
    if value is MISSING:
        return params
    if is_search_domain(config):
        if not isinstance(config, Categorical):
            params[name] = value
            return params
        labels = option_labels(config.categories)
        chosen = value.get("name") if isinstance(value, Mapping) and "name" in value else value
        if chosen in labels:
            index = labels.index(chosen)
            params[name] = chosen
            _optuna_params(config.categories[index], value, f"{name}[{chosen}]", params)
        return params
    if isinstance(config, Mapping) and isinstance(value, Mapping):
        for key, item in config.items():
            _optuna_params(item, value.get(key, MISSING), f"{name}.{key}" if name else str(key), params)
    return params
