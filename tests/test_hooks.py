"""Every hook of both configurable classes is called in the seed's order and can be overridden."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from torchmate_ray.lightning import ConfigurableLightningDataModule, ConfigurableLightningModule, configure_all

CALLS: list[str] = []


def record(name):
    def wrap(method):
        def recorded(self, *args):
            CALLS.append(f"{name}({', '.join(a for a in args if isinstance(a, str))})")
            return method(self, *args)
        return recorded
    return wrap


class RecordingModule(ConfigurableLightningModule):
    """The seed README's model example, with every hook overridden and recorded."""

    log_metrics = {"loss": "loss"}

    configure_configuration = record("configure_configuration")(ConfigurableLightningModule.configure_configuration)
    compile_model = record("compile_model")(ConfigurableLightningModule.compile_model)
    configure_optimizers_only = record("configure_optimizers_only")(ConfigurableLightningModule.configure_optimizers_only)
    configure_schedulers = record("configure_schedulers")(ConfigurableLightningModule.configure_schedulers)

    @record("configure_model")
    def configure_model(self):
        return nn.Linear(100, 10)

    @record("configure_criteria")
    def configure_criteria(self):
        return nn.MSELoss()

    @record("shared_step")
    def shared_step(self, batch, batch_idx, phase):
        x, y = batch
        loss = self.criteria(self.get_model()(x), y)
        self.log(self.log_key(phase, "loss"), loss)
        return loss


class RecordingData(ConfigurableLightningDataModule):
    """The seed README's data example (get_dataset overridden), with every hook recorded."""

    configure_configuration = record("configure_configuration")(ConfigurableLightningDataModule.configure_configuration)
    get_common_transform = record("get_common_transform")(ConfigurableLightningDataModule.get_common_transform)
    get_common_target_transform = record("get_common_target_transform")(
        ConfigurableLightningDataModule.get_common_target_transform)
    get_common_batch_transform = record("get_common_batch_transform")(
        ConfigurableLightningDataModule.get_common_batch_transform)
    get_batch_transform = record("get_batch_transform")(ConfigurableLightningDataModule.get_batch_transform)
    get_transform = record("get_transform")(ConfigurableLightningDataModule.get_transform)
    get_target_transform = record("get_target_transform")(ConfigurableLightningDataModule.get_target_transform)
    get_dataloader_kwargs = record("get_dataloader_kwargs")(ConfigurableLightningDataModule.get_dataloader_kwargs)
    get_transformed_dataset = record("get_transformed_dataset")(ConfigurableLightningDataModule.get_transformed_dataset)
    get_dataloader = record("get_dataloader")(ConfigurableLightningDataModule.get_dataloader)

    @record("get_dataset")
    def get_dataset(self, phase):
        generator = torch.Generator().manual_seed(len(phase))
        return TensorDataset(torch.randn(16, 100, generator=generator), torch.randn(16, 10, generator=generator))


CONFIG = {
    "learner": {"name": RecordingModule},
    "optimizer": {"name": "SGD", "cfg": {"lr": 0.1}},
    "dataset": {"name": RecordingData, "target_transforms": {"train": []}},
    "dataloaders": {"batch_size": 8},
}

DATA_CONSTRUCTION = ["configure_configuration()", "get_common_transform(pre)", "get_common_transform(post)",
                     "get_common_target_transform(pre)", "get_common_target_transform(post)",
                     "get_batch_transform(pre)", "get_common_batch_transform(pre)",
                     "get_batch_transform(post)", "get_common_batch_transform(post)"]
MODEL_CONSTRUCTION = ["configure_configuration()", "configure_model()", "compile_model()", "configure_criteria()"]


def loader_calls(phase):
    return [f"get_dataloader({phase})", f"get_dataloader_kwargs({phase})", f"get_transformed_dataset({phase})",
            f"get_dataset({phase})", f"get_transform({phase})", f"get_target_transform({phase})"]


def test_hooks_are_called_in_order_and_overrides_take_effect(fast_trainer):
    CALLS.clear()
    trainer, model, data = configure_all(CONFIG, {**fast_trainer, "num_sanity_val_steps": 0})
    assert CALLS == DATA_CONSTRUCTION + MODEL_CONSTRUCTION
    assert isinstance(model.get_model(), nn.Linear) and isinstance(model.criteria, nn.MSELoss)

    CALLS.clear()
    trainer.fit(model, data)
    steps = ["shared_step(train)"] * 2 + ["shared_step(val)"] * 2
    assert CALLS == ["configure_optimizers_only()", "configure_schedulers()"] + loader_calls("train") + \
        loader_calls("val") + steps
    assert set(trainer.callback_metrics) == {"train/loss", "val/loss"}


class Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


def test_get_model_picks_submodules():
    module = ConfigurableLightningModule({"model": {"name": Trunk}, "criterion": {"name": "MSELoss"}})
    trunk = module.get_model()
    assert module.get_model("body") is trunk.body
    assert module.get_model("body", "head") == [trunk.body, trunk.head]
    assert module.get_model(["head"]) == [trunk.head]
    assert list(module.state_dict())[0].startswith("_model.")


def test_log_key_orders_and_separators():
    class Learner(ConfigurableLightningModule):
        log_metrics = {"loss": "loss", "accuracy": "acc"}
        log_order = "metric-phase"
        log_separator = "_"

    module = Learner({"model": {"name": Trunk}, "criterion": {"name": "MSELoss"}})
    assert module.log_key("train", "loss") == "loss_train"
    assert module.log_key("val", "accuracy", "@5") == "acc@5_val"
