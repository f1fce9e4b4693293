"""Confirming a sweep's winners: ``--confirm-top K --seeds S`` trains the search's K best configs again with S other
training seeds, and the results rank the configs by the mean of their runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import statistics
import time
from pathlib import Path

import pytest

from spaces import Code, tiny_space
from sweeps import start_sweep, tune_in_process
from torchmate_ray.tune.records.rows import TrialRow, best_trial
from torchmate_ray.tune.results.confirmed_ranking import rank_confirmed
from torchmate_ray.tune.results.data import ComputeAccount, ReportData
from torchmate_ray.tune.results.page import summary_rows
from torchmate_ray.tune.search.space import SearchSpace, read_settings


def confirming(experiment: Path) -> bool:
    """The confirmation has handed out a trial, and one of its trials has reported an epoch."""
    try:
        trials = json.loads((experiment / "confirm.jsonl").read_text())["trials"]
    except (OSError, ValueError):
        return False
    return any((experiment / trial_id / "result.json").is_file() for trial_id in trials)


def row(trial_id: str, value: float | None, epochs: int = 2, status: str = "finished") -> TrialRow:
    return TrialRow(trial_id, status, epochs, value, {"lr": trial_id})


def test_a_config_is_ranked_by_the_mean_of_its_runs_not_by_its_luckiest():
    """a's search trial was best (0.1) but its other seeds were poor; b is steady. b's runs count its search trial
    (it trained every epoch); c's search trial was cut short (1 epoch), so only its confirmations count; an
    errored confirmation counts for nothing."""
    rows = [row("a", 0.1), row("a1", 0.9), row("a2", 0.8), row("b", 0.3), row("b1", 0.35), row("b2", 0.25),
            row("c", 0.05, epochs=1), row("c1", 0.4), row("c2", None, status="errored")]
    record = {"trials": {"a1": {"of": "a"}, "a2": {"of": "a"}, "b1": {"of": "b"}, "b2": {"of": "b"},
                         "c1": {"of": "c"}, "c2": {"of": "c"}}}
    ranked = rank_confirmed(rows, record, max_epochs=2, mode="min")
    assert [(c.trial_id, c.trials) for c in ranked] == [("b", ["b", "b1", "b2"]), ("c", ["c1"]),
                                                        ("a", ["a", "a1", "a2"])]
    assert ranked[0].mean == pytest.approx(0.3) and ranked[0].std == pytest.approx(0.05)
    assert [c.trial_id for c in rank_confirmed(rows, record, max_epochs=2, mode="max")] == ["a", "c", "b"]


def test_a_confirmed_sweeps_winner_is_its_best_configs_best_run_wherever_it_is_named(tmp_path):
    """The best single trial (c, 0.05, cut short) is not the winner: b has the best mean, and its best run (b2) is
    the trial the page, its plots and summary.json (results/summary.py takes data.best) name."""
    rows = [row("a", 0.1), row("a1", 0.9), row("b", 0.3), row("b1", 0.35), row("b2", 0.25), row("c", 0.05, epochs=1),
            row("c1", 0.4)]
    record = {"trials": {"a1": {"of": "a"}, "b1": {"of": "b"}, "b2": {"of": "b"}, "c1": {"of": "c"}}}
    space = SearchSpace(tmp_path / "space.py", {"training": {"max_epochs": 2}},
                        read_settings({"metric": "val/loss", "mode": "min"}))
    data = ReportData(tmp_path, space, rows, {}, [], [], ComputeAccount(0, 0.0, 0, 0.0),
                      confirmed=rank_confirmed(rows, record, max_epochs=2, mode="min"))
    assert best_trial(rows, "min").trial_id == "c" and data.best.trial_id == "b2"
    assert dict(summary_rows(data))["best trial"].startswith("b2: val/loss = 0.2500")


@pytest.mark.slow
def test_confirming_the_top_3_with_3_seeds_adds_9_trials_and_ranks_the_configs_by_their_mean(tmp_path):
    """The sweep is stopped (Ctrl-C) once its confirmation has begun, and resumed: the confirmation goes on with the
    trials it had not handed out, and none twice."""
    space = tiny_space(tmp_path / "data", sweep={"metric": "val/loss", "mode": "min", "num_samples": 4,
                                                 "scheduler": "fifo", "seed": 5, "confirm_top": 3, "confirm_seeds": 3},
                       overrides={"optimizer.cfg.lr": Code("tune.loguniform(1e-3, 1e-1)")})  # 1 epoch
    driver, _, experiment = start_sweep(tmp_path, space)
    deadline = time.monotonic() + 300
    while not any(experiment.glob("*/result.json")) or not confirming(experiment):
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[1][-3000:]
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGINT)
    assert driver.wait(timeout=120) == 130, driver.stderr.read()[-3000:]
    assert 0 < len(json.loads((experiment / "confirm.jsonl").read_text())["trials"]) < 9
    code, out = tune_in_process(experiment, "--resume")  # in this process: no second driver to start
    assert code == 0, out[-3000:]
    with open(experiment / "leaderboard.csv") as handle:
        values = {r["trial_id"]: float(r["val/loss"]) for r in csv.DictReader(handle)}
    confirms = json.loads((experiment / "confirm.jsonl").read_text())["trials"]
    search = sorted(set(values) - set(confirms), key=values.get)
    assert len(values) == 13 and len(confirms) == 9 and len(search) == 4
    for trial_id, confirm in confirms.items():  # the search's 3 best configs, each with seeds 8, 9, 10 (its own: 7)
        params = json.loads((experiment / trial_id / "params.json").read_text())
        origin = json.loads((experiment / confirm["of"] / "params.json").read_text())
        assert params["seed"] == confirm["seed"] and params == {**origin, "seed": confirm["seed"]}
        assert len((experiment / trial_id / "result.json").read_text().splitlines()) == 1  # every epoch
    assert sorted(c["of"] for c in confirms.values()) == sorted(search[:3] * 3)
    assert sorted(c["seed"] for c in confirms.values()) == [8, 8, 8, 9, 9, 9, 10, 10, 10]

    summary = json.loads((experiment / "summary.json").read_text())
    confirmed = summary["confirmed"]
    for config in confirmed:  # each config's mean: its search trial's value and its 3 other seeds'
        runs = [config["trial_id"], *(t for t, c in confirms.items() if c["of"] == config["trial_id"])]
        assert sorted(config["trials"]) == sorted(runs) and config["runs"] == 4
        assert config["mean"] == pytest.approx(statistics.fmean(values[t] for t in runs))
        assert config["std"] == pytest.approx(statistics.stdev(values[t] for t in runs))
    assert [c["mean"] for c in confirmed] == sorted(c["mean"] for c in confirmed)  # ranked by the mean
    assert summary["best_mean"] == confirmed[0]["mean"] and summary["best_trial"] in confirmed[0]["trials"]
    assert summary["best_trial"] == min(confirmed[0]["trials"], key=values.get)  # best/: the winner's best run
    assert json.loads((experiment / "best" / "metrics.json").read_text())["trial_id"] == summary["best_trial"]
    assert "confirmed: val/loss, mean ± std" in out
    # one winner: the printed line, the page's best trial and summary.json name the same run
    assert f"best: {summary['best_trial']} val/loss = {summary['best_value']:.4f}" in out
    assert f"<td>best trial</td><td>{summary['best_trial']}: val/loss = {summary['best_value']:.4f} after" in \
        (experiment / "report.html").read_text()
