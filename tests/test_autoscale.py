"""A sweep on an autoscaling cluster grows it and lets it shrink again: Ray's fake multi-node provider (the
autoscaler's own code, launching nodes as processes on this machine) stands in for a cloud. The head holds no
trial and the worker type (1 CPU, 1 logical GPU, 0 to 2 nodes) has no node at the start: the sweep plans against
the cluster at its largest, its waiting trials make the autoscaler add both nodes, its two trials run on them at
once, and once it ends the nodes go. The plan is read from the file a `ray up` head has,
``~/ray_bootstrap_config.yaml``, in a home of the test's own."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from machines import process_tree
from spaces import EPOCH_LOG, Code, epoch_log, tiny_space

BIN = Path(sys.executable).parent
PORT = 6420  # a port and temp directory of its own: `ray stop` (AutoscalingCluster.start) would end every Ray here
WORKER_TYPE = "gpu_worker"
IDLE_TIMEOUT_MINUTES = 0.1  # the autoscaler removes a node idle for 6 s

# A trial's epochs by Ray node ID (every fake node has the machine's IP); the barrier waits for two nodes.
NODE_EPOCH_LOG = EPOCH_LOG + '''
class NodeEpochLog(EpochLog):
    def write(self, what):
        with open(self.path, "a") as handle:
            handle.write(f"{tune.get_context().get_trial_id()} {ray.get_runtime_context().get_node_id()} {what}\\n")
'''


def autoscaler_config() -> dict:
    """The fake provider's cluster: a head of 0 CPUs, and up to 2 nodes of 1 CPU and 1 GPU, none at the start."""
    return {
        "cluster_name": "torchmate-autoscale-test", "max_workers": 2, "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        # as Ray's own example of the provider: its nodes share one IP, and nothing runs setup commands on them
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{PORT}", "launch_multiple": True,
                     "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True},
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 200 * 1024**2}, "node_config": {},
                          "min_workers": 0, "max_workers": 2}},
        "head_node_type": "ray.head.default",
        **{key: [] for key in ("cluster_synced_files", "rsync_exclude", "rsync_filter", "initialization_commands",
                               "setup_commands", "head_setup_commands", "worker_setup_commands",
                               "head_start_ray_commands", "worker_start_ray_commands")},
        "file_mounts": {}, "file_mounts_sync_continuously": False,
    }


def workers_active(env: dict[str, str]) -> int:
    """How many worker nodes `ray status` lists as active."""
    status = subprocess.run([str(BIN / "ray"), "status", f"--address=127.0.0.1:{PORT}"], env=env, capture_output=True,
                            text=True, timeout=60).stdout
    active = status.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in status else ""
    return sum(int(count) for count in re.findall(rf"^\s*(\d+) {WORKER_TYPE}", active, re.M))


def wait_for_workers(env: dict[str, str], count: int, timeout: float) -> float:
    """Seconds until `count` worker nodes are active."""
    began = time.monotonic()
    while (active := workers_active(env)) != count:
        assert time.monotonic() - began < timeout, f"{active} worker nodes active after {timeout:.0f} s, not {count}"
        time.sleep(1)
    return time.monotonic() - began


@pytest.fixture(scope="module")
def autoscaling_cluster():
    """The head of a fake autoscaling cluster, started as a `ray up` head is (`ray start --head
    --autoscaling-config=~/ray_bootstrap_config.yaml`), with this user's home replaced by one of the test's; yields
    the environment its commands run in. Every process of the cluster names its temp dir, and is ended afterwards."""
    temp = tempfile.mkdtemp(prefix="ras", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    home = Path(temp, "home")
    home.mkdir()
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(autoscaler_config()))
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_FAKE_CLUSTER": "1",
           "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # an in-process sweep's single-node switch
    try:
        for command in (["get-auth-token", "--generate"],  # Ray 2.60's token, in that home
                        ["start", "--head", "--node-ip-address=127.0.0.1", f"--port={PORT}", "--num-cpus=0",
                         "--num-gpus=0", f"--temp-dir={temp}", "--dashboard-port=8285", "--disable-usage-stats",
                         f"--autoscaling-config={home / 'ray_bootstrap_config.yaml'}"]):
            started = subprocess.run([str(BIN / "ray"), *command], env=env, capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield env
    finally:
        for pid in process_tree(lambda args: temp in args):
            subprocess.run(["kill", "-9", str(pid)], capture_output=True)
        time.sleep(1)
        left = process_tree(lambda args: temp in args and any(name in args for name in ("raylet", "gcs_server",
                                                                                        "monitor.py")))
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"processes of the cluster are left: {left}"


def write_space(tmp_path: Path, log: Path) -> Path:
    space = tmp_path / "space.py"
    space.write_text(tiny_space(tmp_path / "data", code=NODE_EPOCH_LOG, overrides={
        "training": {"max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 2,
                     "callbacks": [epoch_log(log, 0.5, name="NodeEpochLog", machines=2)]},
        "optimizer.cfg.lr": Code("tune.choice([1e-2, 5e-3, 2e-3])")},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 2, "scheduler": "fifo",
               "resources": {"cpus_per_worker": 1, "gpus_per_worker": 1}}))
    return space


@pytest.mark.slow
@pytest.mark.parametrize("search", ["random", "optuna"])
def test_sweep_grows_the_cluster_and_it_shrinks_after(autoscaling_cluster, tmp_path, search):
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    env = autoscaling_cluster
    wait_for_workers(env, 0, timeout=120)  # the head alone (an earlier sweep's nodes gone)
    log = tmp_path / "epochs.log"
    command = [str(BIN / "torchmate-tune"), str(write_space(tmp_path, log)), "--address", f"127.0.0.1:{PORT}",
               "--search", search, "--storage-path", str(tmp_path / "results"), "--name", "exp"]
    if search == "random":  # the plan, as a dry run says it: the cluster now and at its largest
        planned = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True, timeout=120)
        assert planned.returncode == 0, planned.stderr[-3000:]
        assert "cluster: 1 node(s) (0 CPUs, 0 GPUs) now, up to 3 node(s) (2 CPUs, 2 GPUs)" in planned.stdout
        assert "trials at once: 2 (at full size)" in planned.stdout
    sweep = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    ended = time.monotonic()
    summary = json.loads((tmp_path / "results" / "exp" / "summary.json").read_text())
    assert summary["trials"] == {"finished": 2, "stopped": 0, "errored": 0}

    lines = [line.split() for line in log.read_text().splitlines()]
    nodes = {trial: node for trial, node, what in lines if what == "0"}
    assert len(nodes) == 2 and len(set(nodes.values())) == 2, lines  # two trials on two nodes
    assert FAKE_HEAD_NODE_ID not in nodes.values()  # on nodes the autoscaler added: the head was alone at the start
    first_end = next(index for index, (_, _, what) in enumerate(lines) if what == "end")
    assert sum(what == "0" for _, _, what in lines[:first_end]) == 2, lines  # at the same time

    wait_for_workers(env, 0, timeout=90)  # idle nodes removed: nothing of the sweep holds them
    print(f"{search}: worker nodes gone {time.monotonic() - ended:.1f} s after the sweep ended "
          f"(idle timeout {IDLE_TIMEOUT_MINUTES * 60:.0f} s)")
