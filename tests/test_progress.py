"""Sweep progress: trial states, the log line and the terminal table, Ray's output kept quiet, and real sweeps
seen from outside (a 50-trial sweep piped into a log, a small one on a pseudo-terminal)."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import pty
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from torchmate_ray.cli import build_tune_parser
from torchmate_ray.tune.sweep import progress
from torchmate_ray.tune.sweep.progress import SweepProgress
from torchmate_ray.tune.sweep.progress_text import Best, Snapshot, format_duration, format_line, format_table, short_labels
from torchmate_ray.tune.sweep.ray_output import quiet_ray_output

from spaces import Code, written_space


@dataclass
class FakeTrial:
    """What the progress display reads from Ray's Trial."""

    trial_id: str
    status: str = "PENDING"
    last_result: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error_file: str | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_progress(tty: bool = False, num_trials: int = 4, **kwargs: Any) -> tuple[SweepProgress, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    shown = SweepProgress("val/acc", "max", num_trials, 3, ["optimizer", "optimizer.cfg.lr"], tty=tty, stream=out,
                          clock=clock, **kwargs)
    shown.setup(total_num_samples=num_trials)
    return shown, out, clock


def trial(trial_id: str, status: str = "RUNNING", epochs: int = 0, acc: float | None = None, lr: float = 0.01,
          **kwargs: Any) -> FakeTrial:
    result = {"training_iteration": epochs, **({"val/acc": acc} if acc is not None else {})} if epochs else {}
    return FakeTrial(trial_id, status, result, {"optimizer": {"name": "Adam", "cfg": {"lr": lr}}}, **kwargs)


# --- state --------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, epochs, ended, expected", [
    ("PENDING", 0, None, "pending"),
    ("PAUSED", 1, None, "pending"),
    ("RUNNING", 2, None, "running"),
    ("RUNNING", 1, "stopped", "stopped"),      # inside on_trial_complete Ray still says RUNNING
    ("TERMINATED", 3, None, "finished"),     # restored from an earlier run
    ("TERMINATED", 1, None, "stopped"),
    ("ERROR", 0, None, "errored"),
], ids=["pending", "paused", "running", "just-ended", "restored-finished", "restored-stopped", "errored"])
def test_state_of_a_trial(status, epochs, ended, expected):
    shown, _, _ = make_progress()
    if ended:
        shown._ended["t1"] = ended
    assert shown.state_of(trial("t1", status, epochs)) == expected


def test_snapshot_counts_epochs_best_and_eta():
    shown, _, clock = make_progress(num_trials=6)
    trials = [trial("a", "RUNNING", 3, 0.9), trial("b", "RUNNING", 1, 0.5), trial("c", "RUNNING", 2, 0.99),
              trial("d", "PENDING")]  # two more trials not created yet
    clock.now += 30
    shown.on_trial_complete(0, trials, trials[0])
    shown.on_trial_complete(0, trials, trials[1])
    s = shown.snapshot(trials)
    assert s.counts == {"running": 1, "pending": 3, "finished": 1, "stopped": 1, "errored": 0}
    assert (s.epochs_done, s.epoch_budget, s.ended) == (6, 18, 2)
    assert s.best == Best("a", 0.9, {"optimizer": "Adam", "lr": "0.01"})  # c is better but still running
    assert s.eta == pytest.approx(4 * 30 / 2)  # 4 trials to end at 15 s a trial


@pytest.mark.parametrize("mode, values, expected", [
    ("max", {"t2": 0.8, "t1": 0.8, "t3": 0.7}, "t1"),   # a tie goes to the smaller id, as in the leaderboard
    ("min", {"t1": 0.8, "t2": 0.3, "t3": float("nan")}, "t2"),
    ("max", {"t1": None}, None),
], ids=["max-tie", "min-nan", "no-metric"])
def test_best_of_ended_trials(mode, values, expected):
    shown = SweepProgress("val/acc", mode, 3, 3, [])
    trials = [trial(i, "TERMINATED", 3, v) for i, v in values.items()]
    best = shown.best_of(trials)
    assert (best.trial_id if best else None) == expected


# --- the log: one line per ended trial ------------------------------------------------------------
def test_each_ended_trial_prints_one_plain_line_with_the_counts():
    shown, out, clock = make_progress(num_trials=3)
    t1, t2, t3 = trial("t1", epochs=1, acc=0.5, lr=0.1), trial("t2", epochs=3, acc=0.8), trial("t3")
    trials = [t1, t2, t3]
    clock.now += 5
    shown.on_trial_start(0, trials, t1)
    shown.on_step_end(1, trials)
    assert out.getvalue() == ""  # a start or a step prints nothing
    shown.on_trial_complete(2, trials, t1)
    clock.now += 5
    t1.status = "TERMINATED"
    shown.on_trial_complete(3, trials, t2)
    t3.last_result = {"training_iteration": 2, "val/acc": 0.9}
    shown.on_trial_complete(4, trials, t3)
    shown.on_experiment_end(trials)
    assert out.getvalue().splitlines() == [
        "[0:05] t1 stopped at epoch 1/3, val/acc 0.5000 | 1/3 ended: 0 finished, 1 stopped, 0 errored; 2 running | "
        "epochs 4/9 | eta 0:10 | new best 0.5000 t1: optimizer=Adam lr=0.1",
        "[0:10] t2 finished at epoch 3/3, val/acc 0.8000 | 2/3 ended: 1 finished, 1 stopped, 0 errored; 1 running | "
        "epochs 4/9 | eta 0:05 | new best 0.8000 t2: optimizer=Adam lr=0.01",
        "[0:10] t3 stopped at epoch 2/3, val/acc 0.9000 | 3/3 ended: 1 finished, 2 stopped, 0 errored; 0 running | "
        "epochs 6/9 | eta 0:00 | new best 0.9000 t3: optimizer=Adam lr=0.01",
    ]


def test_trials_that_end_faster_than_a_line_a_second_share_a_line_once_50_are_printed():
    """2,000 trials ending 20 a second print a line a second, not 2,000 lines; up to 50 (lines_held) print each."""
    shown, out, clock = make_progress(num_trials=2_000)
    trials = [trial(f"t{i:05d}", epochs=1, acc=i / 2_000) for i in range(2_000)]
    for index, ended in enumerate(trials):
        clock.now += 0.05
        shown.on_trial_complete(index, trials, ended)
        ended.status = "TERMINATED"
    shown.on_experiment_end(trials)
    lines = out.getvalue().splitlines()
    single = [line for line in lines if re.match(r"\[\d+:\d\d\] t\d{5} stopped at epoch 1/3", line)]
    folded = [int(m.group(1)) for line in lines if (m := re.match(r"\[\d+:\d\d\] (\d+) trials ended \(", line))]
    assert lines[:len(single)] == single and len(single) >= 50  # each of the first 50 (and a few more) alone
    assert [line.split("] ", 1)[1].split(" ", 1)[0] for line in single] == [f"t{i:05d}" for i in range(len(single))]
    assert len(single) + len(folded) == len(lines) and len(single) + sum(folded) == 2_000  # each trial once
    assert 90 <= len(folded) <= 100 and max(folded) <= 21  # then a line a second, 20 trials each
    assert lines[-1].endswith("| 2000/2000 ended: 0 finished, 2000 stopped, 0 errored; 0 running | epochs 2000/6000 "
                              "| eta 0:00 | new best 0.9995 t01999: optimizer=Adam lr=0.01")
    assert re.search(r"\] \d+ trials ended \(\d+ stopped\), the last t01999 stopped at epoch 1/3, val/acc 0.9995 \|",
                     lines[-1])


def test_an_unchanged_best_is_named_without_its_hyperparameters():
    shown, out, _ = make_progress(num_trials=2)
    trials = [trial("t1", epochs=3, acc=0.9), trial("t2", epochs=1, acc=0.1)]
    shown.on_trial_complete(0, trials, trials[0])
    shown.on_trial_complete(0, trials, trials[1])
    assert out.getvalue().splitlines()[1].endswith("| best 0.9000 t1")


def test_an_errored_trial_line_gives_the_error_and_where_its_traceback_is(tmp_path):
    error_file = tmp_path / "error.txt"
    error_file.write_text("Failure # 1\nTraceback (most recent call last):\n  ...\nRuntimeError: exploding model\n\n")
    shown, out, _ = make_progress(num_trials=1)
    broken = trial("t1", "ERROR", error_file=str(error_file))
    shown.on_trial_error(0, [broken], broken)
    assert out.getvalue() == (f"[0:00] t1 errored at epoch 0/3: RuntimeError: exploding model (traceback: {error_file}) | "
                              f"1/1 ended: 0 finished, 0 stopped, 1 errored; 0 running | epochs 0/3 | eta 0:00 | best -\n")


# --- the terminal: a table redrawn in place ------------------------------------------------------
def test_the_table_is_redrawn_in_place_at_most_every_half_second():
    shown, out, clock = make_progress(tty=True, num_trials=2)
    trials = [trial("t1", epochs=1, acc=0.5), trial("t2")]
    shown.on_step_end(1, trials)
    first = out.getvalue()
    assert first.count("\n") == 4 and "\x1b[4A" not in first
    clock.now += 0.2
    shown.on_trial_complete(2, trials, trials[0])
    shown.on_step_end(2, trials)
    assert out.getvalue() == first  # too soon; an ended trial prints no line on a terminal
    clock.now += 0.4
    shown.on_step_end(3, trials)
    redraw = out.getvalue()[len(first):]
    assert redraw.startswith("\x1b[4A\r\x1b[2Ktrials   1/2 ended: 0 finished, 1 stopped, 0 errored  |  1 running, 0 pending\n")
    assert redraw.count("\x1b[2K") == 4


def test_an_unchanged_table_is_not_redrawn():
    shown, out, clock = make_progress(tty=True)
    trials = [trial("t1")]
    shown.on_step_end(1, trials)
    clock.now += 0.6  # elapsed still 0:01 (rounded), nothing else changed
    shown.on_step_end(2, trials)
    clock.now += 0.6
    shown.on_step_end(3, trials)
    assert out.getvalue().count("\x1b[4A") == 1 and "elapsed 0:01" in out.getvalue()


def test_the_final_table_shows_the_end_of_the_sweep():
    shown, out, clock = make_progress(tty=True, num_trials=2)
    trials = [trial("t1", epochs=3, acc=0.5, lr=0.003), trial("t2", epochs=1, acc=0.25)]
    clock.now += 65
    for t in trials:
        shown.on_trial_complete(0, trials, t)
    shown.on_experiment_end(trials)
    assert [line.removeprefix("\x1b[2K") for line in out.getvalue().splitlines()] == [
        "trials   2/2 ended: 1 finished, 1 stopped, 0 errored  |  0 running, 0 pending",
        "epochs   4/6  |  elapsed 1:05  |  eta 0:00",
        "best     val/acc 0.5000  t1  optimizer=Adam  lr=0.003",
        "last     t2 stopped at epoch 1/3, val/acc 0.2500",
    ]


def report(shown: SweepProgress, trials: list[FakeTrial], t: FakeTrial, values: list[float]) -> None:
    """``t`` reports one epoch per value, as Tune hands its results to the display."""
    for epoch, value in enumerate(values, start=1):
        t.last_result = {"training_iteration": epoch, "val/acc": value}
        shown.on_trial_result(epoch, trials, t, t.last_result)


@pytest.mark.parametrize("score, best, line", [
    ("last", "0.8000 t2", "t1 finished at epoch 3/3, val/acc 0.6000"),
    ("best", "0.9000 t1", "t1 finished at epoch 3/3, val/acc (best epoch) 0.9000"),
    ("last-2", "0.8000 t2", "t1 finished at epoch 3/3, val/acc (mean of last 2) 0.7500"),
], ids=["last", "best", "last-2"])
def test_the_progress_line_scores_and_names_trials_by_the_sweeps_score(score, best, line):
    shown, out, _ = make_progress(num_trials=2, score=score)
    t1, t2 = trial("t1"), trial("t2")
    report(shown, [t1, t2], t1, [0.5, 0.9, 0.6])  # peaked at epoch 2
    report(shown, [t1, t2], t2, [0.8, 0.8, 0.8])
    shown.on_trial_complete(3, [t1, t2], t1)
    shown.on_trial_complete(3, [t1, t2], t2)
    last = out.getvalue().splitlines()[-1]
    assert out.getvalue().splitlines()[0].startswith(f"[0:00] {line} | ") and f" best {best}" in last


def test_a_resumed_sweep_scores_trials_that_ended_before_it_by_their_recorded_epochs(tmp_path):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "result.json").write_text("".join(
        json.dumps({"training_iteration": epoch, "val/acc": value}) + "\n" for epoch, value in [(1, 0.5), (2, 0.9), (3, 0.6)]))
    shown, _, _ = make_progress(num_trials=2, score="best", experiment_dir=str(tmp_path))
    restored = trial("t1", "TERMINATED", 3, 0.6)  # Tune brings back its last result only
    assert shown.row_of(restored).value == 0.9


def test_table_lines_are_cut_to_the_terminal_width(monkeypatch):
    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda: os.terminal_size((40, 20)))
    shown, out, _ = make_progress(tty=True)
    shown.on_step_end(0, [trial("t1")])
    assert max(len(line.removeprefix("\x1b[2K")) for line in out.getvalue().splitlines()) == 39


# --- formatting ------------------------------------------------------------------------------------
@pytest.mark.parametrize("paths, labels", [
    (["optimizer", "optimizer.cfg.lr", "optimizer.cfg.weight_decay", "dataloaders.train.batch_size"],
     ["optimizer", "lr", "weight_decay", "batch_size"]),
    (["model.name", "model.cfg.hidden", "optimizer.cfg.lr", "scheduler.cfg.lr"],
     ["model", "hidden", "optimizer.cfg.lr", "scheduler.cfg.lr"]),
    (["b.c.1.d", "b.c.2"], ["d", "c.2"]),
], ids=["lenet", "clash-and-spec-name", "list-index"])
def test_short_labels(paths, labels):
    assert short_labels(paths) == labels


@pytest.mark.parametrize("seconds, text", [(None, "?"), (0.4, "0:00"), (42, "0:42"), (725, "12:05"), (3729, "1:02:09"),
                                          (float("inf"), "?")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_lines_and_tables_never_hold_terminal_codes():
    s = Snapshot({"running": 1, "pending": 0, "finished": 1, "stopped": 0, "errored": 0}, 2, 4, 6,
                 Best("t1", 0.5, {"lr": "0.1"}), 3.0, 3.0)
    assert "\x1b" not in format_line("t1 finished at epoch 3/3", s, True)
    assert all("\x1b" not in line for line in format_table(s, "val/acc", ""))


# --- how it plugs into Ray Tune --------------------------------------------------------------------
def test_the_callback_pickles_into_the_tuner_state():
    shown = SweepProgress("val/acc", "max", 4, 3, ["optimizer.cfg.lr"])
    copy = pickle.loads(pickle.dumps(shown))
    assert (copy.metric, copy.labels, copy.stream) == ("val/acc", ["lr"], None)


def test_a_resumed_sweep_counts_the_trials_that_ended_before_it():
    shown, out, _ = make_progress(num_trials=3)
    trials = [trial("t1", "TERMINATED", 3, 0.7), trial("t2", "ERROR", 1), trial("t3", "RUNNING", 2, 0.4)]
    shown.on_trial_complete(0, trials, trials[2])
    assert "t3 stopped at epoch 2/3, val/acc 0.4000 | 3/3 ended: 1 finished, 1 stopped, 1 errored" in out.getvalue()
    assert out.getvalue().rstrip().endswith("new best 0.7000 t1: optimizer=Adam lr=0.01")


def test_quiet_ray_output_switches_ray_to_its_silent_engine_and_drops_trial_error_logs(caplog, monkeypatch):
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    with caplog.at_level(logging.WARNING, logger="ray.tune"):
        with quiet_ray_output(verbose=False):
            assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
            controller.error("Trial task failed for trial train_trial_1")
            controller.error("Something else")
        controller.error("Trial task failed for trial train_trial_2")
        with quiet_ray_output(verbose=True):
            assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    assert [r.getMessage() for r in caplog.records] == ["Something else", "Trial task failed for trial train_trial_2"]


def write_space(tmp_path: Path, num_samples: int) -> Path:
    path = tmp_path / "space.py"
    path.write_text(written_space(
        tmp_path / "data", hidden=[8], optimizer="Adam", lr=Code("tune.loguniform(1e-4, 1e-1)"),
        training={"max_epochs": 3, "limit_train_batches": 2, "limit_val_batches": 1}, batch_size=32,
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": num_samples}))
    return path


@pytest.mark.parametrize("flags, verbose, callbacks", [([], 0, ["ResultRecord", "FailureBudget", "SweepProgress"]),
                                                      (["--verbose"], 1, ["ResultRecord", "FailureBudget"])],
                         ids=["default", "verbose"])
def test_verbose_gives_ray_its_output_back(tmp_path, flags, verbose, callbacks):
    from torchmate_ray.tune.search.space import load_search_space
    from torchmate_ray.tune.sweep.run import build_run_config

    args = build_tune_parser().parse_args([str(write_space(tmp_path, 2)), *flags])
    config = build_run_config(load_search_space(args.space_file), tmp_path / "exp", args.verbose)
    assert (config.verbose, [type(c).__name__ for c in config.callbacks]) == (verbose, callbacks)


def test_a_restored_tuner_shows_this_runs_progress(tmp_path):
    from ray import tune

    from torchmate_ray.tune.search.space import load_search_space
    from torchmate_ray.tune.sweep.run import build_run_config, restore_run_output

    space = load_search_space(write_space(tmp_path, 2))
    tune.Tuner(lambda config: None, run_config=build_run_config(space, tmp_path / "exp", verbose=True))  # tuner.pkl
    restored = tune.Tuner.restore(str(tmp_path / "exp"), lambda config: None)
    assert restored._local_tuner.get_run_config().verbose == 1
    now = build_run_config(space, tmp_path / "exp")
    restore_run_output(restored, now)
    assert restored._local_tuner.get_run_config().callbacks == now.callbacks
    assert restored._local_tuner.get_run_config().verbose == 0


# --- real sweeps ---------------------------------------------------------------------------------------
TUNE = str(Path(sys.executable).parent / "torchmate-tune")
PROGRESS_LINE = re.compile(r"^\[\d+:\d\d\] (\S+) (finished|stopped|errored) at epoch \d/3.* \| (\d+)/(\d+) ended: "
                           r"(\d+) finished, (\d+) stopped, (\d+) errored; \d+ running \| epochs \d+/(\d+) \| eta ")


@pytest.mark.slow
def test_a_50_trial_sweep_logs_under_200_plain_lines(tmp_path):
    result = subprocess.run([TUNE, str(write_space(tmp_path, 50)), "--storage-path", str(tmp_path / "results"),
                             "--name", "exp"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "TORCHMATE_OFFLINE": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    lines = output.splitlines()
    assert len(lines) < 200, output
    assert "\x1b" not in output
    matches = [m for line in lines if (m := PROGRESS_LINE.match(line))]
    assert len(matches) == 50  # one per ended trial, each trial once
    assert len({m.group(1) for m in matches}) == 50
    last = matches[-1]
    finished, stopped, errored = (int(last.group(i)) for i in (5, 6, 7))
    assert (last.group(3), last.group(4), last.group(8)) == ("50", "50", "150")
    summary = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())
    assert summary["trials"] == {"finished": finished, "stopped": stopped, "errored": errored}
    assert re.search(rf"\| (new )?best {summary['best_value']:.4f} {summary['best_trial']}\b", last.string)


@pytest.mark.slow
def test_on_a_terminal_the_table_is_redrawn_and_ends_with_the_final_counts(tmp_path):
    leader, follower = pty.openpty()
    process = subprocess.Popen([TUNE, str(write_space(tmp_path, 6)), "--storage-path", str(tmp_path / "results"),
                                "--name", "exp"], stdin=follower, stdout=follower, stderr=follower, cwd=tmp_path,
                               env={**os.environ, "TORCHMATE_OFFLINE": "1", "TERM": "xterm"})
    os.close(follower)
    output = read_until_exit(leader, process, timeout=240)
    assert process.returncode == 0, output[-3000:]
    assert output.count("\x1b[4A\r") >= 1  # redrawn in place
    summary = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())
    counts = summary["trials"]
    final = output[output.rindex("\x1b[2Ktrials"):].replace("\r", "")
    assert final.startswith(f"\x1b[2Ktrials   6/6 ended: {counts['finished']} finished, {counts['stopped']} stopped, "
                            f"0 errored  |  0 running, 0 pending\n")
    assert f"best     val/accuracy {summary['best_value']:.4f}  {summary['best_trial']}  lr=" in final


def read_until_exit(fd: int, process: subprocess.Popen, timeout: float) -> str:
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=max(deadline - time.monotonic(), 1))
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")
