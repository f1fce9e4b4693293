"""Zero-code training of PyTorch Lightning models from a config dict (Ray-free).

Example:
    >>> from torchmate_ray.lightning import configure_all
    >>> trainer, model, data = configure_all(config, {"max_epochs": 5})
    >>> trainer.fit(model, data)
"""

from torchmate_ray.errors import ConfigError
from torchmate_ray.lightning.configure import (
    configure_all,
    configure_data,
    configure_model,
    configure_model_data,
    configure_trainer,
    pre_cli,
)
from torchmate_ray.lightning.datamodule import ConfigurableLightningDataModule
from torchmate_ray.lightning.module import ConfigurableLightningModule
from torchmate_ray.lightning.resolve import list_names

__all__ = [
    "ConfigError",
    "ConfigurableLightningDataModule",
    "ConfigurableLightningModule",
    "configure_all",
    "configure_data",
    "configure_model",
    "configure_model_data",
    "configure_trainer",
    "list_names",
    "pre_cli",
]
