"""Multi-worker trials: Ray Train V2 DDP workers inside the sweep, planned so that they never deadlock."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from torchmate_ray.cli import tune_main

from spaces import Code, tiny_space
from sweeps import kill_sweep, recorded, tune_in_process


def write_space(tmp_path: Path, max_epochs: int = 2, code: str = "", callbacks: list | None = None) -> Path:
    path = tmp_path / "space.py"
    path.write_text(tiny_space(tmp_path / "data", code=code, overrides={
        "training": {"max_epochs": max_epochs, "limit_train_batches": 4, "callbacks": callbacks or []},
        "optimizer.cfg.lr": Code("tune.grid_search([1e-2, 1e-7, 3e-3])")},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1,
               "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 2}}}))
    return path


RANK_ZERO_LOG = '''
import time
import lightning.pytorch as pl

class RankZeroLog(pl.Callback):
    """Rank 0 appends '<learning rate> <epoch>' when an epoch starts to ``path``; every rank then waits ``pause``
    seconds."""
    def __init__(self, path, pause):
        self.path, self.pause = path, pause
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.is_global_zero:
            with open(self.path, "a") as handle:
                handle.write(f"{trainer.optimizers[0].param_groups[0]['lr']:g} {trainer.current_epoch}\\n")
        time.sleep(self.pause)
'''


def started_epochs(log: Path, lr: str) -> list[int]:
    """The epochs the trial of learning rate ``lr`` started, in order (RankZeroLog's lines)."""
    lines = [line.split() for line in (log.read_text().splitlines() if log.exists() else [])]
    return [int(epoch) for at, epoch in lines if at == lr]


@dataclass
class KilledSweep:
    """The two-worker sweep: killed mid-way, then resumed."""
    resumed: int  # the resume's exit code
    resumed_out: str  # and what it printed
    directory: Path
    first: str  # the trial that was running when the driver was killed (learning rate 0.01)
    recorded_at_kill: int  # the epochs the sweep had recorded of it
    started_at_kill: list[int]  # the epochs it had started
    log: Path


@pytest.fixture(scope="module")
def two_worker_sweep(tmp_path_factory) -> KilledSweep:
    """3 trials x 2 epochs, 2 DDP workers each, on however many CPUs there are (2 in CI): one at a time, ASHA.
    The driver is SIGKILLed (with Ray and the workers) in the first trial's second epoch, once the sweep has
    recorded its first; then the sweep is resumed, in this process (no second driver to start). (Before: 3 epochs
    of 6 batches, held 1.5 s, and a resume in a process of its own.)"""
    tmp = tmp_path_factory.mktemp("ddp")
    log = tmp / "epochs.log"
    space = write_space(tmp, max_epochs=2, code=RANK_ZERO_LOG,
                        callbacks=[{"name": Code("RankZeroLog"), "cfg": {"path": log, "pause": 1.0}}])
    exe = Path(sys.executable).parent / "torchmate-tune"
    driver = subprocess.Popen([str(exe), str(space), "--workers-per-trial", "2", "--cpus-per-worker",
                               f"{(os.cpu_count() or 2) / 2:g}", "--storage-path", str(tmp / "results"), "--name", "exp"],
                              cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    directory = tmp / "results" / "exp"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        done = [len(epochs) for epochs in recorded(directory).values()]
        if started_epochs(log, "0.01")[-1:] == [1] and done == [1]:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the sweep ended before it could be killed mid-way"
    kill_sweep(driver)
    ((first, done),) = [(trial, len(epochs)) for trial, epochs in recorded(directory).items()]
    started = started_epochs(log, "0.01")
    code, out = tune_in_process(directory, "--resume")
    return KilledSweep(code, out, directory, first, done, started, log)


def leaderboard(directory: Path) -> dict[str, list[str]]:
    rows = (directory / "leaderboard.csv").read_text().splitlines()[1:]
    return {row.split(",")[5]: row.split(",") for row in rows}  # by learning rate


@pytest.mark.slow
def test_asha_stopped_multi_worker_trial_frees_its_workers_for_the_next(two_worker_sweep):
    sweep = two_worker_sweep
    assert sweep.resumed == 0, sweep.resumed_out[-3000:]
    by_lr = leaderboard(sweep.directory)
    assert by_lr["1e-07"][2:4] == ["stopped", "1"]  # ASHA stopped the hopeless one after its first epoch
    assert by_lr["0.003"][2] in ("finished", "stopped") and int(by_lr["0.003"][3]) >= 1  # and the next one ran
    assert by_lr["0.01"][2:4] == ["finished", "2"]
    assert "WorkerGroupStartupTimeoutError" not in sweep.resumed_out


@pytest.mark.slow
def test_a_killed_driver_under_a_two_worker_trial_resumes_without_running_an_epoch_again(two_worker_sweep):
    """The resumed trial's Train run goes on from its newest checkpoint: no epoch the sweep had recorded is
    trained again, every later one once; Train kept the newest and the best checkpoint only. (An epoch whose
    report had not reached the sweep when the driver died is trained again: Ray Train registers a checkpoint
    when its controller, in the trial's driver, takes the report.)"""
    sweep = two_worker_sweep
    assert sweep.resumed == 0, sweep.resumed_out[-3000:]
    went_on = started_epochs(sweep.log, "0.01")[len(sweep.started_at_kill):]
    assert went_on == list(range(went_on[0], 2)), (sweep.started_at_kill, went_on)
    assert sweep.recorded_at_kill <= went_on[0] <= sweep.started_at_kill[-1] + 1, (sweep.recorded_at_kill, went_on)
    assert recorded(sweep.directory)[sweep.first] == [1, 2]
    checkpoints = [p for p in (sweep.directory / "train_runs").glob(f"*{sweep.first}/checkpoint_*") if p.is_dir()]
    assert 1 <= len(checkpoints) <= 2, checkpoints
    assert (sweep.directory / "best" / "model.ckpt").is_file()


@pytest.mark.slow
def test_reported_accuracy_is_the_whole_validation_sets_not_one_ranks(two_worker_sweep):
    from torchmate_ray.lightning import configure_all

    from torchmate_ray.lightning.files import load_python_file

    directory = two_worker_sweep.directory
    load_python_file(directory.parent.parent / "space.py")  # the checkpoint's hyperparameters hold its RankZeroLog
    trial = leaderboard(directory)["0.01"]
    reported = json.loads((directory / trial[1] / "result.json").read_text().splitlines()[-1])
    checkpoint = torch.load(Path(reported["checkpoint_path"]) / "checkpoint.ckpt", weights_only=False)
    exec_globals: dict = {}
    exec((directory / "best_config.py").read_text(), exec_globals)
    config = copy.deepcopy(exec_globals["config"])
    _, model, data = configure_all(config)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    data.setup("fit")
    correct = total = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(data.get_transformed_dataset("val"), batch_size=500):
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    assert total == 400
    assert reported["val/accuracy"] == pytest.approx(correct / total, abs=1e-6)


def test_dry_run_shows_the_multi_worker_plan(tmp_path, capsys):
    assert tune_main([str(write_space(tmp_path)), "--dry-run", "--workers-per-trial", "2", "--cpus-per-worker",
                      f"{(os.cpu_count() or 2) / 2:g}"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (f"  each trial: 2 Ray Train workers (DDP) x ({(os.cpu_count() or 2) / 2:g} CPU, 0 GPU), plus a driver "
            "holding no CPU") in out
    assert "  trials at once: 1" in out


REFUSED = [
    ("more-workers-than-the-cluster-holds", ["--workers-per-trial", "3", "--cpus-per-worker", "{half}"],
     "sweep.resources.workers: 3 workers x ({half} CPU, 0 GPU) need room for 3 workers, but the cluster holds 2 "
     "({cpus} CPUs, 0 GPUs on 1 node(s)); use at most 2 workers per trial or fewer CPUs/GPUs per worker"),
    ("fractional-gpus-with-ddp", ["--workers-per-trial", "2", "--gpus-per-worker", "0.5"],
     "sweep.resources.gpus_per_worker: 2 DDP workers cannot share GPUs (0.5 each; NCCL refuses duplicate GPUs, "
     "ray#48012); use whole GPUs per worker or 1 worker per trial"),
]


@pytest.mark.parametrize("flags, expected", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_what_can_never_fit_is_refused(tmp_path, capsys, flags, expected):
    """With --dry-run: the plan refuses at the same step in a real run (test_space runs one such case for real)."""
    import ray

    cpus = os.cpu_count() or 2
    fill = {"half": f"{cpus / 2:g}", "cpus": f"{cpus:g}"}
    assert tune_main([str(write_space(tmp_path)), *[f.format(**fill) for f in flags], "--dry-run"]) == 2
    assert capsys.readouterr().err.splitlines() == ["torchmate-tune: error: " + expected.format(**fill)]
    assert not ray.is_initialized()
