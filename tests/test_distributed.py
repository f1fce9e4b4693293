"""Multi-worker trials: Ray Train V2 DDP workers inside the sweep, planned so that they never deadlock."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchmate_ray.cli import tune_main

from spaces import Code, tiny_space


def write_space(tmp_path: Path) -> Path:
    path = tmp_path / "space.py"
    path.write_text(tiny_space(tmp_path / "data", overrides={
        "training": {"max_epochs": 2, "limit_train_batches": 6},
        "optimizer.cfg.lr": Code("tune.grid_search([1e-2, 1e-7, 3e-3])")},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1,
               "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 2}}}))
    return path


@pytest.fixture(scope="module")
def two_worker_sweep(tmp_path_factory):
    """3 trials x 2 epochs, 2 DDP workers each, on however many CPUs there are (2 in CI): one at a time."""
    tmp = tmp_path_factory.mktemp("ddp")
    exe = Path(sys.executable).parent / "torchmate-tune"
    result = subprocess.run([str(exe), str(write_space(tmp)), "--workers-per-trial", "2", "--cpus-per-worker",
                             f"{(os.cpu_count() or 2) / 2:g}", "--storage-path", str(tmp / "results"), "--name", "exp"],
                            capture_output=True, text=True, timeout=540, cwd=tmp)
    return result, tmp / "results" / "exp", tmp


def leaderboard(directory: Path) -> dict[str, list[str]]:
    rows = (directory / "leaderboard.csv").read_text().splitlines()[1:]
    return {row.split(",")[5]: row.split(",") for row in rows}  # by learning rate


@pytest.mark.slow
def test_asha_stopped_multi_worker_trial_frees_its_workers_for_the_next(two_worker_sweep):
    result, directory, _ = two_worker_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    by_lr = leaderboard(directory)
    assert by_lr["1e-07"][2:4] == ["stopped", "1"]  # ASHA stopped the hopeless one after its first epoch
    assert by_lr["0.003"][2] in ("finished", "stopped") and int(by_lr["0.003"][3]) >= 1  # and the next one ran
    assert by_lr["0.01"][2:4] == ["finished", "2"]
    assert "WorkerGroupStartupTimeoutError" not in result.stdout + result.stderr


@pytest.mark.slow
def test_reported_accuracy_is_the_whole_validation_sets_not_one_ranks(two_worker_sweep):
    from torchmate_ray.lightning import configure_all

    _, directory, tmp = two_worker_sweep
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
    import ray

    cpus = os.cpu_count() or 2
    fill = {"half": f"{cpus / 2:g}", "cpus": f"{cpus:g}"}
    started = time.monotonic()
    assert tune_main([str(write_space(tmp_path)), *[f.format(**fill) for f in flags]]) == 2
    assert time.monotonic() - started < 5
    assert capsys.readouterr().err.splitlines() == ["torchmate-tune: error: " + expected.format(**fill)]
    assert not ray.is_initialized()
