"""The tests' search-space files, from two templates: conftest's tiny config with some keys set (:func:`tiny_space`),
and a config written out in full (:func:`written_space`). A test says what its sweep needs; the text is made here.

    path.write_text(tiny_space(tmp_path / "data", sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1},
                               overrides={"optimizer.cfg.lr": Code("tune.grid_search([1e-2, 3e-3])")}))

Values become Python source: strings in double quotes, :class:`Code` as it is written (a tune domain, a class the
file defines).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TESTS = str(Path(__file__).parent)


class Code(str):
    """Source text that a space file holds as it is: a tune domain, a class the file defines."""


def source(value: Any) -> str:
    """``value`` as Python source."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{source(key)}: {source(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(source(item) for item in value) + "]"
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    return repr(value)


def tiny_space(root: Path | str | None, overrides: Mapping[str, Any] | None = None,
               sweep: Mapping[str, Any] | None = None, code: str = "", module: str = "conftest",
               tests: str | None = TESTS) -> str:
    """A file whose ``config`` is conftest's TINY_CONFIG with its data under ``root`` (None: as it is) and each key
    path of ``overrides`` (``"optimizer.cfg.lr"``) set to its value, and whose ``sweep`` is ``sweep`` (None: a plain
    config file, no ``sweep`` and no Ray). ``code``: what the file defines first (classes and their imports).
    ``module``: the module TINY_CONFIG comes from, found in ``tests`` (None: beside the file)."""
    lines = ["import copy, sys", *([f"sys.path.insert(0, {tests!r})"] if tests else []),
             f"from {module} import TINY_CONFIG", *(["from ray import tune"] if sweep is not None else [])]
    if code:
        lines.append(code.strip("\n") + "\n")
    lines.append("config = copy.deepcopy(TINY_CONFIG)")
    if root is not None:
        lines.append(f'config["dataset"]["kwargs"]["root"] = {source(root)}')
    for path, value in (overrides or {}).items():
        lines.append("config" + "".join(f"[{source(key)}]" for key in path.split(".")) + f" = {source(value)}")
    if sweep is not None:
        lines.append(f"sweep = {source(sweep)}")
    return "\n".join(lines) + "\n"


WRITTEN = '''
from ray import tune
import torch
from torch import nn

class Exploding(nn.Module):
    """Builds fine, fails in its first forward: a trial that raises."""
    def __init__(self, **cfg):
        super().__init__()
        self.linear = nn.Linear(784, 10)
    def forward(self, x):
        raise RuntimeError("exploding model")
{code}
config = {{
    "learner": {{"name": "SupervisedLearner", "cfg": {{"classification": True}}}},
    "criterion": {{"name": "CrossEntropyLoss"}},
    "model": {{"name": {model},
              "cfg": {{"in_features": 784, "out_features": 10, "hidden": {hidden}}}}},
    "optimizer": {{"name": {optimizer}, "cfg": {{"lr": {lr}}}}},
    "training": {training},
    "seed": 3,
    "dataset": {{"name": "MagicData", "cfg": {{"name": "MNIST", "val_percentage": 0.1}},
                "kwargs": {{"root": {root}, "download": True}},
                "transforms": {{"pre": [{{"name": "ToTensor"}}]}}}},
    "dataloaders": {{"default": {{"batch_size": {batch_size}}}}},
}}
sweep = {sweep}
'''


def written_space(root: Path | str, model: Any = "torchmate_ray.models.MLP",
                  hidden: Any = Code("tune.grid_search([[32], [16]])"), optimizer: Any = Code('tune.choice(["Adam"])'),
                  lr: Any = Code("tune.loguniform(3e-3, 1e-2)"), training: Mapping[str, Any] | None = None,
                  batch_size: int = 64, sweep: Mapping[str, Any] | None = None, code: str = "") -> str:
    """A file that writes its whole config out (an MLP on MNIST, seed 3, its data under ``root``) and defines
    ``Exploding``, a model that raises in its first forward. ``training`` by default: 2 epochs of 8 batches and 4
    validation batches; ``sweep``: ``val/accuracy``, max, 1 sample. ``code``: what the file defines besides."""
    training = {"max_epochs": 2, "limit_train_batches": 8, "limit_val_batches": 4} if training is None else training
    sweep = {"metric": "val/accuracy", "mode": "max", "num_samples": 1} if sweep is None else sweep
    return WRITTEN.format(code=code, model=source(model), hidden=source(hidden), optimizer=source(optimizer),
                          lr=source(lr), training=source(training), root=source(root), batch_size=batch_size,
                          sweep=source(sweep))


# A Lightning callback for the space files that must know which trial trained which epoch where (resume, nodes).
EPOCH_LOG = '''
import time
import lightning.pytorch as pl
import ray

class EpochLog(pl.Callback):
    """Appends '<trial id> <node ip> <epoch>' when an epoch starts, then waits ``pause`` seconds, and
    '<trial id> <node ip> end' when the fit ends. With ``machines``, a trial first waits (2 minutes at most)
    until trials have started epochs on that many machines."""
    def __init__(self, path, pause, machines=1):
        self.path, self.pause, self.machines = path, pause, machines
    def on_train_epoch_start(self, trainer, pl_module):
        self.write(trainer.current_epoch)
        deadline = time.monotonic() + 120
        while self.machines > 1 and len(self.machines_seen()) < self.machines and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(self.pause)
    def machines_seen(self):
        with open(self.path) as handle:
            return {line.split()[1] for line in handle if len(line.split()) == 3}
    def on_train_end(self, trainer, pl_module):
        self.write("end")
    def write(self, what):
        with open(self.path, "a") as handle:
            handle.write(f"{tune.get_context().get_trial_id()} {ray.util.get_node_ip_address()} {what}\\n")
'''


def epoch_log(path: Path, pause: float, name: str = "EpochLog", machines: int = 1) -> dict[str, Any]:
    """The ``training.callbacks`` entry of an :data:`EPOCH_LOG` (or of its subclass ``name``) writing to ``path``;
    ``machines``: its trials wait until trials run on that many machines."""
    return {"name": Code(name), "cfg": {"path": path, "pause": pause, **({"machines": machines} if machines > 1 else {})}}


def read_epoch_log(lines: list[str]) -> list[tuple[str, str, int | str]]:
    """An EpochLog's lines as (trial id, node ip, epoch or "end")."""
    read = []
    for line in lines:
        trial, ip, what = line.split()
        read.append((trial, ip, int(what) if what.isdigit() else what))
    return read


# The sweep that conftest's finished_sweep runs (test_report reads it; test_sweep and test_best too): 6 trials (3 grid
# points x 2 samples; the 2 with hidden [8] raise), 4 epochs, ASHA with rungs at 1, 2 and 4 epochs.
FINISHED_SPACE = dict(
    model=Code('tune.sample_from(lambda config: Exploding if config["model"]["cfg"]["hidden"] == [8] '
               'else "torchmate_ray.models.MLP")'),
    hidden=Code("tune.grid_search([[16], [32], [8]])"), optimizer=Code('tune.choice(["Adam", "SGD"])'),
    lr=Code("tune.loguniform(1e-3, 1e-1)"),
    training={"max_epochs": 4, "limit_train_batches": 4, "limit_val_batches": 2}, batch_size=32,
    sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 2,
           "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 2}}})
