"""Benchmark search space: search_spaces/lenet.py with its random search seeded, so that every run (and
bench/expert.py, which samples this very config with the same seed) trains the same 50 configs.

    torchmate-tune bench/lenet_seeded.py --num-samples 50
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "search_spaces"))
from lenet import config  # noqa: E402, F401
from lenet import sweep as lenet_sweep  # noqa: E402

SEARCH_SEED = 2026
sweep = {**lenet_sweep, "seed": SEARCH_SEED}  # the search's seed: random search's random_state, as expert.py's
