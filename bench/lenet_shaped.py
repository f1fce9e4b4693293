"""Benchmark search space: LeNet5 on 60,000 MNIST-shaped images (full-size MNIST, made up offline), the
default sweep's search space, every split cached on the trial's device. Used by gpu_packing.py and
epoch_time.py.

    torchmate-tune bench/lenet_shaped.py --num-samples 50     # the 50-trial ASHA sweep, on a GPU machine
"""

import copy
import os
import sys

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "search_spaces"))
from lenet import config as lenet_config  # noqa: E402
from lenet import sweep as lenet_sweep  # noqa: E402

SIZE = int(os.environ.get("MNIST_SHAPED_SIZE", 60_000))


class MNISTShaped(Dataset):
    """``SIZE`` made-up 28x28 "digits" (and a sixth as many test digits), served as ``(PIL image, int)`` like
    torchvision's MNIST: the same work per sample, no download. Each is its class's fixed pattern half
    drowned in noise, so there is something to learn."""

    def __init__(self, root, train=True, **kwargs):
        patterns = np.random.default_rng(0).integers(0, 256, (10, 28, 28))
        rng = np.random.default_rng(1 if train else 2)
        count = SIZE if train else SIZE // 6
        targets = rng.integers(0, 10, count)
        noise = rng.integers(0, 256, (count, 28, 28))
        self.data = torch.from_numpy(((patterns[targets] + noise) // 2).astype(np.uint8))
        self.targets = torch.from_numpy(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return Image.fromarray(self.data[index].numpy(), mode="L"), int(self.targets[index])


config = copy.deepcopy(lenet_config)
config["dataset"]["cfg"]["name"] = MNISTShaped
config["dataset"]["kwargs"] = {"root": "./data"}
config["dataloaders"]["train"]["batch_size"] = 512
sweep = {**lenet_sweep, "num_samples": 8}
