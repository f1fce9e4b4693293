"""Experiment trackers (``--tracker``, ``sweep.tracker``): one run per trial, grouped by the sweep's name, with the
trial's config and every epoch's metrics equal to its ``result.json``; read back offline with the trackers' own
formats (MLflow's client; W&B's offline ``.wandb`` file). A missing package is one line, exit 2, nothing started."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import ray

from spaces import Code, tiny_space
from torchmate_ray.cli import tune_main
from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.records.files import MLFLOW_STORE, PARAMS_FILE, RESULT_FILE, read_lines
from torchmate_ray.tune.records.trial_record import EPOCHS
from torchmate_ray.tune.search.space import read_settings
from torchmate_ray.tune.search.trackers import TRACKERS
from torchmate_ray.tune.sweep.tracker_callbacks import WANDB_DEFAULT_PROJECT, build_tracker_callbacks

LEARNER_METRICS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")  # SupervisedLearner's epoch means
LRS = [1e-2, 3e-3]
SWEEP = {"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo"}
TRACKER_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "WANDB_API_KEY", "WANDB_MODE",
               "WANDB_DIR", "WANDB_PROJECT", "WANDB_PROJECT_NAME", "WANDB_GROUP_NAME")


def installed(package: str) -> Any:
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f"{package} is not installed "
                              f"(pip install 'torchmate_ray[trackers]')")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No tracker settings or credentials from the machine (W&B's login: its settings and ~/.netrc)."""
    for key in TRACKER_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-settings"))


def space_file(tmp_path: Path, sweep: dict[str, Any] | None = None) -> Path:
    """Two trials (a grid over the learning rate), 2 epochs of 4 batches each."""
    path = tmp_path / "space.py"
    path.write_text(tiny_space(tmp_path / "data", sweep={**SWEEP, **(sweep or {})}, overrides={
        "optimizer.cfg.lr": Code(f"tune.grid_search({LRS})"),
        "training": {"max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 2}}))
    return path


# --- refusals: nothing starts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_one_line_exit_2_before_ray_starts(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, TRACKERS[name].package, None)  # not importable, installed or not
    code = tune_main([str(space_file(tmp_path)), "--tracker", name, "--storage-path", str(tmp_path / "results")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"torchmate-tune: error: --tracker: the {name} tracker needs the '{name}' package, which is not installed; "
        f"pip install {TRACKERS[name].pip} (or pip install 'torchmate_ray[trackers]')\n")
    assert not ray.is_initialized() and not (tmp_path / "results").exists()


@pytest.mark.slow  # validates the space (builds its configs) before the sweep's pre-flight refuses it
def test_a_missing_tracker_package_named_in_the_file_is_refused_before_the_sweep_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code = tune_main([str(space_file(tmp_path, {"tracker": "mlflow"})), "--storage-path", str(tmp_path / "results")])
    assert code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "torchmate-tune: error: sweep.tracker: the mlflow tracker needs the 'mlflow' package, which is not "
        "installed; pip install mlflow-skinny (or pip install 'torchmate_ray[trackers]')")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("value, message", [
    ("mlfow", "sweep.tracker: unknown tracker 'mlfow' (str); did you mean 'mlflow'?; use one of tensorboard, "
              "mlflow, wandb"),
    (None, "sweep.tracker: unknown tracker None (NoneType); use one of tensorboard, mlflow, wandb"),
], ids=["misspelt", "none"])
def test_an_unknown_tracker_setting_names_the_valid_ones(value, message):
    with pytest.raises(ConfigError) as err:
        read_settings({"tracker": value})
    assert str(err.value) == message


def test_the_default_tracker_adds_no_callback(tmp_path):
    assert read_settings({}).tracker == "tensorboard"
    assert build_tracker_callbacks("tensorboard", tmp_path) == []


@installed("wandb")
def test_wandb_without_credentials_is_refused_unless_offline(clean_env, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"^sweep\.tracker: W&B has no API key \(.*\); set WANDB_API_KEY, or "
                                          r"WANDB_MODE=offline to keep the runs on disk"):
        build_tracker_callbacks("wandb", tmp_path / "exp")
    monkeypatch.setenv("WANDB_MODE", "offline")
    callback, = build_tracker_callbacks("wandb", tmp_path / "exp")
    assert (callback.project, callback.group) == (WANDB_DEFAULT_PROJECT, "exp")


# --- real sweeps, read back ----------------------------------------------------------------------------------
def run_sweep(tmp_path: Path, tracker: str) -> Path:
    """Run the two-trial sweep with ``--tracker``; its experiment directory."""
    try:
        code = tune_main([str(space_file(tmp_path)), "--tracker", tracker, "--storage-path", str(tmp_path / "results"),
                          "--name", "exp"])
    finally:
        ray.shutdown()
    assert code == 0
    return tmp_path / "results" / "exp"


def read_trials(directory: Path) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each trial's id -> (its params.json, its result.json lines)."""
    trials = {path.parent.name: (json.loads((path.parent / PARAMS_FILE).read_text()), read_lines(path))
              for path in directory.glob(f"*/{RESULT_FILE}")}
    assert len(trials) == len(LRS) and all(len(lines) == 2 for _, lines in trials.values())
    return trials


def epoch_metrics(lines: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """result.json's learner metrics as (epoch, value) per name."""
    return {name: [(line[EPOCHS], line[name]) for line in lines] for name in LEARNER_METRICS}


@pytest.mark.slow
@installed("mlflow")
@pytest.mark.parametrize("store", ["default", "sqlite"], ids=["default-file-store", "sqlite-store-from-env"])
def test_mlflow_keeps_one_run_per_trial_with_its_config_and_epochs(store, clean_env, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the default store sets it in this process
    uri = (tmp_path / "results" / "exp" / MLFLOW_STORE).as_uri()
    if store == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    trials = read_trials(run_sweep(tmp_path, "mlflow"))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("exp")
    runs = client.search_runs([experiment.experiment_id])
    names = {run.info.run_name: run for run in runs}  # Ray names a run <trainable>_<trial id>
    assert sorted(names) == sorted(f"train_trial_{trial_id}" for trial_id in trials)
    for run in runs:
        params, lines = trials[run.info.run_name.removeprefix("train_trial_")]
        assert run.info.status == "FINISHED"
        assert run.data.params["optimizer/cfg/lr"] == str(params["optimizer"]["cfg"]["lr"])
        logged = {name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
                  for name in LEARNER_METRICS}
        assert logged == epoch_metrics(lines)
        assert not any(name.startswith("config/") for name in run.data.metrics)  # the config is the params
    assert sorted(float(run.data.params["optimizer/cfg/lr"]) for run in runs) == sorted(LRS)


def read_wandb_records(path: Path) -> list[Any]:
    """The records of an offline run's ``.wandb`` file, as ``wandb sync`` reads them: a 7-byte W&B header, then
    LevelDB's log format (32 KiB blocks of records, each with a 7-byte header: checksum, length, type: full, first,
    middle, last), each record one ``wandb_internal_pb2.Record``. wandb >= 0.2x has no Python reader of its own
    (its datastore module is gone; the Go core reads them)."""
    from wandb.proto import wandb_internal_pb2

    data, block, header = path.read_bytes(), 32768, 7
    assert data[:4] == b":W&B"
    records, pos, pending = [], header, b""
    while pos + header <= len(data):
        if block - pos % block < header:  # a block's trailer too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + header])
        pending += data[pos + header:pos + header + length]
        pos += header + length
        if kind in (1, 4):  # full or last: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.mark.slow
@installed("wandb")
def test_wandb_offline_keeps_one_run_per_trial_in_the_sweeps_group_with_its_epochs(clean_env, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-runs"))
    trials = read_trials(run_sweep(tmp_path, "wandb"))
    runs = {path.name.rpartition("-")[2]: path for path in (tmp_path / "wandb-runs" / "wandb").glob("offline-run-*")}
    assert sorted(runs) == sorted(trials)  # one offline run per trial, named by the trial's id
    for trial_id, directory in runs.items():
        params, lines = trials[trial_id]
        records = read_wandb_records(directory / f"run-{trial_id}.wandb")
        run, = [record.run for record in records if record.WhichOneof("record_type") == "run"]
        assert (run.run_group, run.project) == ("exp", WANDB_DEFAULT_PROJECT)
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        assert config["optimizer"]["cfg"]["lr"] == params["optimizer"]["cfg"]["lr"]
        history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
                   for record in records if record.WhichOneof("record_type") == "history"]
        assert [row["_step"] for row in history] == [line[EPOCHS] for line in lines]
        assert {name: [(row["_step"], row[name]) for row in history] for name in LEARNER_METRICS} == epoch_metrics(lines)
