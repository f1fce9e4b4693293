"""Checkpoints kept by score and the winner exported to best/: the rule as a table, best_config.py for classes given
directly, the disk account, torchmate-train --ckpt [--test] and its refusals; real sweeps whose exported model,
tested without training, gives the metric the sweep reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchmate_ray.cli import train_main, tune_main
from torchmate_ray.lightning import ConfigError
from torchmate_ray.tune.records.checkpoints import KeepRule
from torchmate_ray.tune.records.rows import TrialRow
from torchmate_ray.tune.results.export import export_best, find_best_checkpoint, format_bytes, measure_disk
from torchmate_ray.tune.results.summary import render_best_config
from torchmate_ray.tune.search.space import load_search_space, read_settings

from spaces import Code, tiny_space, written_space
from sweeps import tune_in_process

BIN = Path(sys.executable).parent


# --- sweep.keep_best --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1, 1.5, "one", True], ids=["negative", "float", "string", "bool"])
def test_a_bad_keep_best_is_one_line_naming_the_key(value):
    with pytest.raises(ConfigError) as caught:
        read_settings({"keep_best": value})
    kind = type(value).__name__
    assert str(caught.value) == (f"sweep.keep_best: expected an int >= 0 (the best checkpoints kept per trial besides "
                                 f"the newest) or None (all), got {value!r} ({kind}); use e.g. 1")


def test_a_bad_keep_best_in_the_file_exits_2_before_anything_starts(tmp_path, capsys):
    space = tmp_path / "space.py"
    space.write_text(tiny_space(tmp_path / "data", sweep={"metric": "val/accuracy", "mode": "max", "keep_best": -1}))
    assert tune_main([str(space), "--storage-path", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("torchmate-tune: error: sweep.keep_best: expected an int >= 0")
    assert not (tmp_path / "results").exists()


def test_pruning_keeps_the_newest_and_best_and_removes_what_a_kill_left_half_written(tmp_path):
    from torchmate_ray.tune.trial.checkpoint_writer import prune_checkpoints

    fake_trial(tmp_path, {1: 0.9, 2: 0.1, 3: 0.2})
    (tmp_path / "checkpoint_000004").mkdir()  # killed before its progress.json
    (tmp_path / "checkpoint_000004" / "trainer.ckpt.partial").write_bytes(b"x")
    prune_checkpoints(tmp_path, KeepRule("val/accuracy", "max", 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_000001", "checkpoint_000003"]


@pytest.mark.parametrize("keep, expected", [
    (None, (None, None, "max")),
    (KeepRule("val/accuracy", "max", None), (None, None, "max")),
    (KeepRule("val/accuracy", "max", 0), (1, None, "max")),
    (KeepRule("val/loss", "min", 2), (2, "val/loss", "min")),
], ids=["no-rule", "all", "newest-only", "best-two-by-loss"])
def test_multi_worker_trials_give_ray_train_the_same_rule(keep, expected):
    """Ray Train keeps ``num_to_keep`` best by the score and its latest besides (with no score, the newest rank
    best: the latest alone)."""
    from torchmate_ray.tune.trial.distributed import build_checkpoint_config

    config = build_checkpoint_config(keep)
    assert (config.num_to_keep, config.checkpoint_score_attribute, config.checkpoint_score_order) == expected


# --- the disk account -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (21_300_000, "21.3 MB"),
                                        (45_000_000_000, "45.0 GB"), (3 * 10**12, "3000.0 GB")],
                         ids=["zero", "bytes", "kilo", "mega", "giga", "beyond"])
def test_format_bytes(size, text):
    assert format_bytes(size) == text


def test_disk_counts_a_hard_linked_file_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 10)
    os.link(tmp_path / "a", tmp_path / "sub" / "a-again")
    assert measure_disk(tmp_path) == 1010


# --- the best checkpoint of a trial, exported -----------------------------------------------------------------
def fake_trial(trial_dir: Path, scores: dict[int, float]) -> None:
    """Checkpoint directories as a trial's writer leaves them, with ``val/accuracy`` = ``scores[epochs]``."""
    for epochs, score in scores.items():
        directory = trial_dir / f"checkpoint_{epochs:06d}"
        directory.mkdir(parents=True)
        (directory / "trainer.ckpt").write_bytes(b"c" * epochs)
        (directory / "progress.json").write_text(json.dumps({"epochs": epochs, "metrics": {
            "epochs": epochs, "val/accuracy": score, "val/loss": 1 - score}}))


@pytest.mark.parametrize("mode, scores, epochs", [
    ("max", {2: 0.9, 5: 0.3}, 2), ("min", {2: 0.9, 5: 0.3}, 5), ("max", {3: 0.5, 4: 0.5}, 3)],
    ids=["max", "min", "tie-to-earlier"])
def test_the_best_checkpoint_is_exported_with_its_metrics_and_versions(tmp_path, mode, scores, epochs):
    fake_trial(tmp_path / "t1", scores)
    found = export_best(tmp_path, "t1", KeepRule("val/accuracy", mode), "config = {}\n")
    assert found.epochs == epochs and found.path == tmp_path / "t1" / f"checkpoint_{epochs:06d}" / "trainer.ckpt"
    best = tmp_path / "best"
    assert sorted(p.name for p in best.iterdir()) == ["best_config.py", "metrics.json", "model.ckpt", "versions.json"]
    assert (best / "model.ckpt").read_bytes() == b"c" * epochs
    metrics = json.loads((best / "metrics.json").read_text())
    assert (metrics["trial_id"], metrics["epochs"], metrics["value"]) == ("t1", epochs, scores[epochs])
    assert set(json.loads((best / "versions.json").read_text())) == {"python", "torch", "lightning", "ray",
                                                                      "torchmate_ray"}


def test_a_trial_without_checkpoints_exports_nothing(tmp_path):
    (tmp_path / "best").mkdir()  # a winner of before, replaced
    (tmp_path / "t1").mkdir()
    assert export_best(tmp_path, "t1", KeepRule("val/accuracy"), "config = {}\n") is None
    assert not (tmp_path / "best").exists()
    assert find_best_checkpoint(tmp_path / "t1", KeepRule("val/accuracy")) is None


# --- best_config.py for classes given directly ----------------------------------------------------------------
SPACE_WITH_CLASS = '''
import torch
from torch import nn

class Net(nn.Module):
    """An MLP defined in the search-space file."""
    def __init__(self, in_features, out_features, hidden):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden[0]), nn.ReLU(),
                                  nn.Linear(hidden[0], out_features))
    def forward(self, x):
        return self.body(x)

def make_local():
    class Local(nn.Module):
        pass
    return Local
'''


@pytest.mark.parametrize("saved, source", [
    ("<class 'torchmate_config_space.Net'>", "_space.Net"),
    ("<class 'torch.nn.modules.linear.Linear'>", "torch.nn.modules.linear.Linear"),
    ("<function make_local at 0x7f00deadbeef>", "_space.make_local"),
], ids=["class-of-the-file", "class-of-a-module", "function-of-the-file"])
def test_a_class_saved_as_a_string_is_imported_again(tmp_path, saved, source):
    space_file = tmp_path / "space.py"
    space_file.write_text(written_space(tmp_path / "data", code=SPACE_WITH_CLASS))
    space = load_search_space(space_file)
    row = TrialRow("t1", "finished", 2, 0.5, {}, config={"model": {"name": saved, "cfg": {"hidden": [8]}}})
    text = render_best_config(row, space, tmp_path)
    assert f"'name': {source}," in text
    namespace: dict = {}
    exec(compile(text, "best_config.py", "exec"), namespace)
    assert namespace["config"]["model"]["name"].__name__ == source.rsplit(".", 1)[1]


@pytest.mark.parametrize("saved, why", [
    ("<class 'torchmate_config_space.make_local.<locals>.Local'>", ""),
    ("<function <lambda> at 0x7f00deadbeef>", "its module is not recorded (a function is saved by its name): "),
], ids=["class-inside-a-function", "lambda"])
def test_what_no_file_can_import_is_refused_in_one_line(tmp_path, saved, why):
    space_file = tmp_path / "space.py"
    space_file.write_text(written_space(tmp_path / "data", code=SPACE_WITH_CLASS))
    row = TrialRow("t1", "finished", 2, 0.5, {}, config={"model": {"name": saved}})
    with pytest.raises(ConfigError) as caught:
        render_best_config(row, load_search_space(space_file), tmp_path)
    assert str(caught.value) == (f"model.name: cannot write {saved} into best_config.py: {why}no top-level name of "
                                 f"space.py or of an importable module; define it at the top level of space.py")


# --- torchmate-train --ckpt [--test]: refusals ---------------------------------------------------------------
@pytest.mark.parametrize("flags, expected", [
    (["--ckpt", "{dir}/nope.ckpt", "--test"], "--ckpt: {dir}/nope.ckpt: no such file; give a checkpoint, e.g. "
                                              "<experiment>/best/model.ckpt"),
    (["--ckpt", "{dir}/nope.ckpt"], "--ckpt: {dir}/nope.ckpt: no such file; give a checkpoint, e.g. "
                                    "<experiment>/best/model.ckpt"),
    (["--test"], "--test: tests a trained model: give it with --ckpt (e.g. <experiment>/best/model.ckpt)"),
    (["--ckpt", "{dir}/config.py", "--test"], "--ckpt: {dir}/config.py: not a Lightning checkpoint (UnpicklingError: "),
], ids=["missing-ckpt-test", "missing-ckpt-fine-tune", "test-without-ckpt", "not-a-checkpoint"])
def test_bad_ckpt_flags_are_one_line_exit_2(tmp_path, capsys, flags, expected):
    config = tmp_path / "config.py"
    config.write_text(tiny_space(tmp_path / "data"))
    assert train_main([str(config), *[flag.format(dir=tmp_path) for flag in flags]]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("torchmate-train: error: " + expected.format(dir=tmp_path)), err


# --- real sweeps ----------------------------------------------------------------------------------------------
SWEEP = {"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo"}
TRAINING = {"max_epochs": 4, "limit_train_batches": 6, "limit_val_batches": 4}


def best_space(root: Path) -> str:
    """Two trials of a model class that the space file defines: best_config.py must carry the class (a model by
    name is the simpler case, exported the same way; test_sweep runs a by-name best_config.py with torchmate-train)."""
    return written_space(root, model=Code("Net"), code=SPACE_WITH_CLASS, lr=3e-3,
                         hidden=Code("tune.grid_search([[32], [16]])"), training=TRAINING, sweep=SWEEP)


@pytest.mark.slow
def test_a_sweep_keeps_the_newest_and_best_checkpoint_and_its_exported_model_gives_the_reported_metric(tmp_path):
    space = tmp_path / "space.py"
    space.write_text(best_space(tmp_path / "data"))
    code, out = tune_in_process(space, "--storage-path", tmp_path / "results", "--name", "exp")  # no driver to start
    assert code == 0, out[-3000:]
    experiment = tmp_path / "results" / "exp"
    summary = json.loads((experiment / "summary.json").read_text())
    for trial_dir in [p for p in experiment.iterdir() if (p / "result.json").is_file()]:
        lines = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        best_epoch = min(lines, key=lambda line: (-line["val/accuracy"], line["epochs"]))["epochs"]
        kept = sorted(int(p.name.split("_")[1]) for p in trial_dir.glob("checkpoint_*"))
        assert kept == sorted({best_epoch, 4}), (trial_dir.name, kept, best_epoch)  # the newest and the best: 1 + k
    best = experiment / "best"
    metrics = json.loads((best / "metrics.json").read_text())
    assert metrics["trial_id"] == summary["best_trial"] and summary["best_model"]["value"] == metrics["value"]
    assert summary["disk_bytes"] > 0 and f"disk used {summary['disk']}" in out
    assert (experiment / "best_config.py").read_text() == (best / "best_config.py").read_text()

    tested = subprocess.run([str(BIN / "torchmate-train"), str(best / "best_config.py"), "--ckpt",
                             str(best / "model.ckpt"), "--test", "--root-dir", str(tmp_path / "logs")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    out = tested.stdout.splitlines()
    printed = dict(line.split() for line in out[out.index("final metrics:") + 1:])
    assert "train/loss" not in printed  # nothing trained
    assert f"{metrics['value']:.4f}" == printed["val/accuracy"]
    assert recompute_val_accuracy(best) == metrics["value"]  # exactly, not to 4 digits


def recompute_val_accuracy(best: Path) -> float:
    """``val/accuracy`` of ``best/model.ckpt`` built by ``best/best_config.py``, as torchmate-train --test computes it."""
    from torchmate_ray.lightning.files import load_config_file
    from torchmate_ray.lightning.train import run_evaluation

    config = load_config_file(best / "best_config.py")
    return run_evaluation(config, best / "model.ckpt", {"logger": False, "enable_progress_bar": False,
                                                         "accelerator": "cpu"})["val/accuracy"]


def test_the_report_page_gives_the_disk_used(tmp_path):
    from torchmate_ray.tune.results.data import ComputeAccount, ReportData
    from torchmate_ray.tune.results.page import render_report_html
    from torchmate_ray.tune.search.space import SearchSpace

    space = SearchSpace(tmp_path / "space.py", {"training": {"max_epochs": 3}}, read_settings({}))
    data = ReportData(tmp_path, space, [], {}, [], [], ComputeAccount(0, 0.0, 0, 0.0), disk_bytes=21_300_000)
    assert "<td>disk used</td><td>21.3 MB (21,300,000 bytes)</td>" in render_report_html(data, {})
