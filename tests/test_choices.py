"""The schedulers and searchers by name: one table, each name built, its settings checked, the search's seed fixing
the configs drawn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torchmate_ray.cli import tune_main
from torchmate_ray.tune.search.space import load_search_space

from spaces import Code, written_space


@pytest.mark.parametrize("name, cls", [("asha", "RecordedASHA"), ("hyperband", "HyperBandScheduler"),
                                       ("median", "MedianStoppingRule"), ("pbt", "PopulationBasedTraining"),
                                       ("fifo", "FIFOScheduler")])
def test_each_scheduler_name(space_file, name, cls):
    from torchmate_ray.tune.sweep.run import build_scheduler

    space = load_search_space(space_file, settings={"scheduler": name})
    scheduler = build_scheduler(space)
    assert type(scheduler).__name__ == cls
    if name in ("asha", "hyperband"):
        assert scheduler._max_t_attr == 2 if name == "hyperband" else scheduler._max_t == 2


def test_scheduler_settings_are_checked(space_file):
    from torchmate_ray.lightning import ConfigError
    from torchmate_ray.tune.sweep.run import build_scheduler

    space = load_search_space(space_file, settings={"scheduler": {"name": "asha", "cfg": {"grace_periode": 2}}})
    with pytest.raises(ConfigError, match=r"^sweep\.scheduler\.cfg\.grace_periode: unexpected argument 'grace_periode' "
                                          r"for RecordedASHA; did you mean 'grace_period'\?$"):
        build_scheduler(space)


def test_each_scheduler_and_searcher_name_is_listed_in_one_table_only():
    """choices.py's tables feed the command line, the check of the settings, the builders and the report: no
    other module of the package spells a name out."""
    import re

    import torchmate_ray
    from torchmate_ray.cli import build_tune_parser
    from torchmate_ray.lightning import ConfigError
    from torchmate_ray.tune.search import choices
    from torchmate_ray.tune.search.space import read_settings

    names = [*choices.SCHEDULERS, *choices.SEARCHERS]
    quoted = re.compile("[\"']({})[\"']".format("|".join(names)))
    package = Path(torchmate_ray.__file__).parent
    spelled = [f"{path.relative_to(package)}: {match.group(0)}" for path in sorted(package.rglob("*.py"))
               if path.name != "choices.py" for match in quoted.finditer(path.read_text())]
    assert spelled == []
    flags = {action.dest: action.choices for action in build_tune_parser()._actions}
    assert flags["scheduler"] == list(choices.SCHEDULERS) and flags["search_alg"] == list(choices.SEARCHERS)
    assert choices.DEFAULT_SCHEDULER in choices.SCHEDULERS and choices.DEFAULT_SEARCHER in choices.SEARCHERS
    with pytest.raises(ConfigError) as caught:
        read_settings({"scheduler": "ashaa"})
    assert str(caught.value) == ("sweep.scheduler: unknown choice 'ashaa' (str); did you mean 'asha'?; use one of "
                                 f"{', '.join(choices.SCHEDULERS)}")


@pytest.mark.parametrize("setting", [["asha"], {"cfg": {}}], ids=["a-list", "no-name"])
def test_a_scheduler_that_is_no_name_is_refused_in_one_line(setting):
    from torchmate_ray.lightning import ConfigError
    from torchmate_ray.tune.search.space import read_settings

    with pytest.raises(ConfigError, match=r"^sweep\.scheduler: unknown choice .*; use one of asha, hyperband"):
        read_settings({"scheduler": setting})


def test_the_command_line_reads_the_tables_without_importing_ray():
    code = ("import sys; from torchmate_ray.cli import build_tune_parser; build_tune_parser(); "
            "print(sorted(m for m in ('ray', 'lightning', 'torch', 'optuna') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.stdout.split() == ["[]"], result.stderr[-2000:]


def _drawn_configs(searcher, config, count=3):
    searcher.add_configurations({"e": {"run": lambda config: None, "config": config, "num_samples": count}})
    return [searcher.next_trial().config for _ in range(count)]


@pytest.mark.parametrize("seeds, same", [((7, 7), True), ((7, 8), False)], ids=["same-seed", "other-seed"])
def test_random_search_with_a_random_state_draws_the_same_configs(space_file, seeds, same):
    from torchmate_ray.tune.sweep.run import build_searcher

    drawn = []
    for seed in seeds:
        space = load_search_space(space_file, settings={"search_alg": {"name": "random", "cfg": {"random_state": seed}}})
        searcher = build_searcher(space, max_concurrent=3)
        assert searcher.max_concurrent == 3  # random search takes the sweep's concurrency itself
        drawn.append(_drawn_configs(searcher, space.config))
    assert (drawn[0] == drawn[1]) == same


def test_random_search_settings_are_checked(space_file):
    from torchmate_ray.lightning import ConfigError
    from torchmate_ray.tune.sweep.run import build_searcher

    space = load_search_space(space_file, settings={"search_alg": {"name": "random", "cfg": {"random_sate": 1}}})
    with pytest.raises(ConfigError, match=r"^sweep\.search_alg\.cfg\.random_sate: unexpected argument 'random_sate' "
                                          r"for BasicVariantGenerator; did you mean 'random_state'\?$"):
        build_searcher(space)

# --- reproducible search: sweep.seed / --seed -----------------------------------------------------------------
def _optuna_draws(searcher, space, count=3):
    searcher.set_search_properties(space.settings.metric, space.settings.mode, space.config)
    return [searcher.suggest(f"t{i}") for i in range(count)]


@pytest.mark.parametrize("search", ["random", "optuna"])
@pytest.mark.parametrize("seeds, same", [((7, 7), True), ((7, 8), False)], ids=["same-seed", "other-seed"])
def test_the_search_seed_fixes_the_configs_drawn(tmp_path, search, seeds, same):
    """Dry draws through the real searcher, as the sweep builds it: the same --seed, the same configs."""
    from torchmate_ray.tune.sweep.run import build_searcher

    path = tmp_path / "space.py"
    path.write_text(written_space(tmp_path / "data", hidden=[16], batch_size=Code("tune.choice([32, 64, 128])"),
                                  optimizer=Code('tune.choice(["Adam", "SGD"])')))
    drawn = []
    for seed in seeds:
        space = load_search_space(path, settings={"search_alg": search, "seed": seed})
        searcher = build_searcher(space, max_concurrent=3)
        drawn.append(_optuna_draws(searcher, space) if search == "optuna" else _drawn_configs(searcher, space.config))
    assert (drawn[0] == drawn[1]) == same


def test_the_seed_is_shown_as_the_searchers_argument(space_file, capsys):
    assert tune_main([str(space_file), "--dry-run", "--seed", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  search_alg: random (BasicVariantGenerator: random_state=7)" in lines and "  seed: 7" in lines
