"""Tune's settings that only its environment variables set, read as ``Tuner.fit`` builds its controller: set for
the sweep's run (unless the user set them) and taken back after it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# Tune holds at most this many trials waiting for resources, each a pending placement group; those are what makes
# Ray's autoscaler add nodes. Tune's default is 1 with any search algorithm but its own random search
# (tune_controller._get_max_pending_trials), and the cluster would grow one node at a time.
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"
# How often Tune snapshots the experiment's state, what a resume goes on from: every 2 s (a resume repeats at most
# ~2 s of the trials' work) while that costs the driver little. A snapshot holds every trial: measured on 2 CPUs,
# 0.2 ms a trial (1.5 s of the driver's 12 s over a 300-trial sweep), so past 500 trials a 2 s period would take
# more than 5% of the driver, and at 10,000 trials most of it. There Tune's own adaptive period takes over ("auto":
# at least 10 s, and 19 times what the last snapshot took).
SNAPSHOT_ENV, SNAPSHOT_S, SNAPSHOT_TRIALS = "TUNE_GLOBAL_CHECKPOINT_S", "2", 500


def pending_trials(count: int) -> contextlib.AbstractContextManager[None]:
    """Let Tune hold ``count`` trials waiting for resources (the planned concurrency), whatever the searcher."""
    return tune_setting(PENDING_TRIALS_ENV, str(count))


def state_snapshots(num_trials: int) -> contextlib.AbstractContextManager[None]:
    """Tune's experiment state saved every ``SNAPSHOT_S`` seconds for a sweep of up to ``SNAPSHOT_TRIALS`` trials, at
    Tune's adaptive period for a larger one."""
    return tune_setting(SNAPSHOT_ENV, SNAPSHOT_S if num_trials <= SNAPSHOT_TRIALS else "auto")


@contextlib.contextmanager
def tune_setting(name: str, value: str) -> Iterator[None]:
    """The environment variable ``name`` set to ``value`` in the block, unless the user set it."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
