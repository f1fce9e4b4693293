"""dataset.cache, warm trials and GPU packing: the same results, faster (the speed is measured in bench/)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, TensorDataset
from torchvision import transforms as T

from torchmate_ray.cli import tune_main
from torchmate_ray.errors import ConfigError
from torchmate_ray.lightning.cache import (CachedSplit, IndexBatches, build_cached_split, flatten_transforms, keep_batch,
                                           split_transforms)
from torchmate_ray.lightning.configure import configure_all, configure_data
from torchmate_ray.lightning.datamodule import cached_loader_kwargs, index_batch_loader
from torchmate_ray.lightning.datasets import MNISTSample
from torchmate_ray.tune.search.space import SweepSettings
from torchmate_ray.tune.sweep.resources import Node, plan_resources

from spaces import Code, tiny_space


def fit_metrics(config, trainer_kwargs):
    trainer, model, data = configure_all(config, trainer_kwargs)
    trainer.fit(model, data)
    return {name: float(value) for name, value in trainer.callback_metrics.items()}, data


AUGMENTED = [{"name": "ToTensor"}, {"name": "Normalize", "cfg": {"mean": [0.13], "std": [0.31]}},
             {"name": "RandomRotation", "cfg": {"degrees": 10}}]


@pytest.mark.parametrize("pre", [None, AUGMENTED], ids=["deterministic", "random-rotation-per-sample"])
@pytest.mark.parametrize("cache", ["memory", "device"])
def test_cached_training_gives_the_same_metrics(tiny_config, fast_trainer, cache, pre):
    if pre:
        tiny_config["dataset"]["transforms"]["pre"] = pre
    tiny_config["training"] = {"max_epochs": 2}
    fast_trainer = {**fast_trainer, "limit_train_batches": 20, "max_epochs": 2}
    expected, _ = fit_metrics(tiny_config, fast_trainer)
    tiny_config["dataset"]["cache"] = cache
    got, data = fit_metrics(tiny_config, fast_trainer)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert set(data.cached_tensors) == {"train", "val"}
    assert data.cached_tensors["train"][0].shape == (3600, 1, 28, 28)  # 90% of the 4,000 train digits


def test_a_cached_batch_equals_the_collated_batch(tmp_path):
    dataset = MNISTSample(str(tmp_path), train=False)
    transform = T.Compose([T.ToTensor(), T.Normalize([0.13], [0.31])])
    plain = [(transform(x), y) for x, y in (dataset[i] for i in range(len(dataset)))]
    cached = build_cached_split(dataset, transform, None, "test")
    torch.manual_seed(0)
    expected = list(DataLoader(plain, batch_size=64, shuffle=True))
    torch.manual_seed(0)
    got = list(DataLoader(cached, batch_size=64, shuffle=True, collate_fn=keep_batch))
    assert len(got) == len(expected) == 16
    for (x, y), (ex, ey) in zip(got, expected):
        assert torch.equal(x, ex) and torch.equal(y, ey)


class Jitter:
    """A user's own transform: not known to be deterministic."""

    def __call__(self, x):
        return x


class Marked(Jitter):
    deterministic = True


@pytest.mark.parametrize("steps, cached", [
    ([T.ToTensor(), T.Normalize([0.1], [0.3])], 2),
    ([T.ToTensor(), T.RandomCrop(24), T.Normalize([0.1], [0.3])], 1),
    ([T.RandomHorizontalFlip(), T.ToTensor()], 0),
    ([T.ToTensor(), Jitter(), T.Normalize([0.1], [0.3])], 1),
    ([T.ToTensor(), Marked(), T.Normalize([0.1], [0.3])], 3),
    ([T.Compose([T.ToTensor(), T.Normalize([0.1], [0.3])]), T.ColorJitter()], 2),
], ids=["all-deterministic", "random-crop", "random-first", "unknown-function", "marked-deterministic", "nested"])
def test_the_cached_head_ends_at_the_first_random_or_unknown_transform(steps, cached):
    head, rest = split_transforms(T.Compose(steps))
    assert len(head) == cached
    assert head + rest == flatten_transforms(T.Compose(steps))


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c["dataset"].update(cache="disk"),
     "dataset.cache: expected one of 'none', 'memory', 'device', got 'disk' (str); 'memory' keeps the transformed "
     "split as tensors, 'device' keeps them on the GPU"),
    (lambda c: c["dataset"].update(cache="memory", transforms={"pre": [{"name": "RandomHorizontalFlip"}]}),
     "dataset.cache: the train split's X is of type Image after its deterministic transforms, not a tensor; add ToTensor to "
     "dataset.transforms.pre, or set dataset.cache to 'none'"),
    (lambda c: c.update(dataloaders={"default": {"batch_size": 8, "collate_fn": list}}) or c["dataset"].update(cache="memory"),
     "dataloaders.train.collate_fn: a cached split makes its batches itself; remove collate_fn, or set dataset.cache "
     "to 'none'"),
], ids=["unknown-mode", "not-tensors", "collate-fn"])
def test_bad_cache_settings_name_the_key(tiny_config, edit, expected):
    edit(tiny_config)
    with pytest.raises(ConfigError) as err:
        data = configure_data(tiny_config)
        data.setup("fit")
        data.train_dataloader()
    assert str(err.value) == expected


@pytest.mark.parametrize("nodes, workers, gpus, at_once", [
    ((Node(16, 1),), 1, 0.125, 8),             # an H100 machine: 8 small trials share the GPU
    ((Node(16, 2),), 1, 0.125, 16),
    ((Node(4, 1),), 1, 0.25, 4),               # as many as its CPUs allow
    ((Node(2, 0),), 1, 0.0, 2),                # no GPU: CPU trials
    ((Node(16, 2),), 2, 1.0, 1),               # DDP workers get whole GPUs
    ((Node(2, 0), Node(16, 1)), 1, 0.125, 8),  # a CPU head and a GPU worker node
], ids=["h100", "two-gpus", "few-cpus", "cpu-only", "ddp", "cpu-head"])
def test_gpus_are_shared_by_default(nodes, workers, gpus, at_once):
    settings = SweepSettings(resources={"workers": workers, "cpus_per_worker": 1, "gpus_per_worker": None})
    plan = plan_resources(settings, nodes, num_trials=50)
    assert (plan.gpus_per_worker, plan.max_concurrent) == (pytest.approx(gpus), at_once)
    assert ("trials sharing one GPU: 8" in plan.describe()) == (gpus == 0.125)


COUNTED_MNIST = '''
import os
from torchmate_ray.lightning.datasets import MNISTSample

class CountedMNIST(MNISTSample):
    """The offline MNIST sample, writing the reading process's id for each sample read."""
    def __init__(self, root, train, log, **kwargs):
        super().__init__(root, train)
        self.log = log
    def __getitem__(self, index):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\\n")
        return super().__getitem__(index)
'''


def counted_space(tmp_path: Path, log: Path, cache: str, overrides: dict | None = None) -> str:
    """A 3-trial grid (two identical configs) over the sample as CountedMNIST reads it, one trial at a time."""
    return tiny_space(None, code=COUNTED_MNIST, overrides={
        "dataset.cfg.name": Code("CountedMNIST"), "dataset.kwargs": {"root": tmp_path / "data", "log": log},
        "dataset.cache": cache, "training": {"max_epochs": 2, "limit_train_batches": 10, "limit_val_batches": 4},
        "optimizer.cfg.lr": Code("tune.grid_search([1e-2, 1e-2, 3e-3])"), **(overrides or {})},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo", "max_concurrent": 1})


def run_sweep(tmp_path: Path, cache: str) -> tuple[list[dict], list[str]]:
    """The last result of each trial of a 3-trial grid (two identical configs), and the pids that read samples."""
    log = tmp_path / f"reads-{cache}.log"
    space = tmp_path / f"space_{cache}.py"
    space.write_text(counted_space(tmp_path, log, cache))
    import ray

    try:
        assert tune_main([str(space), "--storage-path", str(tmp_path / "results"), "--name", cache]) == 0
    finally:
        ray.shutdown()
    results = []
    for trial_dir in sorted(p for p in (tmp_path / "results" / cache).iterdir() if (p / "result.json").is_file()):
        last = json.loads((trial_dir / "result.json").read_text().splitlines()[-1])
        results.append({"lr": last["config"]["optimizer"]["cfg"]["lr"], "pid": last["pid"],
                        "val/accuracy": last["val/accuracy"], "val/loss": last["val/loss"], "epochs": last["epochs"]})
    return results, log.read_text().split()


@pytest.mark.slow
def test_a_cached_sweep_matches_the_uncached_one_and_warm_trials_start_fresh(tmp_path):
    plain, plain_reads = run_sweep(tmp_path, "none")
    cached, cached_reads = run_sweep(tmp_path, "memory")
    assert [r["epochs"] for r in cached] == [2, 2, 2]
    for got, expected in zip(cached, plain):  # same seed, same metrics
        assert got["lr"] == expected["lr"]
        assert got["val/accuracy"] == pytest.approx(expected["val/accuracy"], abs=1e-6)
        assert got["val/loss"] == pytest.approx(expected["val/loss"], rel=1e-5)
    # warm trials: one process ran all three, and the two identical configs gave identical results
    assert len({r["pid"] for r in cached}) == 1
    assert cached[0]["val/loss"] == cached[1]["val/loss"] and cached[0]["lr"] == cached[1]["lr"]
    # the cache was built once, by the driver, from each of the 4,000 + 1,000 digits; the trials read none
    assert set(cached_reads) == {str(os.getpid())} and len(cached_reads) == 5000
    assert len(plain_reads) >= 3 * 2 * (10 + 4) * 32  # without it, each trial reads its batches every epoch


def test_a_sweep_over_data_that_cannot_be_cached_is_refused_before_ray_starts(tmp_path, capsys):
    import ray

    space = tmp_path / "space.py"
    space.write_text(counted_space(tmp_path, tmp_path / "reads.log", "memory",
                                   {"dataset.transforms": {"pre": [{"name": "RandomHorizontalFlip"}]}}))
    assert tune_main([str(space), "--storage-path", str(tmp_path / "results"), "--name", "x"]) == 2
    assert not ray.is_initialized()
    assert capsys.readouterr().err.splitlines() == [
        "torchmate-tune: error: dataset.cache: the train split's X is of type Image after its deterministic transforms, "
        "not a tensor; add ToTensor to dataset.transforms.pre, or set dataset.cache to 'none'"]


@pytest.mark.parametrize("shuffle, drop_last, size, batch", [
    (True, False, 1000, 64), (True, True, 1000, 64), (False, False, 1000, 64), (False, True, 100, 100),
    (True, False, 10, 32),
], ids=["shuffled", "shuffled-drop-last", "sequential", "one-exact-batch", "batch-larger-than-split"])
def test_index_batches_are_the_per_sample_loaders_batches(shuffle, drop_last, size, batch):
    x, y = torch.arange(size * 2.0).view(size, 2), torch.arange(size)
    kwargs = {"batch_size": batch, "shuffle": shuffle, "drop_last": drop_last}
    torch.manual_seed(3)
    expected, expected_next_draw = list(DataLoader(TensorDataset(x, y), **kwargs)), torch.rand(1)
    torch.manual_seed(3)
    loader = index_batch_loader(CachedSplit(x, y), cached_loader_kwargs(kwargs, "train"))
    got, next_draw = list(loader), torch.rand(1)
    assert isinstance(loader.sampler, IndexBatches) and len(loader) == len(expected) == len(got)
    for (gx, gy), (ex, ey) in zip(got, expected):
        assert torch.equal(gx, ex) and torch.equal(gy, ey)
    assert torch.equal(next_draw, expected_next_draw)  # the global generator is left as the plain loader leaves it


@pytest.mark.parametrize("pre, sampler", [(None, IndexBatches), (AUGMENTED, BatchSampler)],
                         ids=["deterministic-by-index-tensor", "random-rotation-per-sample"])
def test_a_cached_split_is_served_by_index_tensors_unless_transforms_run_per_sample(tiny_config, fast_trainer, pre,
                                                                                      sampler):
    if pre:
        tiny_config["dataset"]["transforms"]["pre"] = pre
    tiny_config["dataset"]["cache"] = "memory"
    trainer, model, data = configure_all(tiny_config, fast_trainer)
    trainer.fit(model, data)
    loader = trainer.train_dataloader
    assert isinstance(loader.sampler if sampler is IndexBatches else loader.batch_sampler, sampler)


def test_the_device_cache_follows_the_trainers_root_device(tiny_config, fast_trainer):
    """``cache: device`` puts the split where the trainer's strategy trains: here a CPU named by index, which
    differs from the plain CPU that the cache would fall back to without a trainer."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    tiny_config["dataset"]["cache"] = "device"
    device = torch.device("cpu", 0)
    trainer, model, data = configure_all(tiny_config, {**fast_trainer, "strategy": SingleDeviceStrategy(device)})
    assert data.cache_device() == torch.device("cpu")  # no trainer yet
    trainer.fit(model, data)
    assert trainer.strategy.root_device == device and data.cache_device() == device
    assert trainer.train_dataloader.dataset.device.type == device.type
