"""A sweep's budgets, --time-budget and --epoch-budget: kept while the sweep runs and across an interruption, and
what was cut written down. Each real sweep runs trials whose epochs are each held 1 s, 2 at a time: far more
than its budget holds."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from spaces import EPOCH_LOG, Code, epoch_log, tiny_space
from sweeps import start_sweep, tune_in_process, wait_for
from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.search.budget_settings import parse_duration, planned_epochs



@pytest.mark.parametrize("given, seconds", [(90, 90.0), ("90", 90.0), ("45s", 45.0), ("30m", 1800.0),
                                            ("1.5h", 5400.0), (" 2 m ", 120.0), (".5h", 1800.0)])
def test_a_duration_is_read_in_seconds_minutes_or_hours(given, seconds):
    assert parse_duration(given, "sweep.time_budget") == seconds


@pytest.mark.parametrize("given", ["10x", "", "-5s", "0", 0, True, "1h30m", float("inf")])
def test_what_is_no_duration_is_refused_by_its_key(given):
    with pytest.raises(ConfigError, match=r"^--time-budget: expected a duration > 0 such as 90s, 30m or 1.5h, got "):
        parse_duration(given, "--time-budget")


def test_the_plans_epochs_follow_ashas_rungs():
    """27 trials under rungs 1, 3, 9 (reduction 3): 27 reach epoch 1, 9 go on to 3, 3 to 9."""
    assert planned_epochs(27, 9, [1, 3, 9], 3) == 27 * 1 + 9 * 2 + 3 * 6
    assert planned_epochs(27, 9, list(range(1, 10)), None) == 27 * 9


@pytest.mark.parametrize("drawn, saved_epochs", [(500, [1, 2, 3, 4]), (501, [0, 0, 0, 0])],
                         ids=["500-drawn", "501-drawn"])
def test_the_budget_is_saved_at_every_report_up_to_500_trials_and_once_a_second_past(tmp_path, drawn, saved_epochs):
    """budget.jsonl lists every trial drawn: past 500, four reports in one second write it once, and the run's end
    (flush) writes what was held."""
    from torchmate_ray.tune.sweep.budget import SweepBudget, open_budget

    now = [1000.0]
    budget = SweepBudget(seconds=None, epochs=10_000, gpu_hours=None, gpus_per_trial=0, max_epochs=9,
                         experiment_dir=str(tmp_path), started_at=now[0], clock=lambda: now[0])
    open_budget(budget)
    budget.state.started += [f"t{index}" for index in range(drawn - 1)]
    budget.trial_drawn("last")  # written: the first save of the run
    saved = []
    for epoch in (1, 2, 3, 4):
        now[0] += 0.2
        budget("last", {"epochs": epoch, "time_this_iter_s": 0.2})
        saved.append(json.loads((tmp_path / "budget.jsonl").read_text())["state"]["epochs"])
    assert saved == saved_epochs  # 501: held since the draw's save (0 epochs), for less than a second
    budget.flush()
    state = json.loads((tmp_path / "budget.jsonl").read_text())["state"]
    assert state["epochs"] == 4 and len(state["started"]) == drawn and state["epochs_of"] == {"last": 4}


def budgeted_space(tmp_path: Path, trials: int = 8, epochs: int = 4, **budget: object) -> str:
    return tiny_space(tmp_path / "data", code=EPOCH_LOG, sweep={
        "metric": "val/loss", "mode": "min", "num_samples": trials, "scheduler": "fifo", **budget}, overrides={
        "optimizer.cfg.lr": Code("tune.loguniform(1e-3, 1e-1)"), "training.max_epochs": epochs,
        "training.callbacks": [epoch_log(tmp_path / "epochs.log", 1.0)]})


def run_budgeted_sweep(tmp_path: Path, *flags: str, **shape: int) -> tuple[str, Path, dict]:
    """The sweep in this process (no driver to start): what it printed, its experiment, its summary.json."""
    space = tmp_path / "space.py"
    space.write_text(budgeted_space(tmp_path, **shape))
    code, out = tune_in_process(space, "--storage-path", tmp_path / "results", "--name", "exp", *flags)
    assert code == 0, out[-3000:]
    experiment = tmp_path / "results" / "exp"
    return out, experiment, json.loads((experiment / "summary.json").read_text())


def reported_epochs(experiment: Path) -> dict[str, list[dict]]:
    """Each trial's reported epochs, as its result.json holds them."""
    return {path.parent.name: [json.loads(line) for line in path.read_text().splitlines()]
            for path in experiment.glob("*/result.json")}


@pytest.mark.slow
def test_a_time_budget_ends_the_sweep_within_it_plus_one_epoch_and_says_what_was_cut(tmp_path):
    """16 trials of 5 epochs (at least 40 s of epochs alone, 2 at a time) in 30 s from the command's start (45 s before,
    when the command ran in a process of its own)."""
    out, experiment, summary = run_budgeted_sweep(tmp_path, "--time-budget", "30s", trials=16, epochs=5)
    budget, epochs = summary["budget"], reported_epochs(experiment)
    # an epoch's time as Tune measured it (a trial's first holds its setup too: on a slow host none has a second)
    longest_epoch = max((result["time_this_iter_s"] for results in epochs.values() for result in results), default=0)
    # a trial cut in its epoch is killed at once (budget.BudgetEnd); one whose process was still starting cannot be,
    # and Tune waits for that start (at most 10 s) before it kills it
    starting = 10 if any(cut["epochs"] == 0 for cut in budget["cut"].values()) else 0
    assert summary["timings"]["end_s"] <= 30 + max(longest_epoch, starting) + 1  # Tune looks once a step
    assert budget["ended_by"] == "time budget" and budget["limits"]["seconds"] == 30 and epochs
    started = json.loads((experiment / "budget.jsonl").read_text())["state"]["started"]
    assert budget["not_started"] >= 1 and budget["not_started"] + len(started) == 16
    for trial_id, cut in budget["cut"].items():  # a cut trial kept the epochs it reported, short of its 5
        assert cut["by"] == "time budget" and cut["epochs"] == len(epochs.get(trial_id, [])) < 5
    assert budget["spent"]["epochs"] == sum(map(len, epochs.values())) == summary["epochs_run"]
    assert "budget 0:" in out and "ended by the time budget" in out  # the live lines and the end


@pytest.mark.slow
def test_an_epoch_budget_is_never_exceeded_across_an_interruption(tmp_path):
    """Counted in the trials' files (the epochs reported, and the epochs begun): the sweep is stopped (Ctrl-C) after
    its third epoch began, then resumed; the resumed run spends what is left of the 7 epochs, not 7 more."""
    driver, log, experiment = start_sweep(tmp_path, budgeted_space(tmp_path, epoch_budget=7))  # set in the file
    wait_for(driver, log, lambda epochs: sum(map(len, epochs.values())) >= 3)
    os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=120) == 130, driver.stderr.read()[-3000:]
    assert 1 <= json.loads((experiment / "budget.jsonl").read_text())["state"]["epochs"] < 7
    code, out = tune_in_process(experiment, "--resume")  # in this process: no second driver to start
    assert code == 0, out[-2000:]
    summary, epochs = json.loads((experiment / "summary.json").read_text()), reported_epochs(experiment)
    begun = [line for line in log.read_text().splitlines() if not line.endswith(" end")]
    assert sum(map(len, epochs.values())) == summary["budget"]["spent"]["epochs"] == 7
    assert len(begun) <= 7 + 2  # the two trials killed by Ctrl-C began an epoch they then trained again
    assert summary["budget"]["ended_by"] == "epoch budget" and summary["budget"]["not_started"] >= 1
    assert set(summary["budget"]["cut"]) <= set(epochs) and all(
        cut["epochs"] == len(epochs[trial_id]) for trial_id, cut in summary["budget"]["cut"].items())
    assert "epochs 7 of 7" in out
