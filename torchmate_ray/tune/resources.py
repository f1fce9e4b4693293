"""Per-trial resources and concurrency, planned from what the cluster really has.

Ray only queues trials it cannot place; it never says that one can *never* be placed, and a sweep
waiting on such a trial hangs. So the plan is checked node by node before anything starts, and the
number of trials at once is limited so that every started trial can get all of its workers.

The local Ray that a sweep on this machine starts is local_ray.py's, which imports this module before
Lightning and torch are imported: so it imports neither at module level (nor ``torchmate_ray.lightning``,
whose package imports Lightning).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchmate_ray.tune.space import SweepSettings

EPSILON = 1e-9  # 1 / 0.1 must count as 10 trials per GPU, not 9
# One-worker trials packed onto one GPU when gpus_per_worker is not set: eight LeNet5 processes on one H100
# each kept the epoch time of one alone (DESIGN.md), and few sweeps tune models that fill a GPU.
TRIALS_PER_GPU = 8


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float


@dataclass(frozen=True)
class ResourcePlan:
    """What each trial asks Ray for, and how many trials run at once.

    A one-worker trial is one Tune actor holding the worker's CPUs/GPUs. A multi-worker trial is a
    driver holding no CPU (it only waits) plus ``workers`` Ray Train workers in their own placement
    group, which Tune does not see: the concurrency limit is what keeps trials from starving each
    other's worker groups (Ray's own pattern times out on 2 CPUs otherwise).
    """

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_concurrent: int
    nodes: tuple[Node, ...]

    @property
    def bundle(self) -> dict[str, float]:
        """The Tune trial's own resources."""
        if self.workers > 1:
            return {"cpu": 0, "memory": DRIVER_MEMORY}
        return {"cpu": self.cpus_per_worker, "gpu": self.gpus_per_worker}

    @property
    def gpus_per_trial(self) -> float:
        return self.workers * self.gpus_per_worker

    def resources(self) -> dict[str, float]:
        """As ``sweep.resources``."""
        return {"workers": self.workers, "cpus_per_worker": self.cpus_per_worker, "gpus_per_worker": self.gpus_per_worker}

    def describe(self) -> list[str]:
        cpus, gpus = sum(n.cpus for n in self.nodes), sum(n.gpus for n in self.nodes)
        worker = f"{self.cpus_per_worker:g} CPU, {self.gpus_per_worker:g} GPU"
        lines = [f"cluster: {len(self.nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs",
                 f"each trial: {worker}" if self.workers == 1 else
                 f"each trial: {self.workers} Ray Train workers (DDP) x ({worker}), plus a driver holding no CPU",
                 f"trials at once: {self.max_concurrent}"]
        if 0 < self.gpus_per_worker < 1:
            lines.append(f"trials sharing one GPU: {int(1 / self.gpus_per_worker + EPSILON)}")
        return lines


DRIVER_MEMORY = 50 * 1024**2  # a multi-worker trial's driver: a token request, so that it holds no CPU


def local_nodes() -> tuple[Node, ...]:
    """This machine as a one-node cluster (what a local Ray would start with)."""
    import torch

    return (Node(float(os.cpu_count() or 1), float(torch.cuda.device_count())),)


def cluster_nodes() -> tuple[Node, ...]:
    """The alive nodes of the Ray cluster this process is connected to."""
    import ray

    return tuple(Node(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
                 for n in ray.nodes() if n.get("Alive"))


def plan_resources(settings: SweepSettings, nodes: tuple[Node, ...], num_trials: int) -> ResourcePlan:
    """The plan for ``num_trials`` trials of ``settings`` on ``nodes``; a request that can never be placed is refused.

    Raises:
        ConfigError: naming the resource and the numbers, when the cluster can never hold one trial.
    """
    from torchmate_ray.lightning.errors import ConfigError

    resources = settings.resources
    workers = int(resources["workers"])
    cpus = float(resources["cpus_per_worker"])
    gpus = default_gpus_per_worker(nodes, workers, cpus) if resources["gpus_per_worker"] is None \
        else float(resources["gpus_per_worker"])
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError("sweep.resources.gpus_per_worker", f"{gpus:g} GPUs is neither a share of one GPU nor a whole "
                          f"number; use e.g. 0.25 or 2")
    if workers > 1 and 0 < gpus < 1:
        raise ConfigError("sweep.resources.gpus_per_worker", f"{workers} DDP workers cannot share GPUs ({gpus:g} each; "
                          f"NCCL refuses duplicate GPUs, ray#48012); use whole GPUs per worker or 1 worker per trial")
    slots = sum(trials_per_node(node, cpus, gpus) for node in nodes)  # places for one worker each
    if slots == 0:
        raise ConfigError(*_why_nothing_fits(nodes, cpus, gpus))
    if workers > slots:
        raise ConfigError("sweep.resources.workers", f"{workers} workers x ({cpus:g} CPU, {gpus:g} GPU) need room for "
                          f"{workers} workers, but the cluster holds {slots} ({_totals(nodes)}); use at most {slots} "
                          f"workers per trial or fewer CPUs/GPUs per worker")
    limit = settings.max_concurrent or slots
    return ResourcePlan(workers, cpus, gpus, max(1, min(slots // workers, limit, num_trials)), nodes)


def default_gpus_per_worker(nodes: tuple[Node, ...], workers: int, cpus: float) -> float:
    """No GPU on a cluster without GPUs; a whole GPU per DDP worker; else a share of one GPU, so that up to
    ``TRIALS_PER_GPU`` one-worker trials run on each GPU, as many as the node's CPUs per GPU allow."""
    gpu_nodes = [node for node in nodes if node.gpus >= 1]
    if not gpu_nodes:
        return 0.0
    if workers > 1:
        return 1.0
    per_gpu = min(math.floor(node.cpus / node.gpus / cpus + EPSILON) if cpus else TRIALS_PER_GPU for node in gpu_nodes)
    return 1.0 / max(1, min(TRIALS_PER_GPU, per_gpu))


def trials_per_node(node: Node, cpus: float, gpus: float) -> int:
    fits = [math.floor(node.cpus / cpus + EPSILON) if cpus else math.inf,
            math.floor(node.gpus / gpus + EPSILON) if gpus else math.inf]
    return int(min(fits)) if min(fits) != math.inf else 0


def _totals(nodes: tuple[Node, ...]) -> str:
    return f"{sum(n.cpus for n in nodes):g} CPUs, {sum(n.gpus for n in nodes):g} GPUs on {len(nodes)} node(s)"


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
