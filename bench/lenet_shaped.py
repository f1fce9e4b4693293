"""Benchmark search space: LeNet5 on 60,000 MNIST-shaped images (full-size MNIST, made up offline), the
default sweep's search space, every split cached on the trial's device. Used by gpu_packing.py, expert.py,
main_job.py, tiny_epoch.py and epoch_time.py.

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


# The made-up digits: each class's pattern is two of SHARED_PARTS smooth blobs (parts that several classes
# share) plus a fainter part of its own, shifted by up to SHIFT pixels, its contrast varied, drowned in
# noise (deviation NOISE), and LABEL_NOISE of the labels replaced by random ones. LeNet5 (batch 512, 54,000
# images, StepLR(2, 0.5)) with Adam at 1e-3 reaches 78 % validation accuracy after one epoch and 87 % after
# nine; with SGD at 3e-3 (the space's lowest) 32 % after one and 64 % after three: ASHA has something to rank.
SHARED_PARTS, OWN_PART, SHIFT, AMPLITUDE, NOISE, LABEL_NOISE = 6, 0.5, 3, 27.0, 64.0, 0.04
CONTRASTS = (0.6, 0.8, 1.0, 1.2, 1.4)


class MNISTShaped(Dataset):
    """``SIZE`` made-up 28x28 "digits" (and a sixth as many test digits), served as ``(PIL image, int)`` like
    torchvision's MNIST: the same work per sample, no download. Learnable, not trivially separable: see
    the constants above. Deterministic (fixed seeds), about a second for 60,000."""

    def __init__(self, root, train=True, **kwargs):
        count = SIZE if train else SIZE // 6
        images, targets = make_digits(count, seed=1 if train else 2)
        self.data, self.targets = torch.from_numpy(images), torch.from_numpy(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return Image.fromarray(self.data[index].numpy(), mode="L"), int(self.targets[index])


def smooth_parts(rng, count, side=20, cells=5):
    """``count`` smooth random blobs of ``side`` x ``side`` pixels, each of mean 0 and deviation 1."""
    parts = np.kron(rng.standard_normal((count, cells, cells)), np.ones((side // cells, side // cells)))
    padded = np.pad(parts, ((0, 0), (1, 1), (1, 1)), mode="edge")
    parts = sum(padded[:, 1 + dy:1 + dy + side, 1 + dx:1 + dx + side]
                for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9  # a 3x3 box blur
    parts -= parts.mean(axis=(1, 2), keepdims=True)
    return parts / parts.std(axis=(1, 2), keepdims=True)


def class_canvases():
    """Each class's 20x20 pattern at every shift and contrast, on a 28x28 canvas, as int16 pixel offsets:
    ``[10, (2 SHIFT + 1)^2 shifts x len(CONTRASTS), 28, 28]``."""
    rng = np.random.default_rng(0)
    parts = smooth_parts(rng, SHARED_PARTS + 10)
    shared = [rng.choice(SHARED_PARTS, 2, replace=False) for _ in range(10)]
    patterns = np.stack([parts[a] + parts[b] + OWN_PART * parts[SHARED_PARTS + digit]
                         for digit, (a, b) in enumerate(shared)])
    patterns /= patterns.std(axis=(1, 2), keepdims=True)
    side, margin = 2 * SHIFT + 1, (28 - 20) // 2 - SHIFT
    canvases = np.zeros((10, side, side, len(CONTRASTS), 28, 28), np.int16)
    for dy in range(side):
        for dx in range(side):
            for level, contrast in enumerate(CONTRASTS):
                at = (slice(None), dy, dx, level, slice(margin + dy, margin + dy + 20),
                      slice(margin + dx, margin + dx + 20))
                canvases[at] = np.rint(patterns * AMPLITUDE * contrast)
    return canvases.reshape(10, -1, 28, 28)


def make_digits(count, seed):
    """``count`` made-up digits: uint8 images ``[count, 28, 28]`` and int64 labels, the same for a seed."""
    canvases = class_canvases()
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 10, count)
    images = canvases[targets, rng.integers(0, canvases.shape[1], count)]
    # noise: the sum of two uniform bytes (triangular, deviation 255 / sqrt(6)) scaled to NOISE; integers
    # throughout, which is 3-4 times faster than Gaussian floats
    noise = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).astype(np.int16)
    noise += rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    noise -= 255
    noise *= round(NOISE / (255 / 6 ** 0.5) * 64)
    noise >>= 6
    images += noise
    images += 128
    np.clip(images, 0, 255, out=images)
    relabelled = rng.random(count) < LABEL_NOISE
    targets = np.where(relabelled, rng.integers(0, 10, count), targets)
    return images.astype(np.uint8), targets.astype(np.int64)


config = copy.deepcopy(lenet_config)
config["dataset"]["cfg"]["name"] = MNISTShaped
config["dataset"]["kwargs"] = {"root": "./data"}
config["dataloaders"]["train"]["batch_size"] = 512
sweep = {**lenet_sweep, "num_samples": 8}
