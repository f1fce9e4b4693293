"""Search-space files: the training config with Ray Tune domains at its leaves, and sweep settings.

A search-space file defines ``config`` (any leaf may be ``tune.loguniform(...)``, ``tune.choice([...])``
-- also over names or whole specs --, ``tune.randint``, ``tune.grid_search``, ``tune.sample_from``)
and optionally ``sweep``, a dict of :class:`SweepSettings` fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune.search.sample import Categorical, Domain
from ray.tune.search.variant_generator import generate_variants

from torchmate_ray.errors import ConfigError, describe, suggest
from torchmate_ray.lightning.build import copy_config
from torchmate_ray.lightning.configure import check_config, configure_model_data, configure_trainer
from torchmate_ray.lightning.files import apply_overrides, load_python_file
from torchmate_ray.tune.records.rows import RAY_SCOPES, parse_score
from torchmate_ray.tune.search.budget_settings import check_budgets
from torchmate_ray.tune.search.choices import (DEFAULT_SCHEDULER, DEFAULT_SEARCHER, SCHEDULERS, SEARCHERS, describe_choice,
                                        read_choice)
from torchmate_ray.tune.search.domains import FoundDomain, describe_domain, find_domains  # noqa: F401  (tests import it here)
from torchmate_ray.tune.search.monitors import check_monitors
from torchmate_ray.tune.search.trackers import DEFAULT_TRACKER, read_tracker

MODES = ("min", "max")
RESOURCE_KEYS = ("workers", "cpus_per_worker", "gpus_per_worker")


@dataclass
class SweepSettings:
    """How a sweep runs. Set in the file's ``sweep`` dict; command-line flags override it."""

    metric: str = "val/loss"
    mode: str = "min"
    num_samples: int = 10
    scheduler: Any = DEFAULT_SCHEDULER    # a name from choices.SCHEDULERS, or {"name": ..., "cfg": {...}}
    search_alg: Any = DEFAULT_SEARCHER    # a name from choices.SEARCHERS, or {"name": ..., "cfg": {...}}
    score: str = "last"                   # a trial's one value: last | best | last-<k> (rows.score_curve)
    seed: int | None = None               # the searcher's random state: which configs are drawn (not training's)
    # gpus_per_worker None: a share of a GPU per one-worker trial where the cluster has GPUs (sweep/resources.py)
    resources: dict[str, Any] = field(default_factory=lambda: {"workers": 1, "cpus_per_worker": 1,
                                                               "gpus_per_worker": None})
    max_concurrent: int | None = None
    name: str | None = None
    storage_path: str = "./ray_results"
    max_failures: int = 0              # retries of a trial whose own code raised
    max_process_failures: int = 2      # restarts of a trial whose process or node died (OOM killer, preemption)
    keep_best: int | None = 1          # per trial: the newest checkpoint plus the best k by the metric; None: all
    address: str | None = None         # command line only (--address)
    tracker: str = DEFAULT_TRACKER     # a name from trackers.TRACKERS: one tracker run per trial
    time_budget: float | str | None = None  # the sweep's wall time: seconds, or "90s", "30m", "1.5h" (sweep/budget.py)
    epoch_budget: int | None = None    # epochs of all trials together
    gpu_hours: float | None = None     # GPU-hours of all trials together (each trial's GPUs x its time)
    start_from: str | None = None      # an experiment whose best trials' configs run first (sweep/start_from.py)
    start_top: int = 3                 # how many of them
    confirm_top: int | None = None     # after the search, its best configs trained again with other seeds (sweep/confirm.py)
    confirm_seeds: int = 3             # how many other seeds each


@dataclass
class SearchSpace:
    """A loaded search-space file: where it came from, its config with domains, and its settings."""

    path: Path
    config: dict[str, Any]
    settings: SweepSettings

    @property
    def domains(self) -> list[FoundDomain]:
        return find_domains(self.config)

    @property
    def num_trials(self) -> int:
        """How many trials the sweep runs: ``num_samples`` times every grid's size."""
        total = self.settings.num_samples
        for found in self.domains:
            if found.is_grid and not found.in_choice:
                total *= len(found.domain["grid_search"])
        return total

    @property
    def max_epochs(self) -> int:
        training = self.config.get("training") or {}
        epochs = training.get("max_epochs") if isinstance(training, Mapping) else None
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ConfigError("training.max_epochs", f"a sweep needs a fixed number of epochs, got {describe(epochs)}; "
                              f"set training.max_epochs (or --max-epochs)")
        return epochs


def load_search_space(path: str | Path, overrides: Sequence[str] = (), settings: Mapping[str, Any] | None = None,
                      max_epochs: int | None = None) -> SearchSpace:
    """Load ``path``, apply ``--set`` overrides to its config and ``settings`` over its ``sweep`` dict.

    Raises:
        ConfigError: for a missing or broken file, a missing ``config`` or a bad sweep setting.
    """
    module = load_python_file(path)
    if not hasattr(module, "config"):
        raise ConfigError(str(path), "defines no 'config'; add config = {...} with tune domains at the leaves")
    config = copy_config(module.config)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{path}: config", f"expected a dict or DotMap, got {describe(config)}; define config = {{...}}")
    config = apply_overrides(config, overrides)
    if max_epochs is not None:
        config = apply_overrides(config, [f"training.max_epochs={max_epochs}"])
    file_settings = copy_config(getattr(module, "sweep", {}) or {})
    if not isinstance(file_settings, Mapping):
        raise ConfigError("sweep", f"expected a dict of sweep settings, got {describe(file_settings)}; "
                          f"write sweep = {{'metric': 'val/accuracy', 'mode': 'max'}}")
    if "address" in file_settings:
        raise ConfigError("sweep.address", "the cluster is chosen on the command line; remove it and pass --address")
    merged = {**file_settings, **{k: v for k, v in (settings or {}).items() if v is not None}}
    return SearchSpace(Path(path).resolve(), config, read_settings(merged))


def read_settings(values: Mapping[str, Any]) -> SweepSettings:
    """SweepSettings from a dict, every key and value checked (errors name ``sweep.<key>``)."""
    known = [f.name for f in dataclasses.fields(SweepSettings)]
    for key in values:
        if key not in known:
            raise ConfigError(f"sweep.{key}", f"unknown sweep setting{suggest(key, known) or '; use one of ' + ', '.join(known)}")
    settings = SweepSettings(**{k: v for k, v in values.items() if k != "resources"})
    settings.resources = {**SweepSettings().resources, **_read_resources(values.get("resources") or {})}
    _check_settings(settings)
    return settings


def _read_resources(resources: Any) -> dict[str, Any]:
    if not isinstance(resources, Mapping):
        raise ConfigError("sweep.resources", f"expected a dict, got {describe(resources)}; write "
                          f"{{'cpus_per_worker': 1, 'gpus_per_worker': 0}}")
    for key in resources:
        if key not in RESOURCE_KEYS:
            raise ConfigError(f"sweep.resources.{key}", f"unknown resource{suggest(key, RESOURCE_KEYS) or '; use one of ' + ', '.join(RESOURCE_KEYS)}")
    return dict(resources)


def _check_settings(s: SweepSettings) -> None:
    if s.mode not in MODES:
        raise ConfigError("sweep.mode", f"expected 'min' or 'max', got {describe(s.mode)}; use --mode min|max")
    read_choice(SCHEDULERS, s.scheduler, "sweep.scheduler")
    _check_seed(s)
    _check_score(s.score)
    check_budgets(s.time_budget, s.epoch_budget, s.gpu_hours)
    read_tracker(s.tracker, "sweep.tracker")  # its package is checked when the sweep starts (sweep/tracker_callbacks.py)
    if s.keep_best is not None and (not _is_int(s.keep_best) or s.keep_best < 0):
        raise ConfigError("sweep.keep_best", f"expected an int >= 0 (the best checkpoints kept per trial besides the "
                          f"newest) or None (all), got {describe(s.keep_best)}; use e.g. 1")
    for key, minimum in (("num_samples", 1), ("max_failures", -1), ("max_process_failures", 0)):
        value = getattr(s, key)
        if not _is_int(value) or value < minimum:
            raise ConfigError(f"sweep.{key}", f"expected an int >= {minimum}, got {describe(value)}; fix it")
    for key in ("start_top", "confirm_seeds", *(("confirm_top",) if s.confirm_top is not None else ())):
        if not _is_int(getattr(s, key)) or getattr(s, key) < 1:
            raise ConfigError(f"sweep.{key}", f"expected an int >= 1, got {describe(getattr(s, key))}; e.g. 3")
    if s.confirm_top is None and s.confirm_seeds != SweepSettings.confirm_seeds:
        raise ConfigError("sweep.confirm_seeds", "the seeds of a confirmation, but nothing is confirmed; add "
                          "--confirm-top K (sweep['confirm_top']) or leave --seeds out")
    if s.max_concurrent is not None and (not _is_int(s.max_concurrent) or s.max_concurrent < 1):
        raise ConfigError("sweep.max_concurrent", f"expected an int >= 1, got {describe(s.max_concurrent)}; fix it")
    r = s.resources
    if not _is_int(r["workers"]) or r["workers"] < 1:
        raise ConfigError("sweep.resources.workers", f"expected an int >= 1, got {describe(r['workers'])}; use e.g. 1")
    for key in ("cpus_per_worker", "gpus_per_worker"):
        if key == "gpus_per_worker" and r[key] is None:
            continue
        if isinstance(r[key], bool) or not isinstance(r[key], (int, float)) or r[key] < 0:
            raise ConfigError(f"sweep.resources.{key}", f"expected a number >= 0, got {describe(r[key])}; use e.g. 1")
    if r["cpus_per_worker"] == 0 and not r["gpus_per_worker"]:
        raise ConfigError("sweep.resources", "a trial needs some CPU or GPU; set cpus_per_worker > 0")
    if not isinstance(s.storage_path, str) or "://" in s.storage_path:
        raise ConfigError("sweep.storage_path", f"expected a directory path, got {describe(s.storage_path)}; mount a "
                          f"bucket (s3://, gs://) as a shared directory and give its path")
    if not isinstance(s.metric, str) or not s.metric:
        raise ConfigError("sweep.metric", f"expected a logged metric name, got {describe(s.metric)}; use e.g. 'val/loss'")


def _check_score(score: Any) -> None:
    if parse_score(score) is None:
        ray_name = f"; Ray Tune's scope '{score}' is '{RAY_SCOPES[score]}' here" if score in RAY_SCOPES else ""
        raise ConfigError("sweep.score", f"expected 'last', 'best' or 'last-<k>' (the mean of the last k epochs, e.g. "
                          f"'last-3'), got {describe(score)}{ray_name or '; use one of those'}")


def _check_seed(s: SweepSettings) -> None:
    _, searcher, cfg = read_choice(SEARCHERS, s.search_alg, "sweep.search_alg")
    if s.seed is None:
        return
    if not _is_int(s.seed) or not 0 <= s.seed < 2**32:
        raise ConfigError("sweep.seed", f"expected an int from 0 to 2**32 - 1, got {describe(s.seed)}; use e.g. --seed 7")
    if searcher.seed_arg in cfg and cfg[searcher.seed_arg] != s.seed:
        raise ConfigError("sweep.seed", f"{s.seed} and sweep.search_alg.cfg.{searcher.seed_arg} = "
                          f"{cfg[searcher.seed_arg]!r} both seed the search; keep one of them")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- validation -------------------------------------------------------------------------------
def sample_configs(config: Mapping[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """Concrete configs that between them take every option of every choice and grid at least once."""
    domains = [found.domain for found in find_domains(config)]
    widest = max([len(d.categories) for d in domains if isinstance(d, Categorical)]
                 + [len(d["grid_search"]) for d in domains if isinstance(d, Mapping)] + [1])
    samples = []
    for k in range(max(widest, 2)):
        variants = generate_variants(copy_config(_pick_options(config, k)), constant_grid_search=True,
                                     random_state=seed + k)
        samples.append(next(variants)[1])
    return samples


def _pick_options(cfg: Any, k: int) -> Any:
    """``cfg`` with each choice and grid replaced by its k-th option (cycling), other domains kept."""
    if isinstance(cfg, Categorical):
        return _pick_options(cfg.categories[k % len(cfg.categories)], k)
    if isinstance(cfg, Mapping) and list(cfg) == ["grid_search"]:
        return _pick_options(cfg["grid_search"][k % len(cfg["grid_search"])], k)
    if isinstance(cfg, Domain):
        return cfg
    if isinstance(cfg, Mapping):
        return {key: _pick_options(value, k) for key, value in cfg.items()}
    if isinstance(cfg, list):
        return [_pick_options(value, k) for value in cfg]
    return cfg


def validate_space(space: SearchSpace) -> list[dict[str, Any]]:
    """Build every sampled config (names, signatures, data module, learner, trainer) without training,
    and check that every metric the config names (the sweep's, early stopping's, ...) is one the learner logs
    (``monitors.check_monitors``). Returns the sampled configs.
    """
    space.max_epochs  # a fixed epoch budget is required
    samples = sample_configs(space.config)
    with quiet_lightning():
        for sample in samples:
            check_config(sample)
            model, _ = configure_model_data(sample)
            configure_trainer(sample, logger=False, enable_checkpointing=False, enable_progress_bar=False)
            check_monitors(sample, space.settings.metric, model)
    return samples


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info lines ("GPU available: ...", tips) while configs are only being checked."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def describe_space(space: SearchSpace, plan_lines: Sequence[str]) -> str:
    """What ``--dry-run`` prints: the domains by key path, the sweep settings and the resource plan."""
    domains = space.domains
    width = max([len(found.path) for found in domains] + [0])
    lines = [f"search space: {space.path}", f"domains ({len(domains)}):"]
    lines += [f"  {found.path:<{width}}  {describe_domain(found.domain)}" for found in domains] or ["  (none)"]
    lines.append("sweep:")
    chosen = {"scheduler": describe_choice(SCHEDULERS, space.settings.scheduler, {"max_t": space.max_epochs}),
              "search_alg": describe_choice(SEARCHERS, space.settings.search_alg, {"seed": space.settings.seed})}
    lines += [f"  {key}: {chosen.get(key, value)}" for key, value in dataclasses.asdict(space.settings).items()]
    lines.append(f"  max_epochs: {space.max_epochs}")
    lines.append("resources:")
    lines += [f"  {line}" for line in plan_lines]
    return "\n".join(lines)
