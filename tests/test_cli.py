"""torchmate-train: config files, --set overrides, bad input as one line and exit 2, a real run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from torchmate_ray.cli import train_main
from torchmate_ray.lightning import ConfigError
from torchmate_ray.lightning.files import apply_overrides

from spaces import tiny_space


@pytest.fixture
def config_file(tmp_path):
    """A config file in tmp_path that imports its neighbour (as search-space files may)."""
    shutil.copy(Path(__file__).parent / "conftest.py", tmp_path / "conftest_copy.py")
    path = tmp_path / "tiny.py"
    path.write_text(tiny_space(tmp_path / "data", module="conftest_copy", tests=None))
    return path


@pytest.mark.slow
def test_torchmate_train_runs_fit_and_test(config_file, tmp_path):
    exe = Path(sys.executable).parent / "torchmate-train"
    result = subprocess.run([str(exe), str(config_file), "--set", "training.max_epochs=1", "--set",
                             "training.limit_train_batches=5", "--root-dir", str(tmp_path / "logs")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    metrics = dict(line.split() for line in lines[lines.index("final metrics:") + 1:])
    assert set(metrics) == {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "test/loss", "test/accuracy"}
    assert 0.0 <= float(metrics["test/accuracy"]) <= 1.0
    assert (tmp_path / "logs" / "lightning_logs").is_dir()


BAD_INPUT = [
    ("missing-file", "nope.py", [], "torchmate-train: error: {dir}/nope.py: no such file; check the path"),
    ("syntax-error", "config = {'a': }\n", [], "torchmate-train: error: {dir}/bad.py:1: syntax error: expression expected after dictionary key and ':'; fix the file"),
    ("file-raises", "x = 1\nconfig = undefined_name\n", [],
     "torchmate-train: error: {dir}/bad.py:2: running the file failed: NameError: name 'undefined_name' is not "
     "defined; fix the file"),
    ("no-config", "cfg = {}\n", [], "torchmate-train: error: {dir}/bad.py: defines no 'config'; add config = {{...}} "
     "(a dict or DotMap)"),
    ("config-not-dict", "config = [1]\n", [], "torchmate-train: error: {dir}/bad.py: config: expected a dict or DotMap, "
     "got [1] (list); define config = {{...}}"),
    ("bad-set", "GOOD", ["--set", "optimizer.cfg.lr"], "torchmate-train: error: --set: 'optimizer.cfg.lr' is not "
     "KEY.PATH=VALUE; write e.g. --set optimizer.cfg.lr=0.01"),
    ("bad-value-via-set", "GOOD", ["--set", "optimizer.name=Adamm"], "torchmate-train: error: optimizer.name: unknown "
     "optimizer 'Adamm' in torch.optim; did you mean 'Adam'?"),
    ("search-space-file", "from ray import tune\nfrom conftest_copy import TINY_CONFIG\nconfig = dict(TINY_CONFIG, "
     "optimizer={'name': 'Adam', 'cfg': {'lr': tune.loguniform(1e-4, 1e-1)}})\n", [],
     "torchmate-train: error: optimizer.cfg.lr: is a search-space domain (Float), not a value; run the file "
     "with torchmate-tune, or give a value (e.g. --set optimizer.cfg.lr=...)"),
]


@pytest.mark.parametrize("content, extra, expected", [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(config_file, tmp_path, monkeypatch, capsys, content, extra, expected):
    monkeypatch.chdir(tmp_path)
    if content == "GOOD":
        path = config_file
    elif content.endswith(".py"):
        path = tmp_path / content
    else:
        path = tmp_path / "bad.py"
        path.write_text(content)
    code = train_main([str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [expected.format(dir=tmp_path)]
    assert not (tmp_path / "lightning_logs").exists()  # nothing started


OVERRIDES = [
    ("float", ["optimizer.cfg.lr=1e-3"], ("optimizer", "cfg", "lr"), 0.001),
    ("string", ["optimizer.name=SGD"], ("optimizer", "name"), "SGD"),
    ("list", ["learner.cfg.topk=[1, 5]"], ("learner", "cfg", "topk"), [1, 5]),
    ("bool", ["learner.cfg.classification=False"], ("learner", "cfg", "classification"), False),
    ("new-key", ["training.max_time=None"], ("training", "max_time"), None),
    ("list-index", ["dataset.transforms.pre.0.name=PILToTensor"], ("dataset", "transforms", "pre", 0, "name"),
     "PILToTensor"),
    ("last-wins", ["seed=1", "seed=2"], ("seed",), 2),
]


@pytest.mark.parametrize("items, path, value", [o[1:] for o in OVERRIDES], ids=[o[0] for o in OVERRIDES])
def test_apply_overrides(items, path, value):
    from conftest import TINY_CONFIG

    result = apply_overrides(TINY_CONFIG, items)
    node = result
    for key in path:
        node = node[key]
    assert node == value
    assert TINY_CONFIG["optimizer"]["cfg"]["lr"] == 0.01  # the original is untouched


def test_override_of_a_missing_list_index_is_refused():
    from conftest import TINY_CONFIG

    with pytest.raises(ConfigError) as caught:
        apply_overrides(TINY_CONFIG, ["dataset.transforms.pre.3.name=ToTensor"])
    assert str(caught.value) == "dataset.transforms.pre.3: is not an index of a list of 1; use 0..0"
