"""Per-trial resources and concurrency, planned from what the cluster really has; the local Ray.

Ray only queues trials it cannot place; it never says that one can *never* be placed, and a sweep
waiting on such a trial hangs. So the plan is checked node by node before anything starts, and the
number of trials at once is limited so that every started trial can get all of its workers.

A sweep on this machine starts a Ray of its own (:func:`connect_ray`), as early as the command line is
read (:class:`EarlyRay`): this module is imported before Lightning and torch are, so it imports neither
at module level (nor ``torchmate_ray.lightning``, whose package imports Lightning).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
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


# --- the local Ray ------------------------------------------------------------------------------
# What a trial's process imports before it trains. Every Python worker of a local Ray imports them as it
# starts (Ray's experimental `preload_python_modules`, ray PR #33572; it holds for actors too, ray#60230),
# and the raylet starts one idle worker per CPU as it starts: a trial's actor then starts in a process that
# has them already (measured on 2 CPUs: ready in 0.3 s instead of 11 s), while the driver is still busy.
# Ray starts as many idle workers again when the first driver connects (`prestart_worker_first_driver`);
# importing torch in those too would only take CPU from the driver (measured: 4 workers importing on 2 CPUs
# delayed the first epoch), and the first round serves the trials (checked: the actors' processes had the
# modules). Placeholder tasks that import them instead do not help: Ray gave the actors fresh processes.
WARM_MODULES = ("torch", "lightning.pytorch", "torchmate_ray.tune.trial")
WARM_SYSTEM_CONFIG = {"preload_python_modules": list(WARM_MODULES), "prestart_worker_first_driver": False}
THREADS_ENV = "OMP_NUM_THREADS"


@dataclass(frozen=True)
class LocalRay:
    """What this sweep's own Ray is started with, from what its trials need of it.

    ``state_api``: the dashboard, for multi-worker trials. Ray Train's PlacementGroupCleaner asks its
    state API whether a run's controller is still alive, and without it never frees the workers'
    placement group of a trial that ASHA stopped, so the next multi-worker trial waits forever
    (ray#54305, seen on this project's machines). It then listens on 127.0.0.1 only.

    ``threads``: torch's threads in each worker, as Ray would give a trial of ``cpus_per_worker``
    (``OMP_NUM_THREADS``). Ray sets that variable when a task starts, but a warm worker imported torch
    before, when it was unset, and torch keeps the thread count it read then (all the machine's cores):
    so the workers get it from their start.
    """

    state_api: bool = False
    threads: int = 1

    @classmethod
    def for_trials(cls, workers: int, cpus_per_worker: float) -> LocalRay:
        return cls(state_api=workers > 1, threads=max(1, math.floor(cpus_per_worker + EPSILON)))


# In the trials' processes. Before a warm process takes the next trial (reuse_actors), Tune waits this long
# for the last one's thread to end (its default, 2 s, is less than a loaded machine takes to tear a fit
# down and write its last checkpoint), or fails that next trial.
TRIAL_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "60"}


def connect_ray(address: str | None, local: LocalRay = LocalRay()) -> None:
    """Join the cluster at ``address``, or start a local Ray (on loopback, see cli.py) as ``local`` says."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # state snapshots: a resume repeats at most ~2 s
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, runtime_env={"env_vars": dict(TRIAL_ENV)}, **quiet)
        return
    for key, value in TRIAL_ENV.items():  # a local Ray's processes copy this environment
        os.environ.setdefault(key, value)
    # Ray warns that it turned token authentication on (its default): noise for a Ray of our own on loopback
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    threads_unset = THREADS_ENV not in os.environ
    if threads_unset:  # Ray's processes (and the workers they start) copy the environment as ray.init starts them
        os.environ[THREADS_ENV] = str(local.threads)
    try:  # "local": a Ray of our own, even when a `ray start` cluster runs on this machine
        ray.init(address="local", include_dashboard=local.state_api, dashboard_host="127.0.0.1",
                 _system_config=dict(WARM_SYSTEM_CONFIG), **quiet)  # a copy: Ray writes its settings into it
    finally:
        if threads_unset:
            os.environ.pop(THREADS_ENV, None)


class EarlyRay:
    """The local Ray, started in a background thread while the driver imports, validates and builds its cache.

    Start it with what the command line says of the trials; the sweep calls :meth:`use` with what its
    plan needs, and :meth:`close` shuts it down (a refused sweep: ``wait=False``, it goes on in the
    thread). One thread starts Ray, keeps it and shuts it down, because Ray's processes are bound to
    the thread that started them (Linux ``PR_SET_PDEATHSIG``, ray/_private/services.py): they are
    killed the moment that thread ends. The thread is not a daemon: a process that returns before Ray
    is up waits for it to be up and shut down again, so a refused command leaves no Ray process
    behind; and every EarlyRay must be closed, or the process waits forever. In one process, each
    EarlyRay starts after the previous one ended.
    """

    _last: EarlyRay | None = None

    def __init__(self, local: LocalRay):
        self.local = local
        self.threads_given = THREADS_ENV in os.environ  # then `local.threads` does not matter
        self._error: BaseException | None = None
        self._owned = False  # False: a Ray this process had already (not ours to shut down), or none
        self._ready, self._release = threading.Event(), threading.Event()
        self._previous, EarlyRay._last = EarlyRay._last, self
        if threading.current_thread() is threading.main_thread():
            # ray.init sets this handler only from the main thread: on SIGTERM, exit through the finally
            # clauses and atexit, where what was started is shut down
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._thread = threading.Thread(target=self._own_ray, name="torchmate-early-ray")
        self._thread.start()

    def _own_ray(self) -> None:
        """Start Ray, keep it until :meth:`close`, shut it down."""
        import ray

        if self._previous is not None:
            self._previous._thread.join()
            self._previous = None
        worker_log = logging.getLogger("ray._private.worker")
        worker_log.addFilter(_not_main_thread_warning)
        try:
            self._owned = not ray.is_initialized()
            connect_ray(None, self.local)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread by use()
            self._error, self._owned = err, False
        finally:
            worker_log.removeFilter(_not_main_thread_warning)
            self._ready.set()
        self._release.wait()
        if self._owned:
            ray.shutdown(wait_for_processes=True)

    def use(self, wanted: LocalRay) -> None:
        """Wait for the early Ray; shut it down if it was not started as the plan ``wanted`` (the search-space
        file set other resources than the command line), so that :func:`connect_ray` starts the right one.

        Raises:
            whatever ``ray.init`` raised in the thread.
        """
        self._ready.wait()
        if self._error is not None:
            raise self._error
        fits = self.local.state_api == wanted.state_api and (self.threads_given or self.local.threads == wanted.threads)
        if self._owned and not fits:
            self.close()

    def close(self, wait: bool = True) -> None:
        """Shut the early Ray down (once it is up); ``wait``: until it is."""
        self._release.set()
        if wait:
            self._thread.join()


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    """Drop ray.init's warning that it set no SIGTERM handler from a thread: EarlyRay sets it."""
    return not str(record.msg).startswith("SIGTERM handler is not set")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(signum)
