"""Fast steps: a fit that needs nothing of Lightning's automatic optimization loop but the optimizer step takes
its steps through manual optimization, with the same updates, metrics and ``global_step``; any other fit keeps
the automatic loop."""

from __future__ import annotations

import copy
import pickle

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from torchmate_ray.lightning.configure import configure_all, configure_model
from torchmate_ray.lightning.lm.supervised import SupervisedLearner


class RecordOptimization(pl.Callback):
    """Records ``automatic_optimization`` at every training batch."""

    def __init__(self):
        self.automatic: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.automatic.append(pl_module.automatic_optimization)


class ZeroGradWatcher(pl.Callback):
    """Overrides a hook that only the automatic loop calls (and does nothing in it)."""

    def on_before_zero_grad(self, trainer, pl_module, optimizer):
        pass


class OwnOptimizerStep(SupervisedLearner):
    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)


def fit(config, trainer_kwargs, callbacks=()):
    record = RecordOptimization()
    trainer, model, data = configure_all(config, {**trainer_kwargs, "callbacks": [record, *callbacks]})
    trainer.fit(model, data)
    return trainer, model, record.automatic


def test_a_plain_fit_takes_fast_steps_with_the_automatic_loops_results(tiny_config, fast_trainer):
    """Same seed, same batches: the fast steps end with the weights, metrics and global_step of the automatic
    loop (forced here by a callback that only that loop calls)."""
    fast_trainer = {**fast_trainer, "max_epochs": 2}
    fast, fast_model, fast_automatic = fit(tiny_config, fast_trainer)
    slow, slow_model, slow_automatic = fit(tiny_config, fast_trainer, [ZeroGradWatcher()])
    assert fast_automatic == [False] * 4 and slow_automatic == [True] * 4
    assert fast.global_step == slow.global_step == 4
    assert {k: float(v) for k, v in fast.callback_metrics.items()} == \
        {k: float(v) for k, v in slow.callback_metrics.items()}
    slow_state = slow_model.state_dict()
    assert all(torch.equal(value, slow_state[name]) for name, value in fast_model.state_dict().items())


def test_fast_steps_keep_lightnings_precision_handling(tiny_config, fast_trainer):
    """bf16 autocast (on the CPU) through manual_backward and LightningOptimizer.step: the automatic loop's results."""
    fast_trainer = {**fast_trainer, "precision": "bf16-mixed"}
    fast, fast_model, fast_automatic = fit(tiny_config, fast_trainer)
    slow, slow_model, slow_automatic = fit(tiny_config, fast_trainer, [ZeroGradWatcher()])
    assert fast_automatic == [False] * 2 and slow_automatic == [True] * 2
    slow_state = slow_model.state_dict()
    assert all(torch.equal(value, slow_state[name]) for name, value in fast_model.state_dict().items())


class CountBackwards(pl.Callback):
    def __init__(self):
        self.calls = 0

    def on_after_backward(self, trainer, pl_module):
        self.calls += 1


def test_fast_steps_call_backward_hooks_where_they_are_overridden(tiny_config, fast_trainer):
    """A fast step calls loss.backward() itself only where nothing hooks into backward; else manual_backward."""
    counter = CountBackwards()
    trainer, model, automatic = fit(tiny_config, fast_trainer, [counter])
    assert automatic == [False] * 2 and counter.calls == 2


@pytest.mark.parametrize("change", [
    {"training": {"gradient_clip_val": 1.0}},
    {"training": {"accumulate_grad_batches": 2}},
    {"lr_scheduler": {"scheduler": {"name": "StepLR", "cfg": {"step_size": 1}}, "interval": "step"}},
    {"training": {"enable_checkpointing": True}},
    {"callbacks": [ZeroGradWatcher()]},
    {"learner": {"name": OwnOptimizerStep, "cfg": {"classification": True}}},
], ids=["gradient-clipping", "accumulation", "lr-scheduler", "model-checkpoint", "callback-hook", "module-hook"])
def test_what_the_fast_steps_do_not_cover_keeps_the_automatic_loop(tiny_config, fast_trainer, change):
    change = copy.deepcopy(change)
    callbacks = change.pop("callbacks", [])
    training = change.pop("training", {})
    tiny_config.update(change)
    trainer, model, automatic = fit(tiny_config, {**fast_trainer, **training}, callbacks)
    assert automatic == [True] * 2
    assert trainer.global_step == (1 if training.get("accumulate_grad_batches") == 2 else 2)
    if "lr_scheduler" in change:  # stepped by the automatic loop after each step
        assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 * 0.1 ** 2)


def test_the_next_fit_decides_anew(tiny_config, fast_trainer):
    """A module that took fast steps is in automatic optimization for the next Trainer until that fit starts:
    gradient clipping there is not refused as unsupported in manual optimization."""
    trainer, model, data = configure_all(tiny_config, fast_trainer)
    trainer.fit(model, data)
    assert model.takes_fast_steps() and not model.automatic_optimization
    record = RecordOptimization()
    clipping = pl.Trainer(**{**fast_trainer, "gradient_clip_val": 1.0, "callbacks": [record]})
    clipping.fit(model, data)
    assert record.automatic == [True] * 2 and clipping.global_step == 2


def test_a_module_copies_and_pickles_after_fast_steps(tiny_config, fast_trainer):
    trainer, model, data = configure_all(tiny_config, fast_trainer)
    trainer.fit(model, data)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert not copied.takes_fast_steps() and copied.automatic_optimization
        assert all(torch.equal(value, model.state_dict()[name]) for name, value in copied.state_dict().items())


def test_attributes_set_on_a_learner_register_as_on_any_module(tiny_config):
    """Plain values on plain attributes skip nn.Module's checks; parameters, modules and buffers still register."""
    model = configure_model(tiny_config)
    model.note = "plain"
    model.note = None
    assert model.__dict__["note"] is None
    model.note = nn.Linear(2, 2)  # a plain attribute becomes a submodule
    assert "note" in model._modules and "note" not in model.__dict__
    model.weight = nn.Parameter(torch.ones(1))
    model.weight = None  # a parameter slot set to None stays a parameter slot
    assert "weight" in model._parameters and model._parameters["weight"] is None
    model.register_buffer("count", torch.zeros(1))
    model.count = torch.ones(1)
    assert torch.equal(model._buffers["count"], torch.ones(1))
