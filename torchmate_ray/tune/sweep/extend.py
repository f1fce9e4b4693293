"""Growing a finished sweep: ``torchmate-tune extend EXPERIMENT_DIR --num-samples N``.

N more trials run in the same experiment directory, with the same space and settings, as a new Tune run
beside the first (Tune's restore cannot add trials: its searcher's sample count is fixed when a sweep
starts). The trials that ran are kept as they are, and what the sweep learnt from them carries over:

- Optuna's study lives in the experiment (``optuna.db``): the new run loads it, so TPE draws knowing every
  trial before, and the study holds them all;
- random search draws with a seed of its own per extension (from the sweep's seed, when it has one), so it
  draws new configs, not the first run's again;
- ASHA judges the new trials against the rungs the earlier trials reached (``RecordedASHA.add_history``).

The experiment's invocation then counts every trial (``num_samples``: all runs together) and lists each
extension (``grown``); the results, the leaderboard and the report read every trial directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from torchmate_ray.errors import ConfigError, describe
from torchmate_ray.tune.experiment.directory import SEARCH_STAGE, Experiment, load_invocation
from torchmate_ray.tune.experiment.trials import read_trial_states
from torchmate_ray.tune.records.files import PARAMS_FILE
from torchmate_ray.tune.records.rows import ENDED_STATES

SEED_STRIDE = 7919  # extension k of a seeded sweep draws with seed + k * SEED_STRIDE


def extend_experiment(directory: str | Path, num_samples: int | None) -> Experiment:
    """The experiment in ``directory``, to run ``num_samples`` more trials in it; refused (ConfigError) for a
    directory that holds no finished sweep, and for a sweep with unfinished trials (``--resume`` ends them)."""
    from ray import tune

    directory = Path(directory).resolve()
    saved = load_invocation(directory, "give the directory torchmate-tune printed as 'experiment:'")
    if not tune.Tuner.can_restore(str(directory)):
        raise ConfigError(str(directory), "no sweep has run there yet; start it with: torchmate-tune SPACE.py")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ConfigError("--num-samples", f"expected the number of trials to add (an int >= 1), got "
                          f"{describe(num_samples)}; e.g. --num-samples 12")
    unfinished = [t for t, state in read_trial_states(directory).items() if state not in ENDED_STATES]
    if unfinished:
        raise ConfigError(str(directory), f"{len(unfinished)} of its trials are unfinished ({', '.join(unfinished[:3])}"
                          f"{', ...' if len(unfinished) > 3 else ''}); finish them first: torchmate-tune {directory} "
                          f"--resume")
    ran = saved.load_space().settings
    seed = ran.seed if ran.seed is None else (ran.seed + SEED_STRIDE * (len(saved.grown) + 1)) % 2**32
    where = {"storage_path": str(directory.parent), "name": directory.name}
    # what the sweep started from ran already; its confirmation confirmed the winners of its first run
    dropped = ("start_from", "confirm_top", "confirm_seeds")
    kept = {key: value for key, value in saved.settings.items() if key not in dropped}
    this_run = dataclasses.replace(saved, stage=SEARCH_STAGE, settings={
        **kept, **where, "num_samples": num_samples, **({} if seed is None else {"seed": seed})})
    whole = dataclasses.replace(saved, stage=SEARCH_STAGE, settings={**saved.settings, "num_samples": ran.num_samples + num_samples},
                                grown=[*saved.grown, {"num_samples": num_samples, "seed": seed}])
    return Experiment(directory, resume=False, invocation=this_run, saved=whole)


def earlier_trials(directory: Path) -> list[Path]:
    """The directories of the trials that ran in ``directory`` before this run (each holds its ``params.json``)."""
    return sorted(path.parent for path in directory.glob(f"*/{PARAMS_FILE}"))
