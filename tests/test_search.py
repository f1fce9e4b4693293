"""Searching beyond random draws: Optuna's TPE over the project's own conditional space (a choice of
optimizers, each with its own domains), its study kept in the experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps import study_trials
from torchmate_ray.tune.search.domains import find_domains
from torchmate_ray.tune.search.space import load_search_space

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "search_spaces" / "lenet.py"
BRANCH_LR = {"Adam": (3e-4, 1e-2), "SGD": (3e-3, 2e-1)}  # lenet.py's learning-rate range of each optimizer


def test_optuna_draws_lenets_optimizers_each_with_its_own_parameters(tmp_path):
    """lenet.py unchanged: each trial's config holds no domain; a learning rate is drawn from its optimizer's range
    under a parameter of that branch's own, which Optuna keeps with the value told for the trial."""
    from optuna.trial import TrialState

    from torchmate_ray.tune.sweep.run import build_searcher

    space = load_search_space(LENET, settings={"search_alg": "optuna", "seed": 5})
    experiment = tmp_path / "exp"
    experiment.mkdir()
    searcher = build_searcher(space, max_concurrent=2, experiment_dir=experiment)
    drawn = []
    for i in range(16):
        drawn.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", {"val/accuracy": (i % 5) / 10})
    assert {config["optimizer"]["name"] for config in drawn} == {"Adam", "SGD"}
    for config in drawn:
        optimizer = config["optimizer"]
        low, high = BRANCH_LR[optimizer["name"]]
        assert find_domains(config) == [] and low <= optimizer["cfg"]["lr"] <= high
        assert ("momentum" in optimizer["cfg"]) == (optimizer["name"] == "SGD")  # the option's constants, as written
        assert config["model"] == space.config["model"] and config["dataloaders"]["train"]["batch_size"] in (32, 64, 128)
    trials = study_trials(experiment)
    assert len(trials) == 16 and all(trial.state == TrialState.COMPLETE for trial in trials)
    for i, (trial, config) in enumerate(zip(trials, drawn)):
        branch, cfg = config["optimizer"]["name"], config["optimizer"]["cfg"]
        assert trial.params == {"optimizer": branch, f"optimizer[{branch}].cfg.lr": cfg["lr"],
                                f"optimizer[{branch}].cfg.weight_decay": cfg["weight_decay"],
                                "dataloaders.train.batch_size": config["dataloaders"]["train"]["batch_size"]}
        assert trial.value == (i % 5) / 10


@pytest.mark.slow
def test_a_sweep_with_optuna_runs_lenet_unchanged_and_tells_optuna_each_trials_result(optuna_sweep):
    """The search half of conftest's optuna_sweep (before it is extended)."""
    run = optuna_sweep.searched
    assert run.returncode == 0, run.stderr[-3000:]
    assert optuna_sweep.searched_summary["trials"] == {"finished": 4, "stopped": 0, "errored": 0}
    rows, told = optuna_sweep.searched_rows, optuna_sweep.searched_told
    assert told == sorted(float(row["val/accuracy"]) for row in rows)
    for row in rows:  # each trial's learning rate from its own optimizer's range (the leaderboard names the option)
        low, high = BRANCH_LR[row["optimizer"]]
        assert low <= float(row["optimizer.cfg.lr"]) <= high
