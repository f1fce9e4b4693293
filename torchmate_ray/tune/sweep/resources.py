"""Per-trial resources and concurrency, planned from what the cluster really has, or can have.

Ray only queues trials it cannot place; it never says that one can *never* be placed, and a sweep
waiting on such a trial hangs. So the plan is checked node by node before anything starts, and the
number of trials at once is limited so that every started trial can get all of its workers.

On an autoscaling cluster the plan is made against the largest cluster its autoscaler can reach: the alive
nodes plus the worker nodes it can still launch (:func:`launchable_nodes`, from the autoscaler's own config).
The trials it cannot place yet wait as pending placement groups, and those are what makes Ray's autoscaler
add nodes; a plan made from the alive nodes alone would never let a trial wait, and the cluster never grew.

The local Ray that a sweep on this machine starts is local_ray.py's, which imports this module before
Lightning and torch are imported: so it imports neither at module level (nor ``torchmate_ray.lightning``,
whose package imports Lightning).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.records.files import AUTOSCALER_CONFIG

if TYPE_CHECKING:
    from torchmate_ray.tune.search.space import SweepSettings

EPSILON = 1e-9  # 1 / 0.1 must count as 10 trials per GPU, not 9
# One-worker trials packed onto one GPU when gpus_per_worker is not set: eight LeNet5 processes on one H100
# each kept the epoch time of one alone (DESIGN.md), and few sweeps tune models that fill a GPU.
TRIALS_PER_GPU = 8


# AUTOSCALER_CONFIG (records/files.py): the file that `ray up` writes on the head with the cluster's config, node
# types' resources filled in, and that the head's autoscaler (v1 and v2 alike) is started with (`ray start --head
# --autoscaling-config=...`). Ray's own code takes it for "this is an autoscaling cluster"
# (ray/tune/execution/cluster_info.py, the dashboard's usage stats); Ray 2.60 puts no node types in the GCS on such a cluster (its ClusterConfig there is KubeRay's).
HEAD_RESOURCE = "node:__internal_head__"  # the resource Ray gives the head node alone


@dataclass(frozen=True)
class Node:
    cpus: float
    gpus: float
    head: bool = False


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
    nodes: tuple[Node, ...]                  # the cluster planned for: at its largest, on an autoscaling one
    nodes_now: tuple[Node, ...] | None = None  # the nodes alive at the start, on a cluster with an autoscaler

    @property
    def autoscaled(self) -> bool:
        """Whether an autoscaler adds the nodes the trials wait for (and replaces lost ones)."""
        return self.nodes_now is not None

    @property
    def grows(self) -> bool:
        """Whether the plan counts on nodes that the autoscaler has yet to add."""
        return self.autoscaled and len(self.nodes_now) < len(self.nodes)

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
        worker = f"{self.cpus_per_worker:g} CPU, {self.gpus_per_worker:g} GPU"
        cluster = (f"cluster: {_size(self.nodes_now)} now, up to {_size(self.nodes)} as the autoscaler adds "
                   f"nodes" if self.grows else f"cluster: {_size(self.nodes)}")
        lines = [cluster,
                 f"each trial: {worker}" if self.workers == 1 else
                 f"each trial: {self.workers} Ray Train workers (DDP) x ({worker}), plus a driver holding no CPU",
                 f"trials at once: {self.max_concurrent}" + (" (at full size)" if self.grows else "")]
        if 0 < self.gpus_per_worker < 1:
            lines.append(f"trials sharing one GPU: {int(1 / self.gpus_per_worker + EPSILON)}")
        return lines


DRIVER_MEMORY = 50 * 1024**2  # a multi-worker trial's driver: a token request, so that it holds no CPU


def local_nodes() -> tuple[Node, ...]:
    """This machine as a one-node cluster (what a local Ray would start with)."""
    import torch

    return (Node(float(os.cpu_count() or 1), float(torch.cuda.device_count())),)


def _size(nodes: tuple[Node, ...]) -> str:
    cpus, gpus = sum(n.cpus for n in nodes), sum(n.gpus for n in nodes)
    return f"{len(nodes)} node(s) ({cpus:g} CPUs, {gpus:g} GPUs)"


def cluster_nodes() -> tuple[tuple[Node, ...], tuple[Node, ...] | None]:
    """The Ray cluster this process is connected to: its alive nodes, and the worker nodes its autoscaler can still
    launch (None: no autoscaler, or its config is not on the head)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = tuple(Node(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0), HEAD_RESOURCE in n["Resources"])
                  for n in alive)
    config = read_autoscaler_config(next((n["NodeID"] for n in alive if HEAD_RESOURCE in n["Resources"]), None))
    return nodes, launchable_nodes(config, nodes) if config else None


def read_autoscaler_config(head: str | None) -> dict | None:
    """The autoscaler config (:data:`AUTOSCALER_CONFIG`) on the node ``head`` (its Ray node ID), or None: the
    cluster has no autoscaler. Read here when this process runs on the head (`ray attach`, `ray submit`,
    `ray exec`), else by a task on it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if head is None or head == ray.get_runtime_context().get_node_id():
        return _read_autoscaler_config()
    read = ray.remote(num_cpus=0)(_read_autoscaler_config)
    return ray.get(read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote(),
                   timeout=60)


def _read_autoscaler_config() -> dict | None:
    import yaml  # `ray up` writes it as JSON, which YAML reads too

    path = Path(AUTOSCALER_CONFIG).expanduser()
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def launchable_nodes(config: Mapping[str, Any], alive: tuple[Node, ...]) -> tuple[Node, ...]:
    """The worker nodes that the autoscaler of ``config`` can still add to the ``alive`` nodes.

    Each worker node type up to its ``max_workers``, less the alive nodes of its resources, and all of them up to
    the cluster's ``max_workers``. A node type whose CPUs and GPUs are not in the config (a provider that does not
    fill them in) is not counted on; its nodes count once they are alive.
    """
    types = config.get("available_node_types") or {}
    workers = [node for node in alive if not node.head]
    room = int(config.get("max_workers", sum(int(t.get("max_workers", 0)) for t in types.values()))) - len(workers)
    added: list[Node] = []
    for name, spec in types.items():
        resources = spec.get("resources") or {}
        node = Node(float(resources.get("CPU", 0)), float(resources.get("GPU", 0)))
        if name == config.get("head_node_type") or not (node.cpus or node.gpus):
            continue
        running = [alive_node for alive_node in workers if alive_node == node]
        for matched in running:
            workers.remove(matched)
        count = max(0, min(int(spec.get("max_workers", room)) - len(running), room))
        added += [node] * count
        room -= count
    return tuple(added)


def plan_resources(settings: SweepSettings, nodes: tuple[Node, ...], num_trials: int,
                   launchable: tuple[Node, ...] | None = None) -> ResourcePlan:
    """The plan for ``num_trials`` trials of ``settings`` on ``nodes`` and the ``launchable`` nodes that an
    autoscaler can add to them (None: the cluster has no autoscaler); a request that can never be placed is refused.

    Raises:
        ConfigError: naming the resource and the numbers, when the cluster can never hold one trial.
    """
    now, nodes = (None, nodes) if launchable is None else (nodes, nodes + launchable)
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
        raise ConfigError(*_why_nothing_fits(nodes, cpus, gpus, "the largest node, alive or that the autoscaler can "
                                             "launch," if now is not None else "the largest node"))
    if workers > slots:
        raise ConfigError("sweep.resources.workers", f"{workers} workers x ({cpus:g} CPU, {gpus:g} GPU) need room for "
                          f"{workers} workers, but the cluster holds {slots} ({_totals(nodes)}); use at most {slots} "
                          f"workers per trial or fewer CPUs/GPUs per worker")
    limit = settings.max_concurrent or slots
    return ResourcePlan(workers, cpus, gpus, max(1, min(slots // workers, limit, num_trials)), nodes, now)


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


def _why_nothing_fits(nodes: tuple[Node, ...], cpus: float, gpus: float, largest: str) -> tuple[str, str]:
    most_cpus = max(n.cpus for n in nodes)
    most_gpus = max(n.gpus for n in nodes)
    if gpus > most_gpus:
        return ("sweep.resources.gpus_per_worker", f"a trial needs {gpus:g} GPU(s) but {largest} has "
                f"{most_gpus:g}; lower gpus_per_worker (--gpus-per-worker 0 for CPU) or join a cluster with GPUs")
    if cpus > most_cpus:
        return ("sweep.resources.cpus_per_worker", f"a trial needs {cpus:g} CPU(s) but {largest} has "
                f"{most_cpus:g}; lower cpus_per_worker (--cpus-per-worker)")
    return ("sweep.resources", f"no node has {cpus:g} CPU(s) and {gpus:g} GPU(s) together; lower the request")
