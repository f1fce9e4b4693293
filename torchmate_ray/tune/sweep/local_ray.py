"""The sweep's own Ray on this machine: started with what its trials need (:class:`LocalRay`, :func:`connect_ray`),
as early as the command line is read (:class:`EarlyRay`), with warm processes for the trials.

This module is imported before Lightning and torch are (cli.py starts the early Ray first), so it imports
neither at module level (nor ``torchmate_ray.lightning``, whose package imports Lightning).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import dataclass

from torchmate_ray.errors import ConfigError
from torchmate_ray.tune.private import private_system_config, quiet_token_logger, ray_worker_logger
from torchmate_ray.tune.sweep.resources import EPSILON

# What a trial's process imports before it trains: every Python worker of a local Ray imports them as it
# starts (Ray's experimental `preload_python_modules`, ray PR #33572; it holds for actors too, ray#60230).
# Ray 2.60 starts the trials' processes only when Tune asks for its actors, so these imports do not overlap
# the driver's (measured on 2 CPUs: Tuner.fit at 6.5 s, the actors' processes started then, their imports
# ended at 11.0 s). Processes started earlier are never used: Tune gives its actors a runtime_env
# (`PL_DISABLE_FORK`, ray/tune/execution/class_cache.py), and the raylet prestarts only workers without one,
# for no job (`enable_worker_prestart`, `prestart_worker_first_driver`: tried with a job runtime_env equal to
# Tune's too; the first epoch came 4-5 s later, the idle processes' imports taking the CPUs). Ray's
# PrestartWorkers RPC takes a runtime_env, but 2.60 has no Python API for it. So none are prestarted.
WARM_MODULES = ("torch", "lightning.pytorch", "torchmate_ray.tune.trial.train")
WARM_SYSTEM_CONFIG = {"preload_python_modules": list(WARM_MODULES), "prestart_worker_first_driver": False}
# With multi-worker trials, most of a trial's processes need none of them: of a 2-worker trial's 10 (Ray Train's
# controller, its queue, synchronization, placement-group cleaner, dataset manager, autoscaling coordinator...),
# only the trial's and its 2 workers' import torch. Preloaded, each took 7 s of CPU: the trial's first epoch came
# after 38.8 s on 2 CPUs, and 32.0 s without. Each Train worker imports them itself.
COLD_SYSTEM_CONFIG = {"prestart_worker_first_driver": False}
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
# And on this machine alone: Ray Train's preemption watcher (an actor per multi-worker trial, a process) waits
# for a cloud's notice that a node will be taken away, which a machine of one's own never gets.
LOCAL_TRIAL_ENV = {**TRIAL_ENV, "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def connect_ray(address: str | None, local: LocalRay = LocalRay()) -> None:
    """Join the cluster at ``address``, or start a local Ray (on loopback, see cli.py) as ``local`` says."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, runtime_env={"env_vars": dict(TRIAL_ENV)}, **quiet)
        except ConnectionError as err:  # "auto" with no cluster on this machine; a GCS that went away
            raise ConfigError("--address", f"no Ray cluster at {address}: {str(err).splitlines()[0]}; start one "
                              f"(`ray start --head`, `ray up`) or give its head's HOST:PORT") from err
        return
    for key, value in LOCAL_TRIAL_ENV.items():  # a local Ray's processes copy this environment
        os.environ.setdefault(key, value)
    quiet_token_logger()
    threads_unset = THREADS_ENV not in os.environ
    if threads_unset:  # Ray's processes (and the workers they start) copy the environment as ray.init starts them
        os.environ[THREADS_ENV] = str(local.threads)
    try:  # "local": a Ray of our own, even when a `ray start` cluster runs on this machine
        system_config = COLD_SYSTEM_CONFIG if local.state_api else WARM_SYSTEM_CONFIG  # state_api: multi-worker
        ray.init(address="local", include_dashboard=local.state_api, dashboard_host="127.0.0.1",
                 **private_system_config(system_config), **quiet)
    finally:
        if threads_unset:
            os.environ.pop(THREADS_ENV, None)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse a ``HOST:PORT`` where nothing listens, in seconds: ray.init would retry it for minutes, printing
    Ray's GCS connection warnings. ``auto`` (and other schemes) are Ray's to find."""
    import socket

    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError("--address", f"nothing answers at {address} ({err.strerror or err}); start the cluster "
                          f"(`ray start --head --port=...`, `ray up`) or give its head's HOST:PORT (or auto on "
                          f"its head)") from err


class EarlyRay:
    """The local Ray, started in a background thread while the driver imports, validates and builds its cache.

    Start it with what the command line says of the trials; the sweep calls :meth:`use` with what its
    plan needs, and :meth:`close` shuts it down (a refused sweep: ``wait=False``, it goes on in the
    thread). One thread starts Ray, keeps it and shuts it down, because Ray's processes are bound to
    the thread that started them (Linux ``PR_SET_PDEATHSIG``, ray/_private/services.py): they are
    killed the moment that thread ends (the raylet, not the agents it started). The thread is not a
    daemon: a process that returns waits for Ray to be up and shut down again, and every EarlyRay must
    be closed, or the process waits forever; the command itself, refused, kills it instead
    (:func:`kill_early_ray`, cli.exit_now). In one process, each EarlyRay starts after the previous one
    ended.
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
        worker_log = ray_worker_logger()
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

    @classmethod
    def still_closing(cls) -> bool:
        """Whether this process's last early Ray was closed without waiting and is still starting or shutting
        down: a refused command's, whose Ray nothing used."""
        last = cls._last
        return last is not None and last._release.is_set() and last._thread.is_alive()


def kill_early_ray() -> None:
    """Kill this process's Ray at once, starting or not, when the process is about to end without using it (a
    refused command). Its shutdown waits for Ray to be up, then for its processes to end: 2-4 s on 2 CPUs. Every
    process Ray started is this one's descendant; killing the raylet alone would leave its agents running."""
    import ray  # noqa: F401  (puts its own psutil, ray/thirdparty_files, on the path)
    import psutil

    for _ in range(2):  # again, for what was starting while the first ones were killed
        for process in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                process.kill()


def _not_main_thread_warning(record: logging.LogRecord) -> bool:
    """Drop ray.init's warning that it set no SIGTERM handler from a thread: EarlyRay sets it."""
    return not str(record.msg).startswith("SIGTERM handler is not set")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(signum)
