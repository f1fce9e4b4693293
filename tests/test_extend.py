"""Growing a finished sweep: ``torchmate-tune extend EXPERIMENT_DIR --num-samples N`` runs N more trials beside the
ones that ran, which stay as they were and which the search goes on from (Optuna's study, ASHA's rungs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray

from spaces import Code, tiny_space
from sweeps import study_trials, tune_in_process
from torchmate_ray.cli import tune_main
from torchmate_ray.tune.experiment.directory import Invocation, read_invocation, save_invocation



def finished_looking_experiment(tmp_path: Path, states: dict[str, str], seed: int | None = 5) -> Path:
    """An experiment directory as a sweep leaves it, as far as ``extend`` reads it before anything runs: the
    invocation, Tune's tuner.pkl and its newest experiment state with the trials' ``states``."""
    space = tmp_path / "space.py"
    space.write_text(tiny_space(tmp_path / "data", sweep={"metric": "val/loss", "mode": "min", "num_samples": 3},
                                overrides={"optimizer.cfg.lr": Code("tune.loguniform(1e-3, 1e-1)")}))
    experiment = tmp_path / "results" / "exp"
    save_invocation(experiment, Invocation(str(space), settings={"name": "exp", "storage_path": str(experiment.parent),
                                                                 **({"seed": seed} if seed is not None else {})}))
    (experiment / "tuner.pkl").write_bytes(b"")
    trial_data = [[json.dumps({"trial_id": trial_id, "status": state}), "{}"] for trial_id, state in states.items()]
    (experiment / "experiment_state-2026-11-28_07-00-00.json").write_text(json.dumps({"trial_data": trial_data}))
    return experiment


def test_asha_judges_an_extensions_trials_against_the_earlier_ones(tmp_path):
    """Three earlier trials reached epoch 1 with losses 0.1, 0.2 and 0.3: a new trial's 0.25 is not in the best
    third, so ASHA stops it there; without the earlier trials it is the first in its rung, and goes on."""
    from torchmate_ray.tune.search.asha import RecordedASHA

    earlier = []
    for i, loss in enumerate([0.1, 0.2, 0.3]):
        trial_dir = tmp_path / f"earlier_0000{i}"
        trial_dir.mkdir()
        (trial_dir / "result.json").write_text(json.dumps({"epochs": 1, "val/loss": loss}) + "\n")
        earlier.append(trial_dir)

    def judge(history: list[Path]) -> str:
        asha = RecordedASHA(time_attr="epochs", max_t=9, grace_period=1, reduction_factor=3)
        asha.set_search_properties("val/loss", "min")
        asha.add_history(history)
        new = SimpleNamespace(trial_id="new_00000", storage=SimpleNamespace(trial_dir_name=""))
        asha.on_trial_add(None, new)
        return asha.on_trial_result(None, new, {"epochs": 1, "val/loss": 0.25})

    assert (judge([]), judge(earlier)) == ("CONTINUE", "STOP")


@pytest.mark.parametrize("flags, states, expected", [
    (["--num-samples", "2"], {"a_00000": "TERMINATED", "a_00001": "RUNNING", "a_00002": "PENDING"},
     "{experiment}: 2 of its trials are unfinished (a_00001, a_00002); finish them first: torchmate-tune "
     "{experiment} --resume"),
    (["--num-samples", "0"], {"a_00000": "TERMINATED"},
     "--num-samples: expected the number of trials to add (an int >= 1), got 0 (int); e.g. --num-samples 12"),
], ids=["unfinished-trials", "no-trials-to-add"])
def test_what_cannot_grow_is_refused_alike_by_a_dry_run_and_a_real_run(tmp_path, capsys, flags, states, expected):
    experiment = finished_looking_experiment(tmp_path, states)
    saved = (experiment / "torchmate_sweep.json").read_text()
    line = "torchmate-tune: error: " + expected.format(experiment=experiment)
    for dry_run in (["--dry-run"], []):
        assert tune_main(["extend", str(experiment), *flags, *dry_run]) == 2
        assert capsys.readouterr().err.splitlines() == [line]
        assert not ray.is_initialized() and (experiment / "torchmate_sweep.json").read_text() == saved


def test_a_directory_without_a_sweep_cannot_grow(tmp_path, capsys):
    assert tune_main(["extend", str(tmp_path), "--num-samples", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"torchmate-tune: error: {tmp_path}: is not a torchmate-tune experiment (no torchmate_sweep.json); give the "
        f"directory torchmate-tune printed as 'experiment:'"]


def test_each_extension_of_a_seeded_random_search_draws_new_configs(tmp_path):
    """The sweep's seed, then a seed of each extension's own: each draws other learning rates."""
    from torchmate_ray.tune.sweep.extend import extend_experiment
    from torchmate_ray.tune.sweep.run import build_searcher

    experiment = finished_looking_experiment(tmp_path, {"a_00000": "TERMINATED"})

    def drawn(space) -> list[float]:
        searcher = build_searcher(space, max_concurrent=0)
        searcher.add_configurations({"exp": {"run": lambda config: None, "num_samples": 3, "config": space.config}})
        return [searcher.next_trial().config["optimizer"]["cfg"]["lr"] for _ in range(3)]

    first = read_invocation(experiment).load_space()
    grown = extend_experiment(experiment, 3)
    assert grown.invocation.load_space().settings.num_samples == 3
    assert grown.saved.load_space().settings.num_samples == 6
    save_invocation(experiment, grown.saved)
    again = extend_experiment(experiment, 4)
    seeds = [first.settings.seed, grown.invocation.settings["seed"], again.invocation.settings["seed"]]
    assert len(set(seeds)) == 3 and again.saved.grown == [{"num_samples": 3, "seed": seeds[1]},
                                                          {"num_samples": 4, "seed": seeds[2]}]
    draws = [drawn(first), drawn(grown.invocation.load_space()), drawn(again.invocation.load_space())]
    assert len({lr for lrs in draws for lr in lrs}) == 9
    assert drawn(grown.invocation.load_space()) == draws[1]  # each extension's own draws, the same every time


@pytest.mark.slow
def test_extending_an_optuna_sweep_by_4_keeps_the_4_and_gives_optunas_study_all_8(optuna_sweep):
    """conftest's optuna_sweep: lenet.py's Optuna search of 4, grown by 4 (before: the tiny config's 12 by 12)."""
    from optuna.trial import TrialState

    from conftest import files_of

    experiment, grown = optuna_sweep.experiment, optuna_sweep.grown
    assert len(optuna_sweep.searched_rows) == 4 and len(optuna_sweep.searched_told) == 4
    assert grown.returncode == 0, grown.stderr[-3000:]
    earlier = sorted(p.parent for p in experiment.glob("*/params.json") if str(p) in optuna_sweep.searched_files)
    assert len(earlier) == 4
    trial_dirs = sorted(path.parent for path in experiment.glob("*/params.json"))
    assert len(trial_dirs) == 8 and files_of(earlier) == optuna_sweep.searched_files  # not a byte changed, nothing added
    with open(experiment / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    trials = study_trials(experiment)
    assert len(trials) == 8 and all(trial.state == TrialState.COMPLETE for trial in trials)
    assert sorted(trial.value for trial in trials) == sorted(float(row["val/accuracy"]) for row in rows)
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["num_trials"] == 8 and summary["trials"]["finished"] == 8
    assert read_invocation(experiment).grown == [{"num_samples": 4, "seed": 3 + 7919}]
    assert read_invocation(experiment).load_space().settings.num_samples == 8


# --- --start-from: a new sweep that first runs an old sweep's winners ---------------------------------------
OLD_TRIALS = {"old_00000": (0.02, [16], 0.9), "old_00001": (0.005, [32], 0.4), "old_00002": (0.05, [16], 0.6)}


def old_experiment(tmp_path: Path) -> Path:
    """A finished sweep over the learning rate and the hidden layers: three trials, best (lowest loss) first:
    old_00001, old_00002, old_00000."""
    space = tmp_path / "old.py"
    space.write_text(tiny_space(tmp_path / "data", sweep={"metric": "val/loss", "mode": "min", "num_samples": 3},
                                overrides={"optimizer.cfg.lr": Code("tune.loguniform(1e-3, 1e-1)"),
                                           "model.cfg.hidden": Code("tune.choice([[16], [32]])")}))
    experiment = tmp_path / "results" / "old"
    save_invocation(experiment, Invocation(str(space), settings={"name": "old",
                                                                 "storage_path": str(experiment.parent)}))
    for trial_id, (lr, hidden, loss) in OLD_TRIALS.items():
        (experiment / trial_id).mkdir()
        config = {"optimizer": {"name": "Adam", "cfg": {"lr": lr}}, "model": {"cfg": {"hidden": hidden}}}
        (experiment / trial_id / "params.json").write_text(json.dumps(config))
        (experiment / trial_id / "result.json").write_text(json.dumps({"epochs": 1, "val/loss": loss,
                                                                       "trial_id": trial_id}) + "\n")
    (experiment / "summary.json").write_text("{}")
    return experiment


def new_space(tmp_path: Path, **sweep: object) -> Path:
    """A new space: the learning rate as before, the batch size now varied, the hidden layers fixed."""
    space = tmp_path / "new.py"
    space.write_text(tiny_space(tmp_path / "data", sweep={"metric": "val/loss", "mode": "min", "num_samples": 3,
                                                          "scheduler": "fifo", **sweep},
                                overrides={"optimizer.cfg.lr": Code("tune.loguniform(1e-3, 1e-1)"),
                                           "dataloaders.default.batch_size": Code("tune.choice([16, 32])")}))
    return space


def test_a_dry_run_lists_the_configs_a_sweep_starts_from_and_what_it_leaves_out(tmp_path, capsys):
    experiment = old_experiment(tmp_path)
    assert tune_main([str(new_space(tmp_path)), "--start-from", str(experiment), "--start-top", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    start = out.index(f"  starts from the 2 best trials of {experiment}:")
    assert out[start + 1:start + 4] == ["    old_00001 (0.4000): optimizer.cfg.lr=0.005",
                                        "    old_00002 (0.6000): optimizer.cfg.lr=0.05",
                                        "    not in this space (left out): model.cfg.hidden"]


def test_optuna_first_draws_the_configs_a_sweep_starts_from(tmp_path):
    from torchmate_ray.tune.search.space import load_search_space
    from torchmate_ray.tune.sweep.run import build_searcher

    experiment = old_experiment(tmp_path)
    space = load_search_space(new_space(tmp_path, search_alg="optuna", seed=1, start_from=str(experiment)))
    (tmp_path / "exp").mkdir()
    searcher = build_searcher(space, max_concurrent=2, experiment_dir=tmp_path / "exp")
    drawn = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [config["optimizer"]["cfg"]["lr"] for config in drawn[:3]] == [0.005, 0.05, 0.02]
    assert all(config["dataloaders"]["default"]["batch_size"] in (16, 32) for config in drawn)
    assert drawn[3]["optimizer"]["cfg"]["lr"] not in (0.005, 0.05, 0.02)


@pytest.mark.slow
def test_a_sweep_started_from_another_first_trains_its_best_configs(tmp_path):
    experiment = old_experiment(tmp_path)
    results = tmp_path / "results"
    code, out = tune_in_process(new_space(tmp_path), "--start-from", experiment, "--start-top", "2",
                                "--storage-path", results, "--name", "new", "--seed", "4")  # no driver to start
    assert code == 0, out[-3000:]
    configs = [json.loads(path.read_text()) for path in (results / "new").glob("*/params.json")]
    # random search from points draws through Optuna's random sampler: its study says which trial came first
    assert [trial.params["optimizer.cfg.lr"] for trial in study_trials(results / "new")][:2] == [0.005, 0.05]
    lrs = {config["optimizer"]["cfg"]["lr"] for config in configs}
    assert len(configs) == 3 and {0.005, 0.05} < lrs and 0.02 not in lrs
    assert all(config["model"]["cfg"]["hidden"] == [16] for config in configs)  # the new space's, fixed
    assert len({config["dataloaders"]["default"]["batch_size"] for config in configs} - {16, 32}) == 0


def test_random_search_starts_lenet_from_an_optimizer_of_the_old_sweep(tmp_path):
    """lenet.py's optimizer is a choice of specs, each with domains inside: the old winner's optimizer, learning rate
    and weight decay come back whole, and the batch size too."""
    from torchmate_ray.tune.search.space import load_search_space
    from torchmate_ray.tune.sweep.run import build_searcher

    lenet = Path(__file__).resolve().parents[1] / "search_spaces" / "lenet.py"
    experiment = tmp_path / "results" / "old"
    save_invocation(experiment, Invocation(str(lenet), settings={"name": "old",
                                                                 "storage_path": str(experiment.parent)}))
    old = {"optimizer": {"name": "SGD", "cfg": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}},
           "dataloaders": {"default": {"batch_size": 256, "num_workers": 0}, "train": {"batch_size": 64}}}
    (experiment / "old_00000").mkdir()
    (experiment / "old_00000" / "params.json").write_text(json.dumps(old))
    (experiment / "old_00000" / "result.json").write_text(json.dumps({"epochs": 9, "val/accuracy": 0.98}) + "\n")
    (experiment / "summary.json").write_text("{}")
    space = load_search_space(lenet, settings={"start_from": str(experiment), "seed": 2})
    (tmp_path / "exp").mkdir()
    searcher = build_searcher(space, max_concurrent=2, experiment_dir=tmp_path / "exp")
    first, second = searcher.suggest("t0"), searcher.suggest("t1")
    assert first["optimizer"] == old["optimizer"] and first["dataloaders"] == old["dataloaders"]
    assert second["optimizer"] != old["optimizer"] and first["model"] == second["model"] == space.config["model"]
