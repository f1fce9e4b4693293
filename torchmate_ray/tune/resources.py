"""Per-trial resources and concurrency, planned from what the cluster really has.

Ray only queues trials it cannot place; it never says that one can *never* be placed, and a sweep
waiting on such a trial hangs. So the plan is checked node by node before anything starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from torchmate_ray.lightning.errors import ConfigError
from torchmate_ray.tune.space import SweepSettings

EPSILON = 1e-9  # 1 / 0.1 must count as 10 trials per GPU, not 9


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ResourcePlan:
    """What each trial asks Ray for, and how many trials run at once."""

    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int
    nodes: tuple[Node, ...]

    @property
    def bundle(self) -> dict[str, float]:
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}

    def describe(self) -> list[str]:
        cpus, gpus = sum(n.cpus for n in self.nodes), sum(n.gpus for n in self.nodes)
        lines = [f"cluster: {len(self.nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs",
                 f"each trial: {self.cpus_per_trial:g} CPU, {self.gpus_per_trial:g} GPU",
                 f"trials at once: {self.max_concurrent}"]
        if 0 < self.gpus_per_trial < 1:
            lines.append(f"trials sharing one GPU: {int(1 / self.gpus_per_trial + EPSILON)}")
        return lines


def local_nodes() -> tuple[Node, ...]:
    """This machine as a one-node cluster (what a local Ray would start with)."""
    import torch

    return (Node(float(os.cpu_count() or 1), float(torch.cuda.device_count())),)


def cluster_nodes() -> tuple[Node, ...]:
    """The alive nodes of the Ray cluster this process is connected to."""
    import ray

    return tuple(Node(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
                 for n in ray.nodes() if n.get("Alive"))


def plan_resources(settings: SweepSettings, nodes: tuple[Node, ...]) -> ResourcePlan:
    """The plan for ``settings`` on ``nodes``; a request that can never be placed is refused.

    Raises:
        ConfigError: naming the resource and the numbers, when no node can hold one trial.
    """
    resources = settings.resources
    workers = resources["workers"]
    if workers != 1:
        raise ConfigError("sweep.resources.workers", f"{workers} workers per trial need Ray Train, which this version "
                          f"does not run yet; use 1 worker per trial")
    cpus, gpus = float(resources["cpus_per_worker"]), float(resources["gpus_per_worker"])
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError("sweep.resources.gpus_per_worker", f"{gpus:g} GPUs is neither a share of one GPU nor a whole "
                          f"number; use e.g. 0.25 or 2")
    total = sum(trials_per_node(node, cpus, gpus) for node in nodes)
    if total == 0:
        raise ConfigError(*_why_nothing_fits(nodes, cpus, gpus))
    limit = settings.max_concurrent or total
    return ResourcePlan(cpus, gpus, max(1, min(total, limit, settings.num_samples)), nodes)


def trials_per_node(node: Node, cpus: float, gpus: float) -> int:
    fits = [math.floor(node.cpus / cpus + EPSILON) if cpus else math.inf,
            math.floor(node.gpus / gpus + EPSILON) if gpus else math.inf]
    return int(min(fits)) if min(fits) != math.inf else 0


def _why_nothing_fits(nodes: tuple[Node, ...], cpus: float, gpus: float) -> tuple[str, str]:
    most_cpus = max(n.cpus for n in nodes)
    most_gpus = max(n.gpus for n in nodes)
    if gpus > most_gpus:
        return ("sweep.resources.gpus_per_worker", f"a trial needs {gpus:g} GPU(s) but the largest node has "
                f"{most_gpus:g}; lower gpus_per_worker (--gpus-per-worker 0 for CPU) or join a cluster with GPUs")
    if cpus > most_cpus:
        return ("sweep.resources.cpus_per_worker", f"a trial needs {cpus:g} CPU(s) but the largest node has "
                f"{most_cpus:g}; lower cpus_per_worker (--cpus-per-worker)")
    return ("sweep.resources", f"no node has {cpus:g} CPU(s) and {gpus:g} GPU(s) together; lower the request")
