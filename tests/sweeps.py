"""Running sweeps as users do, and reading what they leave: one place for the tests' launch code and file readers.

    run = tune(space, "--storage-path", results, "--name", "exp", cwd=tmp_path)  # the command, to its end
    driver, log, experiment = start_sweep(tmp_path, space_text)                   # in the background, to stop it
    kill_sweep(driver)                                                            # SIGKILL, with its Ray
    assert resume_in_process(experiment) == 0

A test that needs the command's own process (its exit, its signals, its Ray's processes, its timings from the
process's start) runs :func:`tune` or :func:`start_sweep`; one that reads only what a sweep wrote may share a
sweep (conftest's session fixtures) or run it in this process (:func:`tune_in_process`: no interpreter to start
and no torch, Lightning and Ray to import again, 9 s on 2 CPUs).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spaces import read_epoch_log

BIN = Path(sys.executable).parent
TUNE = str(BIN / "torchmate-tune")
TRAIN = str(BIN / "torchmate-train")


def tune(*args: str | Path, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess:
    """``torchmate-tune ARGS`` in ``cwd``, to its end; its output captured as text."""
    return subprocess.run([TUNE, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=None if env is None else {**os.environ, **env})


def tune_in_process(*args: str | Path) -> tuple[int, str]:
    """``tune_main(ARGS)`` in this process: its exit code and what it printed on stdout. Its Ray is down after.
    Unlike the command's, this Ray listens on the machine's address: pytest imported Ray before the command could
    set the switch that keeps it on loopback (cli.py)."""
    import ray

    from torchmate_ray.cli import tune_main

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = tune_main([str(arg) for arg in args])
    finally:
        ray.shutdown()
    return code, out.getvalue()


def start_sweep(tmp_path: Path, space_text: str, env: dict[str, str] | None = None,
                ) -> tuple[subprocess.Popen, Path, Path]:
    """``torchmate-tune`` on ``space_text`` in its own process group (with ``env`` added to its environment);
    returns it, the epoch log (spaces.EPOCH_LOG's), the experiment."""
    log, space = tmp_path / "epochs.log", tmp_path / "space.py"
    space.write_text(space_text)
    driver = subprocess.Popen([TUNE, str(space), "--storage-path", str(tmp_path / "results"), "--name", "exp"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, env={**os.environ, **(env or {})})
    return driver, log, tmp_path / "results" / "exp"


def kill_sweep(driver: subprocess.Popen) -> None:
    """SIGKILL the sweep's process group and all that it started (Ray's processes keep its session)."""
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    subprocess.run(["pkill", "-KILL", "-s", str(driver.pid)], capture_output=True)


def epochs_by_trial(lines: list[str]) -> dict[str, list]:
    """``{trial: [0, 1, 2, "end"]}``: the epochs each trial started, and "end" when its fit returned."""
    epochs: dict[str, list] = defaultdict(list)
    for trial, _, what in read_epoch_log(lines):
        epochs[trial].append(what)
    return epochs


def wait_for(driver: subprocess.Popen, log: Path, done: Callable[[dict[str, list]], bool], timeout: float = 240,
             ) -> dict[str, list]:
    """Poll the epoch log until ``done(epochs by trial)``; fail if the sweep ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        state = epochs_by_trial(log.read_text().splitlines() if log.exists() else [])
        if done(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"the sweep ended (or hung) before the moment to interrupt it: {driver.poll()}")


def resume_in_process(experiment: Path) -> int:
    """``torchmate-tune EXPERIMENT --resume`` in this process; its exit code."""
    return tune_in_process(experiment, "--resume")[0]


# --- what a sweep leaves -------------------------------------------------------------------------------------
def summary(experiment: Path) -> dict[str, Any]:
    return json.loads((experiment / "summary.json").read_text())


def leaderboard(experiment: Path) -> list[dict[str, str]]:
    """leaderboard.csv's rows, best first."""
    with open(experiment / "leaderboard.csv") as handle:
        return list(csv.DictReader(handle))


def recorded(experiment: Path) -> dict[str, list[int]]:
    """The epochs each trial's result.json holds, in order."""
    return {d.name: [json.loads(line)["epochs"] for line in (d / "result.json").read_text().splitlines()]
            for d in sorted(experiment.glob("*")) if (d / "result.json").is_file()}


def final_tune_states(experiment: Path) -> dict[str, str]:
    """Trial id -> status in Tune's newest experiment state."""
    newest = sorted(experiment.glob("experiment_state-*.json"))[-1]
    entries = json.loads(newest.read_text())["trial_data"]
    return {trial["trial_id"]: trial["status"] for trial in (json.loads(entry[0]) for entry in entries)}


def check_ended_record(experiment: Path, max_epochs: int) -> dict:
    """Every trial's epochs recorded exactly once (1..n); summary.json's statuses are Tune's final ones."""
    ended = summary(experiment)
    states = final_tune_states(experiment)
    for trial, epochs in recorded(experiment).items():
        assert epochs == list(range(1, len(epochs) + 1)), (trial, epochs)
    for row in leaderboard(experiment):
        tune_status = {"TERMINATED": "finished" if int(row["epochs"]) == max_epochs else "stopped",
                       "ERROR": "errored"}[states[row["trial_id"]]]
        assert row["status"] == tune_status, (row, states)
    assert ended["state"] == "ended" and set(ended["trials"]) == {"finished", "stopped", "errored"}
    return ended


def study_trials(experiment: Path) -> list:
    """The trials of the experiment's Optuna study, read by Optuna."""
    import optuna

    from torchmate_ray.tune.search.optuna_space import study_url

    return optuna.load_study(study_name=experiment.name, storage=study_url(experiment)).trials
