"""Shared fixtures: a tiny real config over the offline MNIST sample, and Trainer settings for speed."""

from __future__ import annotations

import os

os.environ["TORCHMATE_OFFLINE"] = "1"  # tests never try to download anything

import copy
import dataclasses
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest

LENET = Path(__file__).resolve().parent.parent / "search_spaces" / "lenet.py"
FAST_TRAINER = {
    "max_epochs": 1,
    "limit_train_batches": 2,
    "limit_val_batches": 2,
    "limit_test_batches": 2,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
}

TINY_CONFIG: dict[str, Any] = {
    "learner": {"name": "SupervisedLearner", "cfg": {"classification": True}},
    "criterion": {"name": "CrossEntropyLoss"},
    "model": {"name": "torchmate_ray.models.MLP", "cfg": {"in_features": 784, "hidden": [16], "out_features": 10}},
    "optimizer": {"name": "Adam", "cfg": {"lr": 0.01}},
    "training": {"max_epochs": 1},
    "seed": 7,
    "dataset": {
        "name": "MagicData",
        "cfg": {"name": "MNIST", "val_percentage": 0.1},
        "kwargs": {"root": "./data", "download": True},
        "transforms": {"pre": [{"name": "ToTensor"}]},
    },
    "dataloaders": {"default": {"batch_size": 32}},
}


@pytest.fixture
def tiny_config(tmp_path) -> dict[str, Any]:
    """A real, fast config: an MLP on the offline MNIST sample, data root in a temporary directory."""
    config = copy.deepcopy(TINY_CONFIG)
    config["dataset"]["kwargs"]["root"] = str(tmp_path / "data")
    return config


@pytest.fixture
def fast_trainer(tmp_path) -> dict[str, Any]:
    return {**FAST_TRAINER, "default_root_dir": str(tmp_path)}


@pytest.fixture
def space_file(tmp_path) -> Path:
    """A search-space file of the tiny config (spaces.written_space), data in a temporary directory."""
    from spaces import written_space

    path = tmp_path / "space.py"
    path.write_text(written_space(tmp_path / "data"))
    return path


@pytest.fixture(autouse=True)
def no_early_ray_left():
    """An in-process ``tune_main`` that refuses leaves its early Ray shutting down in its own thread (the command
    does not wait for it): the next test begins once it is down, so that it never meets the Ray of the one
    before (Ray's registry, ``ray.is_initialized()``)."""
    yield
    import sys

    local_ray = sys.modules.get("torchmate_ray.tune.sweep.local_ray")
    last = local_ray.EarlyRay._last if local_ray else None
    if last is not None:
        last._thread.join(timeout=120)


# --- sweeps that several test files read (tests/sweeps.py runs them as users do) ----------------------------
@dataclasses.dataclass
class GrownSweep:
    """lenet.py searched by Optuna, then grown by ``torchmate-tune extend``: what each half left."""
    experiment: Path
    searched: subprocess.CompletedProcess  # the search: 4 trials of 2 epochs
    searched_summary: dict[str, Any]       # its summary.json
    searched_rows: list[dict[str, str]]    # its leaderboard.csv
    searched_told: list[float]             # the values its Optuna study was told, sorted
    searched_files: dict[str, str]         # every file of its trials' directories, by its SHA-256
    grown: subprocess.CompletedProcess     # the extension: 4 trials more


def files_of(trial_dirs: list[Path]) -> dict[str, str]:
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for trial_dir in trial_dirs for path in sorted(trial_dir.rglob("*")) if path.is_file()}


@pytest.fixture(scope="session")
def optuna_sweep(tmp_path_factory) -> GrownSweep:
    """lenet.py unchanged, searched by Optuna with a seed (4 trials, 2 short epochs, FIFO), then extended by 4:
    test_search reads the search, test_extend the extension (each had a sweep of its own before)."""
    from sweeps import TUNE, leaderboard, study_trials, summary

    tmp = tmp_path_factory.mktemp("optuna")
    experiment = tmp / "results" / "exp"
    searched = subprocess.run([TUNE, str(LENET), "--search", "optuna", "--seed", "3", "--num-samples", "4",
                               "--max-epochs", "2", "--scheduler", "fifo", "--set", "training.limit_train_batches=4",
                               "--set", "training.limit_val_batches=2", "--set", f"dataset.kwargs.root='{tmp / 'data'}'",
                               "--storage-path", str(experiment.parent), "--name", "exp"],
                              capture_output=True, text=True, timeout=400, cwd=tmp)
    assert searched.returncode == 0, searched.stderr[-3000:]
    ended, rows, told = summary(experiment), leaderboard(experiment), sorted(t.value for t in study_trials(experiment))
    files = files_of(sorted(path.parent for path in experiment.glob("*/params.json")))
    grown = subprocess.run([TUNE, "extend", str(experiment), "--num-samples", "4"], capture_output=True, text=True,
                           timeout=400, cwd=tmp)
    return GrownSweep(experiment, searched, ended, rows, told, files, grown)


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> tuple[int, Path, str]:
    """spaces.FINISHED_SPACE swept to its end by the torchmate-tune command: its exit code, experiment and printed
    output (test_report's sweep and test_sweep's, one sweep since). In its own process, as users run it: in this
    one, Ray was imported before the command could keep it on the loopback interface (cli.py)."""
    from spaces import FINISHED_SPACE, written_space
    from sweeps import tune

    tmp = tmp_path_factory.mktemp("finished")
    space = tmp / "space.py"
    space.write_text(written_space(tmp / "data", **FINISHED_SPACE))
    run = tune(space, "--storage-path", tmp / "results", "--name", "exp", cwd=tmp)
    assert run.returncode in (0, 1), run.stderr[-3000:]
    return run.returncode, tmp / "results" / "exp", run.stdout
