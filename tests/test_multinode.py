"""A real multi-node Ray cluster on this one machine (a head and worker nodes on loopback addresses,
separate `ray start` processes): a sweep whose trials run on the worker nodes survives losing one. (That trials
spread over nodes is tests/test_ray_up.py's, on a cluster that `ray up` launches.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from machines import process_tree
from spaces import EPOCH_LOG, Code, epoch_log, read_epoch_log, tiny_space

BIN = Path(sys.executable).parent
HEAD = "127.0.0.2"
WORKERS = ["127.0.0.3", "127.0.0.4"]
PORT = 6390

def cluster_env() -> dict[str, str]:
    """This environment, as a cluster's processes need it: the token mode that Ray 2.60 requires of joining
    nodes, and without the single-node switch that an in-process torchmate-tune run may have set."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return env


def ray_start(*args: str) -> None:
    env = cluster_env()
    result = subprocess.run([str(BIN / "ray"), "start", "--num-cpus=1", "--disable-usage-stats", *args], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def node_processes(ip: str) -> list[int]:
    """The processes of the node at ``ip``: its raylet and everything under it (its workers, our trials)."""
    return process_tree(lambda args: "raylet" in args and f"node_ip_address={ip}" in args)


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def cluster(tmp_path):
    """A head and two worker nodes, 1 CPU each, all on this machine; stopped afterwards."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    try:
        # the dashboard on a port of its own: a local sweep's Ray (an in-process test's, shutting down) may hold 8265
        ray_start("--head", f"--node-ip-address={HEAD}", f"--port={PORT}", "--include-dashboard=true",
                  "--dashboard-port=8275", "--dashboard-host=127.0.0.1", f"--temp-dir={temp}")
        for ip in WORKERS:
            ray_start(f"--address={HEAD}:{PORT}", f"--node-ip-address={ip}")
        yield f"{HEAD}:{PORT}"
    finally:
        kill(process_tree(lambda args: temp in args))  # only this cluster: its processes name its temp dir
        shutil.rmtree(temp, ignore_errors=True)


def run_sweep(tmp_path: Path, address: str, pause: float, until=None) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "epochs.log"
    space = tmp_path / "space.py"
    space.write_text(tiny_space(tmp_path / "data", code=EPOCH_LOG, overrides={
        "training": {"max_epochs": 3, "limit_train_batches": 5, "limit_val_batches": 2,
                     "callbacks": [epoch_log(log, pause)]},
        "optimizer.cfg.lr": Code("tune.grid_search([1e-2, 5e-3, 2e-3])")},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo", "max_failures": 3}))
    process = subprocess.Popen([str(BIN / "torchmate-tune"), str(space), "--address", address, "--storage-path",
                                str(tmp_path / "results"), "--name", "exp"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=cluster_env())
    return process, log


def epochs(log: Path) -> dict[str, list[tuple[str, int]]]:
    """``{trial: [(node ip, epoch), ...]}``: where each trial started each epoch."""
    by_trial: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for trial, ip, epoch in read_epoch_log(log.read_text().splitlines() if log.exists() else []):
        if epoch != "end":
            by_trial[trial].append((ip, epoch))
    return by_trial


@pytest.mark.slow
def test_sweep_survives_losing_a_worker_node(cluster, tmp_path):
    process, log = run_sweep(tmp_path, cluster, pause=2.0)
    victim = None
    deadline = time.monotonic() + 180
    while victim is None and time.monotonic() < deadline:  # a trial on a worker node past its first epoch
        victim = next((ip for runs in epochs(log).values() for ip, epoch in runs if ip in WORKERS and epoch >= 1), None)
        time.sleep(0.2)
    assert victim, "no trial reached a worker node"
    at_kill = epochs(log)
    lost = {trial for trial, runs in at_kill.items() if runs[-1][0] == victim}
    kill(node_processes(victim))
    out, err = process.communicate(timeout=400)
    assert process.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())
    assert summary["trials"] == {"finished": 3, "stopped": 0, "errored": 0}
    runs = epochs(log)
    for trial in lost:  # retried on another node, from its last checkpoint: not from epoch 0
        in_progress = at_kill[trial][-1][1]
        retried = runs[trial][len(at_kill[trial]):]
        assert retried and all(ip != victim for ip, _ in retried)
        assert retried[0][1] in (in_progress, in_progress + 1) and retried[-1][1] == 2, (at_kill[trial], retried)
    assert any(at_kill[trial][-1][1] >= 1 for trial in lost)
