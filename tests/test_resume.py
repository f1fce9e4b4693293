"""Nothing lost: a sweep whose driver is SIGKILLed mid-way continues with --resume from its checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from torchmate_ray.cli import tune_main

SPACE = '''
import copy, sys, time
sys.path.insert(0, {tests!r})
import lightning.pytorch as pl
from conftest import TINY_CONFIG
from ray import tune

class EpochLog(pl.Callback):
    """Appends '<trial id> <epoch>' when an epoch starts; an epoch takes at least a second."""
    def __init__(self, path):
        self.path = path
    def on_train_epoch_start(self, trainer, pl_module):
        self.write(trainer.current_epoch)
        time.sleep(1.0)
    def on_train_end(self, trainer, pl_module):
        self.write("end")
    def write(self, what):
        with open(self.path, "a") as handle:
            handle.write(f"{{tune.get_context().get_trial_id()}} {{what}}\\n")

config = copy.deepcopy(TINY_CONFIG)
config["dataset"]["kwargs"]["root"] = {root!r}
config["training"] = {{"max_epochs": 3, "limit_train_batches": 5, "limit_val_batches": 2,
                       "callbacks": [{{"name": EpochLog, "cfg": {{"path": {log!r}}}}}]}}
config["optimizer"]["cfg"]["lr"] = tune.grid_search([1e-2, 5e-3, 2e-3, 1e-3])
sweep = {{"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo", "max_concurrent": 2}}
'''


def epochs_by_trial(lines: list[str]) -> dict[str, list]:
    """``{trial: [0, 1, 2, "end"]}``: the epochs each trial started, and "end" when its fit returned."""
    epochs: dict[str, list] = defaultdict(list)
    for line in lines:
        trial, what = line.split()
        epochs[trial].append(int(what) if what.isdigit() else what)
    return epochs


@pytest.mark.slow
def test_killed_driver_resumes_without_losing_or_repeating_work(tmp_path):
    log = tmp_path / "epochs.log"
    space = tmp_path / "space.py"
    space.write_text(SPACE.format(tests=str(Path(__file__).parent), root=str(tmp_path / "data"), log=str(log)))
    exe = Path(sys.executable).parent / "torchmate-tune"
    driver = subprocess.Popen([str(exe), str(space), "--storage-path", str(tmp_path / "results"), "--name", "exp"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        # kill as soon as a trial has finished while another is past its first epoch: Tune's state snapshot
        # (every 2 s) is then likely behind what the trials did and checkpointed
        state = epochs_by_trial(log.read_text().splitlines() if log.exists() else [])
        if any(e[-1] == "end" for e in state.values()) and any(e[-1] in (1, 2) for e in state.values()):
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the sweep ended before it could be killed mid-way"
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    # and all that it started (Ray's own processes and workers keep its session): a crashed machine
    subprocess.run(["pkill", "-KILL", "-s", str(driver.pid)], capture_output=True)
    before = epochs_by_trial(log.read_text().splitlines())
    cut = len(log.read_text().splitlines())

    import ray

    try:
        assert tune_main([str(tmp_path / "results" / "exp"), "--resume"]) == 0
    finally:
        ray.shutdown()
    after = epochs_by_trial(log.read_text().splitlines()[cut:])
    summary = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())
    assert summary["trials"] == {"finished": 4, "stopped": 0, "errored": 0}
    finished_before = [t for t, e in before.items() if e[-1] == "end"]
    assert finished_before
    for trial in finished_before:  # finished trials did not train again
        assert not [e for e in after.get(trial, []) if e != "end"], (trial, before, after)
    for trial in [t for t in before if t not in finished_before]:
        last = before[trial][-1]  # the epoch it was in when the driver died
        went_on = [e for e in after.get(trial, []) if e != "end"]
        if not went_on:  # its last epoch and checkpoint were done, only its on_train_end was cut short
            assert last == 2, (trial, before, after)
            continue
        # it went on from the checkpoint of the epoch before the one it was in (or the one it had just
        # finished), not from 0 nor from an older checkpoint, and ran every later epoch once
        assert went_on == list(range(went_on[0], 3)) and went_on[0] in (last, last + 1), (trial, before, after)
    assert summary["epochs_run"] == 12


def test_resume_without_an_experiment_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert tune_main([str(tmp_path / "empty"), "--resume"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"torchmate-tune: error: {tmp_path / 'empty'}: is not a torchmate-tune experiment (no torchmate_sweep.json); "
        "give the search-space file with --storage-path and --name instead"]


def test_experiment_directory_needs_resume(tmp_path, capsys):
    assert tune_main([str(tmp_path), "--num-samples", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"torchmate-tune: error: {tmp_path}: is an experiment directory; add --resume to continue it"]
