"""Benchmark search space: bench/lenet_grid.py's LeNet5 sweep as 4 trials x 2 epochs under ASHA, for
trials of 2 DDP workers each (see ddp_overhead.py)."""

import copy

from lenet_grid import config as grid_config
from ray import tune

LEARNING_RATES = [1e-3, 3e-3, 1e-2, 3e-2]
EPOCHS = 2

config = copy.deepcopy(grid_config)
config["optimizer"]["cfg"]["lr"] = tune.grid_search(LEARNING_RATES)
config["training"]["max_epochs"] = EPOCHS
config["dataset"].pop("cache")  # the hand-written DDP script it is compared with reads samples

sweep = {"metric": "val/accuracy", "mode": "max", "num_samples": 1,
         "scheduler": {"name": "asha", "cfg": {"grace_period": 1, "reduction_factor": 2}}}
