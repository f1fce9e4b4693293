"""sweep.score on a real sweep: two trials whose metric is scripted by epoch, one that peaked at epoch 3 and
degraded, one that ended highest; the leaderboard, summary.json, the report and the progress line rank them by
the sweep's score, and the same experiment's result.json files read under each score rank them by that rule."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from spaces import Code, tiny_space
from sweeps import tune_in_process

SCRIPTED = '''
from torchmate_ray.lightning.lm import SupervisedLearner

class Scripted(SupervisedLearner):
    """A learner that also logs val/scripted: values[epoch] at the end of each validation."""
    def __init__(self, cfg, values=()):
        super().__init__(cfg)
        self.values = list(values)
    def on_validation_epoch_end(self):
        super().on_validation_epoch_end()
        self.log("val/scripted", float(self.values[self.current_epoch]))
    def logged_metrics(self):
        return super().logged_metrics() | {"val/scripted"}
'''
PEAKED, STEADY = [0.1, 0.2, 0.9, 0.3], [0.5, 0.5, 0.5, 0.6]  # PEAKED peaks at epoch 3; STEADY ends highest


@pytest.fixture(scope="module")
def scored_sweep(tmp_path_factory):
    """A real sweep scored by each trial's best epoch: the two scripted trials, 4 epochs each, no early stops."""
    tmp = tmp_path_factory.mktemp("score")
    path = tmp / "space.py"
    path.write_text(tiny_space(tmp / "data", code=SCRIPTED, overrides={
        "learner.name": Code("Scripted"), "learner.kwargs": {"values": Code(f"tune.grid_search([{PEAKED}, {STEADY}])")},
        "training": {"max_epochs": 4, "limit_train_batches": 2, "limit_val_batches": 1},
    }, sweep={"metric": "val/scripted", "mode": "max", "num_samples": 1, "scheduler": "fifo", "score": "best"}))
    code, out = tune_in_process(path, "--storage-path", tmp / "results", "--name", "exp")  # no driver to start
    assert code == 0, out[-3000:]
    directory = tmp / "results" / "exp"
    ids = {json.dumps(json.loads((d / "params.json").read_text())["learner"]["kwargs"]["values"]): d.name
           for d in directory.iterdir() if (d / "params.json").is_file()}
    return directory, ids[json.dumps(PEAKED)], ids[json.dumps(STEADY)], out


@pytest.mark.slow
def test_best_ranks_a_trial_that_peaked_at_epoch_3_by_its_epoch_3_value(scored_sweep):
    directory, peaked, steady, _ = scored_sweep
    summary = json.loads((directory / "summary.json").read_text())
    assert (summary["score"], summary["best_trial"], summary["best_value"]) == ("best", peaked, pytest.approx(0.9))
    rows = list(csv.reader((directory / "leaderboard.csv").open()))
    assert rows[0][4] == "val/scripted (best epoch)"
    assert [(row[1], float(row[4])) for row in rows[1:]] == [(peaked, pytest.approx(0.9)), (steady, pytest.approx(0.6))]


@pytest.mark.slow
def test_the_report_and_the_progress_line_use_the_same_score(scored_sweep):
    from torchmate_ray.tune.results.data import build_report_data

    directory, peaked, _, stdout = scored_sweep
    data = build_report_data(directory)
    assert (data.best.trial_id, data.best.value, data.score_label) == (peaked, pytest.approx(0.9),
                                                                        "val/scripted (best epoch)")
    ended = [line for line in stdout.splitlines() if f"] {peaked} finished at epoch 4/4" in line]
    assert len(ended) == 1 and ", val/scripted (best epoch) 0.9000 |" in ended[0]


@pytest.mark.slow
@pytest.mark.parametrize("score, ranked, values", [
    ("last", ["steady", "peaked"], [0.6, 0.3]),
    ("best", ["peaked", "steady"], [0.9, 0.6]),
    ("last-2", ["peaked", "steady"], [0.6, 0.55]),
    ("last-4", ["steady", "peaked"], [0.525, 0.375]),
], ids=["last", "best", "last-2", "last-4"])
def test_the_experiments_result_files_rank_by_each_score(scored_sweep, score, ranked, values):
    from torchmate_ray.tune.experiment.directory import load_experiment_space
    from torchmate_ray.tune.experiment.trials import read_experiment_trials
    from torchmate_ray.tune.records.rows import rank_trials

    directory, peaked, steady, _ = scored_sweep
    space = load_experiment_space(directory)
    space.settings = dataclasses.replace(space.settings, score=score)
    rows = rank_trials(read_experiment_trials(directory, space)[0], space.settings.mode)
    names = {peaked: "peaked", steady: "steady"}
    assert [(names[row.trial_id], row.value) for row in rows] == [(name, pytest.approx(value))
                                                                  for name, value in zip(ranked, values)]
