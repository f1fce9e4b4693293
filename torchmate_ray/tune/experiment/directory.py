"""An experiment directory: where a sweep lives, what it is called, and the invocation that started it.

``<storage_path>/<name>/`` holds Ray Tune's experiment files, the trials' own directories and
``torchmate_sweep.json``: what started the sweep (the search-space file, its ``--set`` overrides,
``--max-epochs``, the settings and resources given, the search's seed given or the file's). It is written
once the sweep is accepted (its pre-flight passed), so that ``torchmate-tune DIR --resume`` and
``torchmate-tune report DIR`` need nothing else, and a refused sweep leaves nothing behind.

The command reads a saved invocation before Ray and Lightning are imported (to start its Ray early with
the experiment's resources): this module imports neither at module level.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.records.files import INVOCATION_FILE, write_whole

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SearchSpace

SEARCH_STAGE, CONFIRM_STAGE = "search", "confirm"  # what an experiment's Tune run does (Invocation.stage)
REQUIRED_KEYS = {"space_file", "overrides", "max_epochs", "settings"}  # "resources" came later: optional

# The command-line flag of each saved setting and resource, for the one-line refusals of a resume.
SETTING_FLAGS = {"num_samples": "--num-samples", "metric": "--metric", "mode": "--mode", "scheduler": "--scheduler",
                 "search_alg": "--search", "seed": "--seed", "max_concurrent": "--max-concurrent",
                 "tracker": "--tracker", "time_budget": "--time-budget", "epoch_budget": "--epoch-budget",
                 "gpu_hours": "--gpu-hours", "start_from": "--start-from", "start_top": "--start-top",
                 "confirm_top": "--confirm-top", "confirm_seeds": "--seeds"}
RESOURCE_FLAGS = {"workers": "--workers-per-trial", "cpus_per_worker": "--cpus-per-worker",
                  "gpus_per_worker": "--gpus-per-worker"}


@dataclass
class Invocation:
    """What starts a sweep: the search-space file and what the command line said over it."""

    space_file: str
    overrides: list[str] = field(default_factory=list)
    max_epochs: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)   # sweep settings given (name, storage_path, ...)
    resources: dict[str, Any] = field(default_factory=dict)  # sweep.resources given; saved: as planned
    grown: list[dict[str, Any]] = field(default_factory=list)  # each extension's num_samples and seed (sweep/extend.py)
    stage: str = SEARCH_STAGE  # what Tune ran last: the search, or the confirmation of its winners (sweep/confirm.py)

    def load_space(self) -> SearchSpace:
        """The search space: the file with these overrides, epochs, settings and resources; a sweep without
        a name gets one (``default_name``)."""
        from torchmate_ray.tune.search.space import load_search_space, read_settings

        space = load_search_space(self.space_file, self.overrides, self.settings, self.max_epochs)
        if self.resources:
            space.settings = read_settings({**vars(space.settings),
                                            "resources": {**space.settings.resources, **self.resources}})
        space.settings.name = space.settings.name or default_name(space)
        return space


@dataclass
class Experiment:
    """An experiment directory a sweep may run in (``open_experiment`` checked it), and what started the sweep."""

    directory: Path
    resume: bool
    invocation: Invocation
    saved: Invocation | None = None  # an extension (sweep/extend.py): the whole sweep's invocation, to keep instead

    @property
    def extends(self) -> bool:
        return self.saved is not None

    def accept(self, resources: Mapping[str, Any]) -> None:
        """The sweep passed its pre-flight and Tune is about to run it: a new sweep keeps its invocation, with
        its ``resources`` as planned, in its directory (a resumed one keeps the invocation it has; an extension
        the whole sweep's, and its budget counts anew: the earlier run's record is kept beside it)."""
        if self.saved is not None:
            from torchmate_ray.tune.records.files import BUDGET_FILE

            budget = self.directory / BUDGET_FILE
            if budget.is_file():
                budget.replace(budget.with_suffix(f".{len(self.saved.grown) - 1}.jsonl"))
            save_invocation(self.directory, self.saved)
        elif not self.resume:
            save_invocation(self.directory, dataclasses.replace(self.invocation, resources=dict(resources)))


def experiment_dir(space: SearchSpace) -> Path:
    return Path(space.settings.storage_path).expanduser().resolve() / space.settings.name


def default_name(space: SearchSpace) -> str:
    return f"{space.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def open_experiment(space: SearchSpace, invocation: Invocation, resume: bool) -> Experiment:
    """The experiment of ``space``'s sweep, refused if ``resume`` finds nothing there or a new sweep would
    overwrite one. Nothing is written yet (``Experiment.accept``)."""
    from ray import tune

    path = experiment_dir(space)
    if not resume:
        check_writable(path)
    if resume and not tune.Tuner.can_restore(str(path)):
        raise ConfigError("--resume", f"nothing to resume in {path}; check --storage-path and --name")
    if not resume and path.exists() and tune.Tuner.can_restore(str(path)):
        raise ConfigError("--name", f"{path} already holds an experiment; continue it with --resume or pick "
                          f"another --name")
    # the name and the search's seed as they are now (a default name, the file's sweep.seed): a resume runs the same
    seed = {} if space.settings.seed is None else {"seed": space.settings.seed}
    named = dataclasses.replace(invocation, settings={**invocation.settings, "name": space.settings.name, **seed})
    return Experiment(path, resume, named)


def check_writable(path: Path) -> None:
    """Refuse an experiment directory that cannot be made, before anything starts: a probe directory is made and
    removed in the nearest directory of ``path`` that exists (a root's permission bits say nothing of /proc)."""
    import tempfile

    parent = next(p for p in (path, *path.parents) if p.exists())
    try:
        if not parent.is_dir():
            raise NotADirectoryError("not a directory")
        Path(tempfile.mkdtemp(prefix=".torchmate-probe-", dir=parent)).rmdir()
    except OSError as err:
        raise ConfigError("--storage-path", f"cannot make {path} ({parent}: {err.strerror or err}); give a "
                          f"directory you can write (every node's, on a cluster)") from err


# --- the saved invocation ------------------------------------------------------------------------------
def read_invocation(directory: Path) -> Invocation | None:
    """What started the experiment in ``directory``, or None: it holds no readable, complete invocation."""
    try:
        saved = json.loads((directory / INVOCATION_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, Mapping) or not REQUIRED_KEYS <= set(saved):
        return None
    return Invocation(**{key: saved[key] for key in (*REQUIRED_KEYS, "resources", "grown", "stage") if key in saved})


def load_invocation(directory: Path, fix: str) -> Invocation:
    """``read_invocation``, refusing a directory without one: ``<dir>: is not a torchmate-tune experiment
    (...); <fix>``, or with one that cannot be read."""
    if not (directory / INVOCATION_FILE).is_file():
        raise ConfigError(str(directory), f"is not a torchmate-tune experiment (no {INVOCATION_FILE}); {fix}")
    invocation = read_invocation(directory)
    if invocation is None:
        raise ConfigError(str(directory / INVOCATION_FILE), "unreadable or incomplete; it is written by "
                          "torchmate-tune when a sweep starts: restore it")
    return invocation


def save_invocation(directory: Path, invocation: Invocation) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_whole(directory / INVOCATION_FILE, json.dumps(dataclasses.asdict(invocation), indent=2) + "\n")


def load_experiment_space(directory: Path) -> SearchSpace:
    """The search space a sweep ran with, from its directory's saved invocation (the report's reading)."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "no such directory; give an experiment directory "
                          "(<storage_path>/<name>, as torchmate-tune printed it)")
    invocation = load_invocation(directory, "give the directory torchmate-tune printed as 'experiment:'")
    try:
        return invocation.load_space()
    except ConfigError as err:
        raise ConfigError(str(directory), f"cannot reload the sweep's search space ({err}); restore that file: the "
                          f"report needs its metric and domains") from err


# --- what a command line runs ----------------------------------------------------------------------------
def resolve_invocation(given: Invocation, resume: bool) -> Invocation:
    """What to run: ``given`` (the command line); or, with ``resume``, what started the experiment, found from
    ``given.space_file`` when it is the experiment's directory, else from the file's storage path and name. A
    resumed sweep is the sweep that started: a flag that says otherwise is refused (``resume_invocation``)."""
    target = Path(given.space_file)
    given = dataclasses.replace(given, space_file=str(target.resolve()))
    if target.is_dir():
        if not resume:
            raise ConfigError(str(target), "is an experiment directory; add --resume to continue it")
        directory = target.resolve()
        saved = load_invocation(directory, "give the search-space file with --storage-path and --name instead")
        return resume_invocation(saved, given, directory, space_file_given=False)
    if not resume:
        return given
    from torchmate_ray.tune.search.space import load_search_space

    named = load_search_space(given.space_file, given.overrides, given.settings, given.max_epochs)
    saved = read_invocation(experiment_dir(named)) if named.settings.name else None
    if saved is None:  # nothing to resume there: open_experiment says so
        return given
    return resume_invocation(saved, given, experiment_dir(named), space_file_given=True)


def resume_invocation(saved: Invocation, given: Invocation, directory: Path, space_file_given: bool) -> Invocation:
    """The saved invocation of the experiment in ``directory``, to resume it; refuses, with one line, a flag
    of ``given`` that contradicts it (another --num-samples, --max-epochs, scheduler...), since Tune resumes
    the sweep as it started. ``--address`` may name another cluster."""
    def refuse(flag: str, was: Any) -> ConfigError:
        return ConfigError(flag, f"the experiment in {directory} ran with {was!r}; a resumed sweep keeps what it "
                                 f"started with: leave {flag} out, or start a new sweep with another --name")

    if space_file_given and given.space_file != saved.space_file:
        raise refuse("SPACE.py", saved.space_file)
    if given.overrides and given.overrides != saved.overrides:
        raise refuse("--set", saved.overrides)
    ran = saved.load_space()
    if given.max_epochs is not None and given.max_epochs != ran.max_epochs:
        raise refuse("--max-epochs", ran.max_epochs)
    for key, flag in SETTING_FLAGS.items():
        if key in given.settings and given.settings[key] != getattr(ran.settings, key):
            raise refuse(flag, getattr(ran.settings, key))
    for key, flag in RESOURCE_FLAGS.items():
        if key in given.resources and given.resources[key] != saved.resources.get(key):
            raise refuse(flag, saved.resources.get(key))
    address = given.settings.get("address")
    return dataclasses.replace(saved, settings={**saved.settings, "storage_path": str(directory.parent),
                                                "name": directory.name, **({"address": address} if address else {})})
