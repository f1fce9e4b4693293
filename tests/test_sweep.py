"""A real sweep, end to end (conftest's finished_sweep): its results files, its printed leaderboard, its best config
trained again, its Ray on the loopback interface, and the waiting trials Tune holds for the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchmate_ray.tune.search.space import load_search_space


def test_tune_holds_as_many_waiting_trials_as_the_plan_runs_at_once(space_file, tmp_path):
    """Waiting trials (pending placement groups) are what makes an autoscaler add nodes: Tune's default holds one
    when a search algorithm wraps its own (a budget's), and the cluster would grow one node at a time."""
    from ray.tune.execution.tune_controller import _get_max_pending_trials

    from torchmate_ray.tune.sweep.budget import build_budget
    from torchmate_ray.tune.sweep.resources import Node, plan_resources
    from torchmate_ray.tune.sweep.run import build_tune_config
    from torchmate_ray.tune.sweep.tune_environment import pending_trials

    space = load_search_space(space_file, settings={"time_budget": "1h", "num_samples": 8})  # random search, budgeted
    plan = plan_resources(space.settings, (Node(0, 0, head=True),), space.num_trials, (Node(1, 1),) * 3)
    budget = build_budget(space.settings, plan.gpus_per_trial, space.max_epochs, tmp_path, time.time())
    search = build_tune_config(space, plan, budget=budget).search_alg
    assert plan.max_concurrent == 3 and _get_max_pending_trials(search) == 1  # Tune's default
    with pending_trials(plan.max_concurrent):
        assert _get_max_pending_trials(search) == 3
    assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ

@pytest.mark.slow
def test_a_raising_trial_is_recorded_as_errored_while_the_others_finish(finished_sweep):
    code, directory, _ = finished_sweep
    summary = json.loads((directory / "summary.json").read_text())
    assert code == 1
    assert summary["trials"]["errored"] == 2  # conftest's finished_sweep: the 2 trials with hidden [8] raise
    assert summary["trials"]["finished"] + summary["trials"]["stopped"] == 4  # ASHA may stop some after epoch 1
    assert list(summary["errors"].values()) == ["RuntimeError: exploding model"] * 2


@pytest.mark.slow
def test_results_files_are_written(finished_sweep):
    _, directory, _ = finished_sweep
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["metric"] == "val/accuracy" and summary["mode"] == "max"
    rows = (directory / "leaderboard.csv").read_text().splitlines()
    assert rows[0] == ("rank,trial_id,status,epochs,val/accuracy,model.name,model.cfg.hidden,optimizer.name,"
                       "optimizer.cfg.lr,node")
    assert [row.split(",")[2] for row in rows[1:]][-1] == "errored"
    assert summary["epochs_run"] == sum(int(row.split(",")[3]) for row in rows[1:])
    assert summary["epoch_budget"] == 6 * 4 and rows[-1].split(",")[3] == "0"  # the errored trials ran no epoch
    assert rows[1].split(",")[1] == summary["best_trial"]
    assert float(rows[1].split(",")[4]) == pytest.approx(summary["best_value"])


@pytest.mark.slow
def test_a_local_sweep_keeps_ray_on_the_loopback_interface(finished_sweep):
    _, directory, _ = finished_sweep
    rows = (directory / "leaderboard.csv").read_text().splitlines()[1:]
    assert {row.split(",")[-1] for row in rows if ",finished," in row or ",stopped," in row} == {"127.0.0.1"}


@pytest.mark.slow
def test_leaderboard_is_printed(finished_sweep):
    _, directory, stdout = finished_sweep
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("#  trial"))
    assert lines[header].split() == ["#", "trial", "status", "epochs", "val/accuracy", "model.name",
                                     "model.cfg.hidden", "optimizer.name", "optimizer.cfg.lr"]
    assert [line.split()[0] for line in lines[header + 1: header + 4]] == ["1", "2", "3"]
    assert f"results: {directory}" in lines


@pytest.mark.slow
def test_best_config_runs_with_torchmate_train(finished_sweep, tmp_path):
    _, directory, _ = finished_sweep
    exe = Path(sys.executable).parent / "torchmate-train"
    result = subprocess.run([str(exe), str(directory / "best_config.py"), "--root-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "val/accuracy" in result.stdout


@pytest.mark.parametrize("trials, period", [(500, "2"), (501, "auto")])
def test_tune_snapshots_the_experiment_every_2_s_up_to_500_trials_and_adaptively_past(trials, period, monkeypatch):
    """A snapshot holds every trial (sweep/tune_environment.py): past 500 trials Tune's adaptive period takes over."""
    from torchmate_ray.tune.sweep.tune_environment import SNAPSHOT_ENV, state_snapshots

    monkeypatch.delenv(SNAPSHOT_ENV, raising=False)
    with state_snapshots(trials):
        assert os.environ[SNAPSHOT_ENV] == period
    assert SNAPSHOT_ENV not in os.environ
    monkeypatch.setenv(SNAPSHOT_ENV, "30")  # the user's
    with state_snapshots(trials):
        assert os.environ[SNAPSHOT_ENV] == "30"
