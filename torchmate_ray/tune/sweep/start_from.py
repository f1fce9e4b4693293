"""Starting a new sweep from an old one's winners: ``--start-from EXPERIMENT_DIR [--start-top K]``.

The old sweep's K best trials (as its leaderboard ranks them) give the new sweep its first K trials: each
domain of the new space (at a dict key path, outside any choice) takes the value the old trial had there; a
domain the old trials did not vary, or that is new, is drawn as usual. What the old trials varied that the new
space does not is listed (``--dry-run`` shows it all). Both searchers run these points first: Tune's random
search through ``points_to_evaluate``, Optuna by enqueueing them in its study, under its own parameter names
(``optuna_space.optuna_points``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.records.files import PARAMS_FILE
from torchmate_ray.tune.records.rows import MISSING, format_value
from torchmate_ray.tune.search.domains import find_domains

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace


@dataclass
class StartPoints:
    """The configs a sweep starts from: a partial trial config per old trial, and what the new space lacks."""

    source: Path
    trials: list[tuple[str, float | None]] = field(default_factory=list)  # the old trials: id, value
    points: list[dict[str, Any]] = field(default_factory=list)  # nested dicts: each new domain's path -> old value
    dropped: list[str] = field(default_factory=list)  # key paths the old sweep varied that the new space does not

    def describe(self) -> list[str]:
        """What ``--dry-run`` shows: each starting config, and what was left out."""
        lines = [f"starts from the {len(self.points)} best trials of {self.source}:"]
        for (trial_id, value), point in zip(self.trials, self.points):
            shown = ", ".join(f"{path}={format_value(value)}" for path, value in flatten(point).items())
            lines.append(f"  {trial_id} ({'-' if value is None else f'{value:.4f}'}): {shown or 'nothing in common'}")
        if self.dropped:
            lines.append(f"  not in this space (left out): {', '.join(self.dropped)}")
        return lines


def read_start_points(space: SearchSpace) -> StartPoints | None:
    """The starting points of ``space``'s sweep (``sweep.start_from``, ``sweep.start_top``), or None: none given.
    Refuses (ConfigError at ``--start-from``) a directory that holds no experiment or no trial with a result."""
    from torchmate_ray.tune.results.data import build_report_data

    source = space.settings.start_from
    if source is None:
        return None
    directory = Path(source).expanduser().resolve()
    try:
        data = build_report_data(directory)
    except ConfigError as err:
        raise ConfigError("--start-from", f"{err}") from None
    ranked = [row for row in data.trials if row.value is not None][:space.settings.start_top]
    if not ranked:
        raise ConfigError("--start-from", f"no trial of {directory} has reported {data.metric} yet; start from a "
                          f"sweep that ran")
    start = StartPoints(directory, [(row.trial_id, row.value) for row in ranked])
    domains = [found for found in find_domains(space.config)
               if not (found.in_choice or found.in_list or found.is_grid)]
    for row in ranked:
        old = json.loads((directory / row.trial_id / PARAMS_FILE).read_text())
        point: dict[str, Any] = {}
        for found in domains:
            value = _value_at(old, found.steps)
            if value is not MISSING:
                node = point
                for key in found.steps[:-1]:
                    node = node.setdefault(key, {})
                node[found.steps[-1]] = value
        start.points.append(point)
    new_paths = {found.trial_path for found in domains}
    start.dropped = [axis.path for axis in data.params if axis.path not in new_paths
                     and not any(axis.path.startswith(path + ".") for path in new_paths)]
    return start


def random_start_arguments(config: Mapping[str, Any], seed: int | None) -> dict[str, Any]:
    """A random search that starts from points: Optuna's random sampler (seeded with ``seed``) in the define-by-run
    search (search/optuna_space.py), which enqueues them. Tune's own random search cannot: it presets a point's values by
    walking into the config, and a choice of specs (lenet.py's optimizers) is a domain, not a dict, to walk into.
    Refuses, at ``--start-from``, what that search cannot draw."""
    import optuna

    from torchmate_ray.tune.search.optuna_space import check_optuna_space

    try:
        check_optuna_space(config)
    except ConfigError as err:
        raise ConfigError("--start-from", f"a random search that starts from other configs draws through Optuna's "
                          f"random sampler, which cannot draw {err.key_path} ({err.message.split(';')[0]}); use "
                          f"tune.choice and uniform or log-uniform domains, or leave --start-from out") from None
    return {"sampler": optuna.samplers.RandomSampler(seed=seed)}


def _value_at(config: Any, steps: tuple[Any, ...]) -> Any:
    for key in steps:
        if not isinstance(config, Mapping) or key not in config:
            return MISSING
        config = config[key]
    return config


def flatten(point: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested point's leaves by dotted path (a choice's value, a dict itself, stays whole at its domain's path)."""
    flat: dict[str, Any] = {}
    for key, value in point.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and "name" not in value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat
