"""Fixed costs overlapped: a local sweep starts its Ray (with warm trial processes) while the driver imports and
validates; a refused sweep shuts that Ray down and leaves nothing behind; the command's milestones are recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from torchmate_ray.cli import build_tune_parser, start_local_ray
from torchmate_ray.tune.results.summary import format_timings
from torchmate_ray.tune.sweep.local_ray import LocalRay
from torchmate_ray.tune.sweep.progress import SweepProgress

from spaces import Code, tiny_space

TUNE = str(Path(sys.executable).parent / "torchmate-tune")

RECORD_THREADS = '''
import lightning.pytorch as pl
import torch

class RecordThreads(pl.Callback):
    def __init__(self, path):
        self.path = path
    def on_train_start(self, trainer, pl_module):
        with open(self.path, "a") as handle:
            handle.write(f"{torch.get_num_threads()}\\n")
'''


def write_space(tmp_path: Path, cpus: float = 1, overrides: dict | None = None) -> Path:
    """The tiny config (conftest.py) with two trials of two short epochs, and ``overrides``; each trial writes the
    number of torch threads its process uses (threads.txt), and the file sets the trials' CPUs."""
    path = tmp_path / "space.py"
    path.write_text(tiny_space(tmp_path / "data", code=RECORD_THREADS, overrides={
        "training": {"max_epochs": 2, "limit_train_batches": 4, "limit_val_batches": 2,
                     "callbacks": [{"name": Code("RecordThreads"), "cfg": {"path": tmp_path / "threads.txt"}}]},
        "optimizer.cfg.lr": Code("tune.grid_search([1e-2, 3e-3])"), **(overrides or {})},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo",
               "resources": {"cpus_per_worker": cpus}}))
    return path


# --- what the local Ray is started with ----------------------------------------------------------------
LOCAL_RAYS = [
    ("one-worker", (1, 1), LocalRay(state_api=False, threads=1)),
    ("a-share-of-a-cpu", (1, 0.5), LocalRay(state_api=False, threads=1)),
    ("two-cpus", (1, 2), LocalRay(state_api=False, threads=2)),
    ("cpus-not-whole", (1, 2.5), LocalRay(state_api=False, threads=2)),
    ("multi-worker-needs-the-state-api", (2, 1), LocalRay(state_api=True, threads=1)),
]


@pytest.mark.parametrize("trials, expected", [r[1:] for r in LOCAL_RAYS], ids=[r[0] for r in LOCAL_RAYS])
def test_local_ray_is_started_as_the_trials_need(trials, expected):
    assert LocalRay.for_trials(*trials) == expected


def test_warm_processes_have_imported_the_trial_function():
    """The local Ray's workers import WARM_MODULES as they start: the trial function's module must be one, or each
    trial's process would import it (torch, Lightning) only once its trial starts."""
    from torchmate_ray.tune.sweep.local_ray import WARM_MODULES
    from torchmate_ray.tune.trial.train import train_trial

    assert train_trial.__module__ in WARM_MODULES


NO_EARLY_RAY = [
    ("dry-run", ["{space}", "--dry-run"]),
    ("cluster", ["{space}", "--address", "127.0.0.1:6379"]),
    ("missing-file", ["{tmp}/nope.py"]),
    ("directory-without-resume", ["{tmp}"]),
    ("directory-that-is-no-experiment", ["{tmp}", "--resume"]),
]


@pytest.mark.parametrize("argv", [r[1] for r in NO_EARLY_RAY], ids=[r[0] for r in NO_EARLY_RAY])
def test_no_ray_is_started_early_for_what_needs_none(tmp_path, argv):
    import ray

    args = build_tune_parser().parse_args([a.format(space=write_space(tmp_path), tmp=tmp_path) for a in argv])
    assert start_local_ray(args) is None
    assert not ray.is_initialized()


def test_the_first_result_is_noted_once():
    progress = SweepProgress("val/acc", "max", 2, 3, [], tty=False)
    progress.setup()
    assert progress.first_result_at is None
    before = time.time()
    trial = SimpleNamespace(trial_id="t0", config={}, last_result={})
    progress.on_trial_result(0, [trial], trial, {"val/acc": 0.5})
    first = progress.first_result_at
    progress.on_trial_result(1, [trial], trial, {"val/acc": 0.6})
    assert before <= first <= time.time() and progress.first_result_at == first


TIMINGS_TEXT = [
    ("all", {"experiment_line_s": 6.04, "first_epoch_s": 14.25, "end_s": 80.3},
     "since the command started: experiment line 6.0 s, first epoch reported 14.2 s, sweep ended 80.3 s"),
    ("verbose-has-no-first-epoch", {"experiment_line_s": 6.0, "first_epoch_s": None, "end_s": 80.0},
     "since the command started: experiment line 6.0 s, sweep ended 80.0 s"),
]


@pytest.mark.parametrize("timings, text", [t[1:] for t in TIMINGS_TEXT], ids=[t[0] for t in TIMINGS_TEXT])
def test_timings_are_printed_in_one_line(timings, text):
    assert format_timings(timings) == text


# --- real commands -------------------------------------------------------------------------------------
def ray_processes_seen(process: subprocess.Popen) -> dict[int, str]:
    """Every process that ``process`` started (and they started), by pid, with the newest name seen, polled until
    it ends.

    Each poll reads the whole process table at once (``process_iter`` skips processes that end while it
    reads), so that one short-lived process cannot make a poll miss the others. A process seen between its fork and
    its exec still has its parent's name (``torchmate-tune``, where the raylet was about to start: seen once on a
    loaded machine), so a later poll's name replaces it."""
    import psutil

    seen: dict[int, str] = {}
    while process.poll() is None:
        table = [p.info for p in psutil.process_iter(["pid", "ppid", "name"])]
        family = {process.pid}
        while True:
            more = {row["pid"] for row in table if row["ppid"] in family} - family
            if not more:
                break
            family |= more
        for row in table:
            if row["pid"] in family and row["pid"] != process.pid:
                seen[row["pid"]] = row["name"]
        time.sleep(0.02)
    return seen


def still_alive(pids: dict[int, str], grace_s: float = 5.0) -> list[str]:
    import psutil

    deadline = time.monotonic() + grace_s
    while True:
        alive = [f"{pid} {name}" for pid, name in pids.items()
                 if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


REFUSALS = [
    ("while-validating", {"optimizer.name": "Adamm"},
     "optimizer.name: unknown optimizer 'Adamm' in torch.optim; did you mean 'Adam'?"),
    ("after-the-experiment-line",
     {"dataset.cache": "memory", "dataset.transforms": {"pre": [{"name": "RandomHorizontalFlip"}]}},
     "dataset.cache: the train split's X is of type Image after its deterministic transforms, not a tensor; add "
     "ToTensor to dataset.transforms.pre, or set dataset.cache to 'none'"),
]


@pytest.mark.parametrize("existing", [False, True], ids=["new-directory", "existing-empty-directory"])
def test_a_sweep_refused_after_its_experiment_line_keeps_no_invocation(tmp_path, capsys, monkeypatch, existing):
    """The invocation is written once the sweep is accepted: data that cannot be cached is refused in the sweep's
    pre-flight, after the experiment line, and leaves no torchmate_sweep.json (and no directory it made)."""
    from torchmate_ray import cli

    monkeypatch.setattr(cli, "start_local_ray", lambda args: None)  # the refusal comes before the sweep needs Ray
    _, overrides, expected = REFUSALS[1]
    space = write_space(tmp_path, overrides=overrides)
    experiment = tmp_path / "results" / "exp"
    if existing:  # a directory without an experiment in it: a new sweep may use it
        experiment.mkdir(parents=True)
    assert cli.tune_main([str(space), "--storage-path", str(tmp_path / "results"), "--name", "exp"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"experiment: {experiment}  (continue it with: torchmate-tune {experiment} --resume)"
    assert err.splitlines()[-1:] == ["torchmate-tune: error: " + expected]
    assert not (experiment / "torchmate_sweep.json").exists() and experiment.exists() == existing


@pytest.mark.slow
@pytest.mark.parametrize("overrides, expected", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_a_refusal_after_ray_started_early_leaves_no_ray_process(tmp_path, overrides, expected):
    space = write_space(tmp_path, overrides=overrides)
    process = subprocess.Popen([TUNE, str(space), "--storage-path", str(tmp_path / "results"), "--name", "exp"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ray_processes_seen(process)
    out, err = process.communicate()
    assert process.returncode == 2, err[-3000:]
    # (after the experiment line, the data layer has said it uses the offline MNIST sample)
    assert err.splitlines()[-1:] == ["torchmate-tune: error: " + expected] and "Traceback" not in err
    assert {"gcs_server", "raylet"} <= set(seen.values())  # Ray had started early: the refusal came after
    assert still_alive(seen, grace_s=0) == []  # (the command ended once they had: no grace needed)
    assert not (tmp_path / "results" / "exp").exists()


@pytest.mark.slow
@pytest.mark.parametrize("cpus, threads", [(1, 1), (2, 2)], ids=["as-the-command-line-says", "as-the-file-says"])
def test_milestones_are_recorded_and_warm_trials_use_their_cpus(tmp_path, cpus, threads):
    """The file's CPUs per trial (2) are not the command line's (1): Ray is started again to fit them."""
    import os

    if cpus > (os.cpu_count() or 1):
        pytest.skip(f"needs {cpus} CPUs")
    from torchmate_ray.tune.sweep.local_ray import THREADS_ENV

    # (an earlier in-process test's Ray, shutting down in its own thread, may hold THREADS_ENV in this process's
    # environment for a moment: the command must not inherit it, or it would take the threads as given)
    env = {key: value for key, value in os.environ.items() if key != THREADS_ENV}
    result = subprocess.run([TUNE, str(write_space(tmp_path, cpus=cpus)), "--storage-path", str(tmp_path / "results"),
                             "--name", "exp"], capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    timings = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())["timings"]
    assert list(timings) == ["experiment_line_s", "first_epoch_s", "end_s"]
    assert 0 < timings["experiment_line_s"] < timings["first_epoch_s"] < timings["end_s"]
    assert format_timings(timings) in result.stdout.splitlines()
    assert (tmp_path / "threads.txt").read_text().split() == [str(threads)] * 2
