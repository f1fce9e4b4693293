"""Searching beyond random draws: Optuna's TPE over the project's own conditional space (a choice of
optimizers, each with its own domains), its study kept in the experiment."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from torchmate_ray.tune.domains import find_domains
from torchmate_ray.tune.space import load_search_space

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "search_spaces" / "lenet.py"
BRANCH_LR = {"Adam": (3e-4, 1e-2), "SGD": (3e-3, 2e-1)}  # lenet.py's learning-rate range of each optimizer


def study_trials(experiment: Path) -> list:
    """The trials of the experiment's Optuna study, read by Optuna."""
    import optuna

    from torchmate_ray.tune.optuna_space import study_url

    return optuna.load_study(study_name=experiment.name, storage=study_url(experiment)).trials


def test_optuna_draws_lenets_optimizers_each_with_its_own_parameters(tmp_path):
    """lenet.py unchanged: each trial's config holds no domain; a learning rate is drawn from its optimizer's range
    under a parameter of that branch's own, which Optuna keeps with the value told for the trial."""
    from optuna.trial import TrialState

    from torchmate_ray.tune.sweep import build_searcher

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
def test_a_sweep_with_optuna_runs_lenet_unchanged_and_tells_optuna_each_trials_result(tmp_path):
    results = tmp_path / "results"
    run = subprocess.run([str(Path(sys.executable).parent / "torchmate-tune"), str(LENET), "--search", "optuna",
                          "--seed", "3", "--num-samples", "4", "--max-epochs", "2", "--scheduler", "fifo",
                          "--set", "training.limit_train_batches=4", "--set", "training.limit_val_batches=2",
                          "--set", f"dataset.kwargs.root='{tmp_path / 'data'}'", "--storage-path", str(results),
                          "--name", "exp"], capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    experiment = results / "exp"
    assert json.loads((experiment / "summary.json").read_text())["trials"] == {"finished": 4, "stopped": 0,
                                                                               "errored": 0}
    with open(experiment / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    told = sorted(trial.value for trial in study_trials(experiment))
    assert told == sorted(float(row["val/accuracy"]) for row in rows)
    for row in rows:  # each trial's learning rate from its own optimizer's range (the leaderboard names the option)
        low, high = BRANCH_LR[row["optimizer"]]
        assert low <= float(row["optimizer.cfg.lr"]) <= high
