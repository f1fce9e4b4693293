"""The README's on-prem cluster recipe, run as written: `ray up` of its `local`-provider file on two machines made
on this one (tests/machines.py), the workers joining, a sweep spread over the machines through `ray exec`, the sweep's
driver killed and the sweep resumed, `ray down`, and nothing of it left running."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from ray._private import utils as ray_utils

from machines import Machines, missing_tools, process_tree
from spaces import EPOCH_LOG, Code, epoch_log, read_epoch_log, tiny_space
from test_cluster_files import readme_onprem, readme_recipe

ROOT = Path(__file__).resolve().parent.parent


def cluster_name() -> str:
    return f"torchmate-test-{os.getpid()}"


def active_nodes(status: str) -> int:
    """How many nodes `ray status` lists as active."""
    active = status.split("Active:", 1)[1].split("Pending:", 1)[0] if "Active:" in status else ""
    return sum(int(count) for count in re.findall(r"^\s*(\d+) \S+", active, re.M))


def cluster_cpus(status: str) -> float:
    """The CPUs `ray status` counts in the cluster (0 before the first report)."""
    found = re.search(r"[\d.]+/([\d.]+) CPU", status)
    return float(found.group(1)) if found else 0.0


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:  # ended since
        return ""


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")
    except OSError:
        return []


@pytest.fixture
def machines():
    """Two machines, ended afterwards (their files kept for a look with KEEP_MACHINES=1)."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="tmr", dir="/tmp"))  # Ray's socket paths under it must stay under 108 bytes
    try:
        with Machines(root, 2) as made:
            yield made
        assert made.processes() == [], "processes of the machines are left"
    finally:
        if not os.environ.get("KEEP_MACHINES"):
            shutil.rmtree(root, ignore_errors=True)
        # the SSH connections `ray up` shares (Ray's ControlPath, under the real /tmp, per user and cluster name)
        digest = [hashlib.sha256(name.encode()).hexdigest()[:10] for name in (getpass.getuser(), cluster_name())]
        shutil.rmtree(f"/tmp/ray_ssh_{digest[0]}/{digest[1]}", ignore_errors=True)
        with contextlib.suppress(OSError):  # Ray's, for all clusters of this user: only if this test made it
            os.rmdir(f"/tmp/ray_ssh_{digest[0]}")


@pytest.mark.slow
def test_readme_onprem_recipe_runs_on_two_machines(machines):
    config, recipe = readme_onprem(), readme_recipe()
    token, up, status, sweep, resume, down = recipe
    shared = machines.root / "shared"  # what the recipe calls /mnt/shared: every machine sees it at this path
    space = shared / "space.py"
    log = shared / "epochs.log"
    shared.mkdir()
    # the values the README says are yours: the machines' addresses, the SSH user and key
    config["cluster_name"] = cluster_name()  # its own Ray cluster state and SSH connections, whatever else runs here
    config["provider"].update(head_ip=machines.ips[0], worker_ips=machines.ips[1:])
    config["auth"].update(ssh_user=getpass.getuser(), ssh_private_key=str(machines.key))
    cluster_file = machines.root / "onprem.yaml"
    cluster_file.write_text(yaml.safe_dump(config))

    def ours(line: str) -> str:
        return (line.replace("onprem.yaml", str(cluster_file)).replace("search_spaces/lenet.py", str(space))
                .replace("/mnt/shared", str(shared)).replace("--num-samples 50", "--num-samples 1"))

    began = time.monotonic()

    def took(step: str) -> None:  # where the time goes (pytest -s shows it)
        print(f"{step}: {time.monotonic() - began:.1f} s")

    def run(line: str, timeout: float = 300):
        result = machines.run(ours(line), cwd=ROOT, timeout=timeout)
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    assert token == "ray get-auth-token --generate"
    run(token)
    run(up)
    took("ray up")
    # the head's autoscaler sets the workers up; a worker can be listed active before its CPUs are counted
    cpus = float(ray_utils.get_num_cpus())  # what each machine's Ray finds: the machines share this one's CPUs
    deadline = time.monotonic() + 150
    while active_nodes(cluster := run(status)) < len(machines.ips) or cluster_cpus(cluster) < cpus * len(machines.ips):
        assert time.monotonic() < deadline, f"the workers did not join:\n{cluster}"
        time.sleep(2)
    took("workers joined")

    # Each trial takes a whole machine's CPUs: the first two run at once, so on two machines. Each waits at its
    # first epoch until both have started: else Tune, reusing actors, gives the next trial the head's warm
    # process once the first one there ends, and cancels the worker's, still importing torch (a slow machine
    # ran all three trials on the head that way, in CI and in a clean clone here).
    space.write_text(tiny_space(shared / "data", code=EPOCH_LOG, overrides={
        "training": {"max_epochs": 3, "limit_train_batches": 5, "limit_val_batches": 2,
                     "callbacks": [epoch_log(log, 0.5, machines=len(machines.ips))]},
        "optimizer.cfg.lr": Code("tune.grid_search([1e-2, 5e-3, 2e-3])")},
        sweep={"metric": "val/accuracy", "mode": "max", "num_samples": 1, "scheduler": "fifo",
               "resources": {"cpus_per_worker": cpus}}))

    driver = machines.start(ours(sweep), cwd=ROOT, log=machines.root / "sweep.log")
    deadline = time.monotonic() + 150

    def started() -> list[tuple[str, str, int | str]]:
        return read_epoch_log(log.read_text().splitlines() if log.exists() else [])

    # killed once trials run on both machines and one has a checkpoint (it started its second epoch)
    while len({ip for _, ip, _ in started()}) < 2 or not any(epoch == 1 for _, _, epoch in started()):
        assert driver.poll() is None and time.monotonic() < deadline, \
            f"epochs (trial, machine, epoch): {started()}\n{cluster}\n" + (machines.root / "sweep.log").read_text()[-2000:]
        time.sleep(0.2)
    for pid in process_tree(lambda args: "torchmate-tune" in args and str(space) in args):  # the driver, on the head
        with contextlib.suppress(ProcessLookupError):  # ended since: a child of the driver that went with it
            os.kill(pid, signal.SIGKILL)
    assert driver.wait(timeout=60) != 0
    at_kill = len(log.read_text().splitlines())
    took("sweep killed")
    run(resume)
    took("sweep resumed and done")

    experiment = shared / "ray_results" / "lenet"
    summary = json.loads((experiment / "summary.json").read_text())
    assert summary["trials"] == {"finished": 3, "stopped": 0, "errored": 0}
    nodes = {row.split(",")[-1] for row in (experiment / "leaderboard.csv").read_text().splitlines()[1:]}
    ran_on = {ip for _, ip, _ in read_epoch_log(log.read_text().splitlines())}
    assert len(ran_on) >= 2 and ran_on <= set(machines.ips) and nodes <= ran_on, (ran_on, nodes)
    before, after = (read_epoch_log(lines) for lines in (log.read_text().splitlines()[:at_kill],
                                                        log.read_text().splitlines()[at_kill:]))
    went_on = {trial: epoch for trial, _, epoch in reversed(after) if epoch != "end"}  # first epoch after the resume
    assert all(went_on.get(trial, 3) >= 1 for trial, _, epoch in before if epoch == 1)  # from their checkpoints

    run(down)
    took("ray down")
    head = machines.ips[0]
    assert not [pid for pid in machines.processes() if command_name(pid) == "gcs_server" or
                (command_name(pid) == "raylet" and f"--node_ip_address={head}" in command_line(pid))]
    # the workers' Ray ends by itself once the head is gone (Ray's 60 s GCS reconnect timeout; `ray down` of the
    # local provider stops Ray on the head only): the fixture ends the machines, and with them what is left
