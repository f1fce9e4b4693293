"""Nothing lost: a sweep whose driver is SIGKILLed mid-way continues with --resume from its checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchmate_ray.cli import tune_main

from spaces import EPOCH_LOG, Code, epoch_log, tiny_space
from sweeps import (check_ended_record, epochs_by_trial, kill_sweep, recorded, resume_in_process, start_sweep,
                    wait_for)

FIFO = {"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo", "max_concurrent": 2}


def logged_space(tmp_path: Path, lrs: list[float], max_epochs: int = 3, sweep: dict = FIFO, code: str = EPOCH_LOG,
                 callback: str = "EpochLog") -> str:
    """The tiny config, a grid over ``lrs``, trials that log their epochs (EpochLog, to <tmp_path>/epochs.log) and
    take at least a second an epoch; FIFO, two trials at once, unless ``sweep`` says otherwise."""
    return tiny_space(tmp_path / "data", code=code, overrides={
        "training": {"max_epochs": max_epochs, "limit_train_batches": 5, "limit_val_batches": 2,
                     "callbacks": [epoch_log(tmp_path / "epochs.log", 1.0, callback)]},
        "optimizer.cfg.lr": Code(f"tune.grid_search({lrs})")}, sweep=sweep)


@pytest.mark.slow
def test_killed_driver_resumes_without_losing_or_repeating_work(tmp_path):
    log = tmp_path / "epochs.log"
    space = tmp_path / "space.py"
    space.write_text(logged_space(tmp_path, [1e-2, 5e-3, 2e-3, 1e-3]))
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
    for trial_dir in (tmp_path / "results" / "exp").glob("*/result.json"):  # the newest and the best: 1 + keep_best
        assert 1 <= len(list(trial_dir.parent.glob("checkpoint_*"))) <= 2, trial_dir.parent
    assert (tmp_path / "results" / "exp" / "best" / "model.ckpt").is_file()


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


# --- every epoch recorded once, whatever stops the sweep (issue: nothing lost) -------------------------------
ASHA = {"metric": "val/accuracy", "mode": "max", "num_samples": 1, "max_concurrent": 1,
        "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 2}}}


@pytest.mark.slow
def test_a_resumed_trial_records_every_epoch_once_whatever_the_kill_cut_short(tmp_path):
    """Trial A (lr 1e-2) then B (lr 1e-7, no better than chance) one at a time, ASHA rungs at 1, 2, 4 epochs.
    The driver is SIGKILLed while A is in its third epoch; then, as a kill mid-write leaves them, either A's
    second line in result.json is cut short (the driver died before recording it: the resumed A reports
    epoch 2 from its own record, without training it again) or A's newest checkpoint is (A goes on from the
    other one kept, epoch 1's if that was its best, else from the start, and trains epoch 2 again, but does
    not report it twice). One kill for both: the experiment as the kill left it is put back before the second
    (each had a sweep of its own before, as the parametrized cases torn-record and torn-checkpoint)."""
    driver, log, experiment = start_sweep(tmp_path, logged_space(tmp_path, [1e-2, 1e-7], max_epochs=4, sweep=ASHA))
    before = wait_for(driver, log, lambda state: any(e[-1] == 2 for e in state.values()))
    kill_sweep(driver)
    (a,) = before
    as_killed = tmp_path / "as_killed"
    shutil.copytree(experiment, as_killed, symlinks=True)
    for torn in ("record", "checkpoint"):
        if torn == "checkpoint":  # the experiment again as the kill left it
            shutil.rmtree(experiment)
            shutil.copytree(as_killed, experiment, symlinks=True)
        result = experiment / a / "result.json"
        lines = result.read_text().splitlines()
        assert [json.loads(line)["epochs"] for line in lines] == [1, 2]
        if torn == "record":
            result.write_text(lines[0] + "\n" + lines[1][:40])
            trained_again = [2, 3]
        else:
            kept = sorted(int(p.name.split("_")[1]) for p in (experiment / a).glob("checkpoint_*"))
            assert kept in ([2], [1, 2])  # the newest and the best (sweep.keep_best 1): nothing else
            checkpoint = experiment / a / "checkpoint_000002" / "trainer.ckpt"
            checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
            trained_again = [1, 2, 3] if kept == [1, 2] else [0, 1, 2, 3]
        cut = len(log.read_text().splitlines())

        assert resume_in_process(experiment) == 0, torn
        after = epochs_by_trial(log.read_text().splitlines()[cut:])
        summary = check_ended_record(experiment, max_epochs=4)
        (b,) = [trial for trial in recorded(experiment) if trial != a]
        assert recorded(experiment) == {a: [1, 2, 3, 4], b: [1]}, torn
        assert [e for e in after[a] if e != "end"] == trained_again, torn
        assert summary["trials"] == {"finished": 1, "stopped": 1, "errored": 0}, torn


@pytest.mark.slow
def test_asha_resumes_with_the_rungs_of_the_trials_that_ended_before_the_kill(tmp_path):
    """A runs its 4 epochs and ends; the driver is SIGKILLed before B's first result, and before Tune's next
    state snapshot (one a minute here): Tune's state has A running, without a result. The resumed A ends at
    once, with its recorded result; Tune keeps no scheduler state: the resumed ASHA gets A's results back
    from its result.json, so B, no better than chance, is stopped at rung 1 against A's first epoch (an empty
    ASHA would let it run all 4)."""
    driver, log, experiment = start_sweep(tmp_path, logged_space(tmp_path, [1e-2, 1e-7], max_epochs=4, sweep=ASHA),
                                          env={"TUNE_GLOBAL_CHECKPOINT_S": "60"})
    wait_for(driver, log, lambda state: len(recorded(experiment).get(next(iter(state), ""), [])) == 4)
    kill_sweep(driver)
    (a,) = recorded(experiment)

    assert resume_in_process(experiment) == 0
    summary = check_ended_record(experiment, max_epochs=4)
    (b,) = [trial for trial in recorded(experiment) if trial != a]
    assert recorded(experiment) == {a: [1, 2, 3, 4], b: [1]}
    assert summary["trials"] == {"finished": 1, "stopped": 1, "errored": 0}


@pytest.mark.slow
@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_sweep_says_so_exits_non_zero_and_resumes(tmp_path, signal_name, code):
    """Ctrl-C (SIGINT) or SIGTERM once a trial is in its second epoch; then --resume (after SIGINT only: the
    stop is the same for both, and the resume is what it resumes)."""
    driver, log, experiment = start_sweep(tmp_path, logged_space(tmp_path, [1e-2, 5e-3]))
    wait_for(driver, log, lambda state: any(1 in e for e in state.values()))
    driver.send_signal(getattr(signal, signal_name))
    out, err = driver.communicate(timeout=120)
    subprocess.run(["pkill", "-KILL", "-s", str(driver.pid)], capture_output=True)
    assert driver.returncode == code, err[-3000:]
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["state"] == "interrupted" and summary["interrupted_by"] == signal_name
    assert summary["trials"].get("interrupted", 0) >= 1 and summary["trials"]["finished"] < 2
    assert f"interrupted ({signal_name}): continue it with: torchmate-tune {experiment} --resume" in out
    assert "Tuner.restore" not in out + err
    if signal_name == "SIGTERM":
        return

    assert resume_in_process(experiment) == 0
    summary = check_ended_record(experiment, max_epochs=3)
    assert summary["trials"] == {"finished": 2, "stopped": 0, "errored": 0}
    trained = epochs_by_trial(log.read_text().splitlines())
    for trial, epochs in trained.items():  # each epoch trained once, but the one the signal cut short
        done = [e for e in epochs if e != "end"]
        assert sorted(set(done)) == [0, 1, 2] and len(done) - len(set(done)) <= 1, (trial, epochs)


RAISING_EPOCH_LOG = EPOCH_LOG + '''
class RaisingEpochLog(EpochLog):
    """Raises as its third epoch starts (once logged), in a trial whose learning rate is under 5e-3."""
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 2 and trainer.optimizers[0].param_groups[0]["lr"] < 5e-3:
            self.write(trainer.current_epoch)
            raise RuntimeError("bad epoch")
        super().on_train_epoch_start(trainer, pl_module)
'''


@pytest.mark.slow
def test_a_killed_trial_process_is_retried_and_a_raising_trial_is_not(tmp_path):
    """Two trials at once: the first one's process is killed with SIGKILL after its second epoch (the OOM
    killer's way); it goes on from its checkpoint. The second raises in its third epoch: errored, and its
    code runs no more."""
    driver, log, experiment = start_sweep(tmp_path, logged_space(tmp_path, [1e-2, 1e-3], max_epochs=4,
                                                                 code=RAISING_EPOCH_LOG, callback="RaisingEpochLog"))

    def lr(trial: str) -> float:
        return json.loads((experiment / trial / "params.json").read_text())["optimizer"]["cfg"]["lr"]

    state = wait_for(driver, log, lambda state: any(e[-1] == 2 and lr(t) == 1e-2 for t, e in state.items()))
    first = next(trial for trial, epochs in state.items() if epochs[-1] == 2 and lr(trial) == 1e-2)
    pid = json.loads((experiment / first / "result.json").read_text().splitlines()[-1])["pid"]
    os.kill(pid, signal.SIGKILL)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 1, err[-3000:]  # the raising trial errored
    trained = epochs_by_trial(log.read_text().splitlines())
    (second,) = [trial for trial in trained if trial != first]
    assert [e for e in trained[first] if e != "end"] in ([0, 1, 2, 3], [0, 1, 2, 2, 3])  # killed in its third, maybe
    assert trained[second] == [0, 1, 2]  # raised as its third epoch began; not started again
    summary = check_ended_record(experiment, max_epochs=4)
    assert summary["trials"] == {"finished": 1, "stopped": 0, "errored": 1}
    assert summary["errors"] == {second: "RuntimeError: bad epoch"}
    assert recorded(experiment) == {first: [1, 2, 3, 4], second: [1, 2]}


RESUMABLE = tiny_space(None, overrides={"training": {"max_epochs": 4},
                                        "optimizer.cfg.lr": Code("tune.loguniform(1e-4, 1e-1)")},
                       sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 12})


def saved_experiment(tmp_path: Path, form: str) -> tuple[Path, list[str]]:
    """An experiment that started as ``RESUMABLE --num-samples 6 --max-epochs 2`` (its saved invocation, no Tune
    state), and how the command line names it: the experiment ``directory`` or the search-space ``file``."""
    space = tmp_path / "space.py"
    space.write_text(RESUMABLE)
    experiment = tmp_path / "results" / "exp"
    experiment.mkdir(parents=True)
    (experiment / "torchmate_sweep.json").write_text(json.dumps({
        "space_file": str(space), "overrides": [], "max_epochs": 2,
        "settings": {"num_samples": 6, "name": "exp", "storage_path": str(tmp_path / "results")},
        "resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0}}))
    if form == "directory":
        return experiment, [str(experiment)]
    return experiment, [str(space), "--storage-path", str(tmp_path / "results"), "--name", "exp"]


@pytest.mark.parametrize("form, flags, refused", [
    ("directory", ["--num-samples", "7"], "--num-samples: the experiment in {exp} ran with 6"),
    ("directory", ["--max-epochs", "9"], "--max-epochs: the experiment in {exp} ran with 2"),
    ("directory", ["--scheduler", "fifo"], "--scheduler: the experiment in {exp} ran with 'asha'"),
    ("file", ["--num-samples", "12"], "--num-samples: the experiment in {exp} ran with 6"),
    ("file", ["--workers-per-trial", "2"], "--workers-per-trial: the experiment in {exp} ran with 1"),
    ("directory", ["--tracker", "mlflow"], "--tracker: the experiment in {exp} ran with 'tensorboard'"),
    ("directory", ["--num-samples", "6", "--max-epochs", "2"], None),  # what it ran with: not a contradiction
    ("file", [], None),
], ids=["directory-other-samples", "directory-other-epochs", "directory-other-scheduler", "file-its-own-samples",
        "file-other-workers", "directory-other-tracker",
        "directory-the-same-flags", "file-no-flags"])
def test_a_resume_that_contradicts_how_the_sweep_started_is_refused(tmp_path, capsys, form, flags, refused):
    """The saved invocation is what a resume runs; flags that say otherwise are one line, exit 2, nothing run.
    (The experiment here has its saved invocation but no Tune state: a resume that gets past the check is
    refused next for having nothing to resume. The refusals are checked with --dry-run, which refuses at the
    same step and starts no Ray.)"""
    experiment, where = saved_experiment(tmp_path, form)
    dry_run = ["--dry-run"] if refused else []  # refused before a dry run prints as before a real one starts Ray
    assert tune_main([*where, "--resume", *flags, *dry_run]) == 2
    err = capsys.readouterr().err.splitlines()
    expected = refused.format(exp=experiment) if refused else f"--resume: nothing to resume in {experiment}"
    assert len(err) == 1 and err[0].startswith(f"torchmate-tune: error: {expected}"), err


@pytest.mark.parametrize("form", ["directory", "file"])
def test_a_resume_runs_the_sweep_as_it_started_not_the_files_defaults(tmp_path, capsys, form):
    """The file says 12 samples and 4 epochs; the experiment started with --num-samples 6 --max-epochs 2."""
    experiment, where = saved_experiment(tmp_path, form)
    assert tune_main([*where, "--resume", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  num_samples: 6" in out and "  max_epochs: 2" in out


def test_an_accepted_sweep_keeps_its_invocation_with_its_name_and_planned_resources(tmp_path):
    """What a resume and the report read back: written by Experiment.accept (not before), named, resources as planned."""
    from torchmate_ray.tune.experiment.directory import Invocation, open_experiment, read_invocation

    space_file = tmp_path / "space.py"
    space_file.write_text(RESUMABLE)
    given = Invocation(str(space_file), max_epochs=2, settings={"num_samples": 6, "storage_path": str(tmp_path)})
    space = given.load_space()
    experiment = open_experiment(space, given, resume=False)
    assert experiment.directory == tmp_path / space.settings.name and not experiment.directory.exists()
    experiment.accept({"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0.25})
    saved = read_invocation(experiment.directory)
    assert saved == Invocation(str(space_file), [], 2, {**given.settings, "name": space.settings.name},
                               {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0.25})
    assert saved.load_space().settings.resources["gpus_per_worker"] == 0.25
