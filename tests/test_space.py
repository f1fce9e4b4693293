"""The search space: its file read, its domains found and sampled, every bad setting refused in one line before Ray
starts (in a dry run and in a real one), the metrics its config names, its seed kept by the experiment."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
from ray import tune

from torchmate_ray.cli import tune_main
from torchmate_ray.tune.search.domains import describe_domain, find_domains
from torchmate_ray.tune.search.space import sample_configs

from spaces import written_space


NESTED = {
    "a": tune.uniform(0, 1),
    "b": {"c": [1, {"d": tune.randint(1, 5)}, tune.choice(["x", "y"])]},
    "e": tune.choice([{"name": "Adam", "cfg": {"lr": tune.loguniform(1e-4, 1e-1)}}, {"name": "SGD"}]),
    "f": tune.grid_search([1, 2]),
    "g": tune.sample_from(lambda config: 3),
    "h": tune.qrandint(8, 64, 8),
}
EXPECTED_DOMAINS = [
    ("a", "uniform(0, 1)"),
    ("b.c.1.d", "randint(1, 5)"),
    ("b.c.2", "choice(['x', 'y'])"),
    ("e", "choice(['{name: Adam, ...}', '{name: SGD, ...}'])"),
    ("e.<option 0>.cfg.lr", "loguniform(0.0001, 0.1)"),
    ("f", "grid_search([1, 2])"),
    ("g", "sample_from(<lambda>)"),
    ("h", "qrandint(8, 64, 8)"),
]


def test_domains_are_found_at_every_depth_including_lists_and_choices():
    assert [(found.path, describe_domain(found.domain)) for found in find_domains(NESTED)] == EXPECTED_DOMAINS


def test_each_domain_knows_its_place_in_a_sampled_config():
    places = [(found.trial_path, found.in_choice, found.in_list) for found in find_domains(NESTED)]
    assert places == [("a", False, False), ("b.c.1.d", False, True), ("b.c.2", False, True), ("e", False, False),
                      ("e.cfg.lr", True, False), ("f", False, False), ("g", False, False), ("h", False, False)]


def test_samples_cover_every_choice_option():
    samples = sample_configs(NESTED)
    assert {s["e"]["name"] for s in samples} == {"Adam", "SGD"}
    assert {s["b"]["c"][2] for s in samples} == {"x", "y"} and {s["f"] for s in samples} == {1, 2}
    assert all(1e-4 <= s["e"]["cfg"]["lr"] <= 1e-1 for s in samples if s["e"]["name"] == "Adam")


def test_dry_run_prints_domains_settings_and_plan(space_file, capsys):
    assert tune_main([str(space_file), "--dry-run", "--num-samples", "7", "--cpus-per-worker", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "  model.cfg.hidden  grid_search([[32], [16]])" in out.splitlines()
    assert "  optimizer.cfg.lr  loguniform(0.003, 0.01)" in out.splitlines()
    assert "  num_samples: 7" in out.splitlines() and "  metric: val/accuracy" in out.splitlines()
    assert "  each trial: 0.5 CPU, 0 GPU" in out.splitlines()
    assert "  scheduler: asha (RecordedASHA: max_t=2, grace_period=1, reduction_factor=3)" in out.splitlines()
    assert "  search_alg: random (BasicVariantGenerator)" in out.splitlines()
    assert not ray.is_initialized()


LOGGED = "test/accuracy, test/loss, train/accuracy, train/loss, val/accuracy, val/loss"
BAD_SPACES = [
    ("unknown-name-deep-in-a-branch", ("optimizer", '{"name": tune.choice(["Adam"])', '{"name": tune.choice(["Adam", "Adamm"])'),
     [], "optimizer.name: unknown optimizer 'Adamm' in torch.optim; did you mean 'Adam'?"),
    ("metric-not-logged", None, ["--metric", "val/acc"],
     "sweep.metric: 'val/acc' is not logged by SupervisedLearner (it logs test/accuracy, test/loss, train/accuracy, "
     "train/loss, val/accuracy, val/loss); did you mean 'val/accuracy'?"),
    ("domain-where-a-class-is-required", ("model", '"name": "torchmate_ray.models.MLP"', '"name": tune.uniform(0, 1)'),
     [], "model.name: expected the model's name or class, got 0.6369616873214543 (float); give a name such as "
     "'torchmate_ray.models.LeNet5BNMaxPool' or the class itself"),
    ("syntax-error", ("syntax", "sweep = {", "sweep = {{"), [], "{path}:27: syntax error: '{{' was never closed; fix the file"),
    ("missing-config", ("missing", "config = {", "cfg = {"), [],
     "{path}: defines no 'config'; add config = {{...}} with tune domains at the leaves"),
    ("unknown-sweep-setting", ("setting", '"num_samples": 1', '"num_sample": 1'), [],
     "sweep.num_sample: unknown sweep setting; did you mean 'num_samples'?"),
    ("zero-epochs", None, ["--set", "training.max_epochs=0"],
     "training.max_epochs: a sweep needs a fixed number of epochs, got 0 (int); set training.max_epochs (or --max-epochs)"),
    ("more-cpus-than-any-node", None, ["--cpus-per-worker", "1000"],
     "sweep.resources.cpus_per_worker: a trial needs 1000 CPU(s) but the largest node has {cpus}; lower "
     "cpus_per_worker (--cpus-per-worker)"),
    ("gpus-without-gpus", None, ["--gpus-per-worker", "1"],
     "sweep.resources.gpus_per_worker: a trial needs 1 GPU(s) but the largest node has 0; lower gpus_per_worker "
     "(--gpus-per-worker 0 for CPU) or join a cluster with GPUs"),
    ("storage-uri", None, ["--storage-path", "s3://bucket/sweeps"],
     "sweep.storage_path: expected a directory path, got 's3://bucket/sweeps' (str); mount a bucket (s3://, gs://) "
     "as a shared directory and give its path"),
    ("optuna-with-grid", None, ["--search", "optuna"],
     "model.cfg.hidden: Optuna cannot search grid_search; use --search random, or a tune.choice"),
    ("optuna-with-normal", ("normal", "tune.loguniform(3e-3, 1e-2)", "tune.randn(0.005, 0.001)"),
     ["--search", "optuna", "--set", "model.cfg.hidden=[16]"],
     "optimizer.cfg.lr: Optuna has no distribution for a float with a normal sampler; use --search random, or a "
     "uniform or log-uniform domain"),
    ("scheduler-argument-typo", ("scheduler", '"num_samples": 1', '"num_samples": 1, "scheduler": {"name": "asha", '
                                 '"cfg": {"grace_periode": 2}}'), [],
     "sweep.scheduler.cfg.grace_periode: unexpected argument 'grace_periode' for RecordedASHA; did you mean "
     "'grace_period'?"),
    ("pbt-with-nothing-to-mutate", ("constant", "tune.loguniform(3e-3, 1e-2)", "3e-3"),
     ["--scheduler", "pbt", "--set", "optimizer.name='Adam'"],
     "sweep.scheduler: PBT needs continuous or choice domains at dict key paths to mutate; use another scheduler"),
    ("early-stopping-monitor-not-logged", None, ["--set", "training.early_stopping={'monitor': 'val/los'}"],
     f"training.early_stopping.monitor: 'val/los' is not logged by SupervisedLearner (it logs {LOGGED}); did you mean "
     f"'val/loss'?"),
    ("plateau-monitor-not-logged", None,
     ["--set", "lr_scheduler={'scheduler': {'name': 'ReduceLROnPlateau'}, 'monitor': 'val/acc'}"],
     f"lr_scheduler.monitor: 'val/acc' is not logged by SupervisedLearner (it logs {LOGGED}); did you mean "
     f"'val/accuracy'?"),
    ("callback-monitor-not-logged", None,
     ["--set", "training.callbacks=[{'name': 'EarlyStopping', 'cfg': {'monitor': 'valid/accuracy'}}]"],
     f"training.callbacks.0.cfg.monitor: 'valid/accuracy' is not logged by SupervisedLearner (it logs {LOGGED}); "
     f"did you mean 'val/accuracy'?"),
    ("ray-scope-as-score", ("score", '"num_samples": 1', '"num_samples": 1, "score": "last-5-avg"'), [],
     "sweep.score: expected 'last', 'best' or 'last-<k>' (the mean of the last k epochs, e.g. 'last-3'), got "
     "'last-5-avg' (str); Ray Tune's scope 'last-5-avg' is 'last-5' here"),
    ("unknown-score", ("score", '"num_samples": 1', '"num_samples": 1, "score": "last-0"'), [],
     "sweep.score: expected 'last', 'best' or 'last-<k>' (the mean of the last k epochs, e.g. 'last-3'), got "
     "'last-0' (str); use one of those"),
    ("negative-seed", None, ["--seed", "-1"], "sweep.seed: expected an int from 0 to 2**32 - 1, got -1 (int); use e.g. "
     "--seed 7"),
    ("two-seeds", ("seeded", '"num_samples": 1', '"num_samples": 1, "search_alg": {"name": "random", "cfg": '
                   '{"random_state": 3}}'), ["--seed", "4"],
     "sweep.seed: 4 and sweep.search_alg.cfg.random_state = 3 both seed the search; keep one of them"),
    ("time-budget-not-a-duration", None, ["--time-budget", "10x"],
     "sweep.time_budget: expected a duration > 0 such as 90s, 30m or 1.5h, got '10x' (str); fix it"),
    ("zero-epoch-budget", None, ["--epoch-budget", "0"],
     "sweep.epoch_budget: expected an int >= 1 (epochs of all trials together), got 0 (int); fix it"),
    ("gpu-hours-without-gpus", None, ["--gpu-hours", "1"],
     "sweep.gpu_hours: the plan gives the trials no GPU, so they spend no GPU-hours; use --time-budget or "
     "--epoch-budget, or give them GPUs (--gpus-per-worker)"),
    ("start-from-no-experiment", None, ["--start-from", "/no/such/sweep"],
     "--start-from: /no/such/sweep: no such directory; give an experiment directory (<storage_path>/<name>, as "
     "torchmate-tune printed it)"),
    ("zero-start-top", None, ["--start-top", "0"], "sweep.start_top: expected an int >= 1, got 0 (int); e.g. 3"),
    ("zero-confirm-top", None, ["--confirm-top", "0"], "sweep.confirm_top: expected an int >= 1, got 0 (int); e.g. 3"),
    ("zero-seeds", None, ["--confirm-top", "2", "--seeds", "0"],
     "sweep.confirm_seeds: expected an int >= 1, got 0 (int); e.g. 3"),
    ("address-nothing-listens", None, ["--address", "127.0.0.1:1"],
     "--address: nothing answers at 127.0.0.1:1 (Connection refused); start the cluster (`ray start --head "
     "--port=...`, `ray up`) or give its head's HOST:PORT (or auto on its head)"),
    ("seeds-without-confirm-top", None, ["--seeds", "5"], "sweep.confirm_seeds: the seeds of a confirmation, but "
     "nothing is confirmed; add --confirm-top K (sweep['confirm_top']) or leave --seeds out"),
]


# Every refusal of the sweep settings (sweep.*, and the flags that set them) runs both ways. The config's
# refusals come from validate_space, the same step in both: of those, two also run for real, these only with
# --dry-run.
DRY_RUN_ONLY = {"unknown-name-deep-in-a-branch", "domain-where-a-class-is-required", "missing-config", "zero-epochs",
                "plateau-monitor-not-logged", "callback-monitor-not-logged",
                "address-nothing-listens"}  # a real run here finds the class's Ray running, and joins it
REAL_RUNS = [b for b in BAD_SPACES if b[0] not in DRY_RUN_ONLY]


def refused_line(space_file: Path, edit: tuple[str, str, str] | None, expected: str) -> str:
    """The refusal's one line, once ``edit`` (key, old, new) is made to the space file."""
    import os

    if edit:
        text = space_file.read_text()
        assert edit[1] in text
        space_file.write_text(text.replace(edit[1], edit[2], 1))
    return "torchmate-tune: error: " + expected.format(path=space_file, cpus=f"{os.cpu_count():g}")


@pytest.mark.parametrize("edit, flags, expected", [b[1:] for b in BAD_SPACES], ids=[b[0] for b in BAD_SPACES])
def test_bad_space_is_refused_by_a_dry_run_before_ray_starts(space_file, capsys, edit, flags, expected):
    """One line, exit 2, and no Ray ever started."""
    line = refused_line(space_file, edit, expected)
    assert tune_main([str(space_file), *flags, "--dry-run"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    assert not ray.is_initialized()


class TestRealRuns:
    """The same refusals, for real: the same line, exit 2. The class's runs share one Ray, which each command finds
    running and leaves running; test_startup refuses sweeps whose early Ray is killed again, at each step where a
    refusal can come, and bench/refusals.py times how soon a refused command ends after its line."""

    @pytest.fixture(scope="class", autouse=True)
    def running_ray(self):
        from torchmate_ray.tune.sweep.local_ray import LocalRay, connect_ray

        connect_ray(None, LocalRay.for_trials(1, 1))
        yield
        ray.shutdown()

    @pytest.mark.parametrize("edit, flags, expected", [b[1:] for b in REAL_RUNS], ids=[b[0] for b in REAL_RUNS])
    def test_bad_space_is_refused_by_a_real_run_as_by_a_dry_run(self, space_file, capsys, edit, flags, expected):
        line = refused_line(space_file, edit, expected)
        code = tune_main([str(space_file), *flags])
        assert code == 2 and capsys.readouterr().err.splitlines() == [line]
        assert ray.is_initialized()  # the Ray it found: not its own to shut down

    @pytest.mark.parametrize("storage, why", [("/proc/forbidden", "/proc: No such file or directory"),
                                              ("{file}/results", "{file}: not a directory")], ids=["proc", "file"])
    def test_storage_path_that_cannot_be_made_is_refused(self, space_file, tmp_path, capsys, storage, why):
        file = tmp_path / "a-file"
        file.write_text("")
        storage, why = storage.format(file=file), why.format(file=file)
        assert tune_main([str(space_file), "--storage-path", storage, "--name", "exp"]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"torchmate-tune: error: --storage-path: cannot make {storage}/exp ({why}); give a directory you can "
            f"write (every node's, on a cluster)"]
        assert not list(tmp_path.glob("*/.torchmate-probe-*")) and not Path(storage).exists()

# --- every metric the config names (monitors.py) -----------------------------------------------------------
@pytest.mark.parametrize("config, monitors", [
    ({"training": {"early_stopping": {"monitor": "val/loss", "patience": 2}}},
     [("training.early_stopping.monitor", "val/loss")]),
    ({"training": {"callbacks": [{"name": "EarlyStopping", "cfg": {"monitor": "val/accuracy"}}, {"name": "Timer"}]}},
     [("training.callbacks.0.cfg.monitor", "val/accuracy")]),
    ({"lr_scheduler": [{"scheduler": {"name": "StepLR", "cfg": {"step_size": 1}}, "monitor": "ignored"},
                       {"scheduler": {"name": "ReduceLROnPlateau"}, "monitor": "val/accuracy"},
                       {"scheduler": {"name": "ReduceLROnPlateau"}}]},
     [("lr_scheduler.1.monitor", "val/accuracy")]),  # only a plateau scheduler watches; without one: the learner's
    ({"lr_scheduler": {"scheduler": {"name": "StepLR"}, "reduce_on_plateau": True, "monitor": "val/loss"}},
     [("lr_scheduler.monitor", "val/loss")]),
    ({"training": {"max_epochs": 2}}, []),
], ids=["early-stopping", "callback-spec", "plateau-of-a-list", "reduce-on-plateau-flag", "none"])
def test_the_metrics_a_config_names(config, monitors):
    from torchmate_ray.tune.search.monitors import list_monitors

    assert [(m.key_path, m.name) for m in list_monitors(config)] == monitors


def test_a_callback_object_is_checked_by_its_monitor():
    from lightning.pytorch.callbacks import EarlyStopping

    from torchmate_ray.tune.search.monitors import list_monitors

    found = list_monitors({"training": {"callbacks": [EarlyStopping(monitor="val/loss")]}})
    assert [(m.key_path, m.name) for m in found] == [("training.callbacks.0.monitor", "val/loss")]


def test_metrics_the_learner_logs_pass(space_file, capsys):
    assert tune_main([str(space_file), "--dry-run", "--set", "training.early_stopping={'monitor': 'val/loss'}",
                      "--set", "lr_scheduler={'scheduler': {'name': 'ReduceLROnPlateau'}, 'monitor': 'val/accuracy'}"]) == 0

def test_the_saved_invocation_keeps_the_seed_and_a_resume_refuses_another(tmp_path):
    """The file's sweep.seed is recorded (a resume draws the same even if the file changes); --seed 8 is refused."""
    from torchmate_ray.lightning import ConfigError
    from torchmate_ray.tune.experiment.directory import Invocation, open_experiment, read_invocation, resolve_invocation

    path = tmp_path / "space.py"
    path.write_text(written_space(tmp_path / "data", sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1,
                                                            "seed": 5, "storage_path": str(tmp_path / "results")}))
    invocation = Invocation(str(path), settings={"name": "exp"})
    experiment = open_experiment(invocation.load_space(), invocation, resume=False)
    experiment.accept({"workers": 1})
    assert read_invocation(experiment.directory).settings == {"name": "exp", "seed": 5}
    (experiment.directory / "tuner.pkl").write_text("")  # what makes it an experiment to Tune (Tuner.can_restore)
    with pytest.raises(ConfigError) as caught:
        resolve_invocation(Invocation(str(experiment.directory), settings={"seed": 8}), resume=True)
    assert str(caught.value).startswith(f"--seed: the experiment in {experiment.directory} ran with 5; ")
    resumed = resolve_invocation(Invocation(str(experiment.directory), settings={"seed": 5}), resume=True)
    assert resumed.load_space().settings.seed == 5
