"""cluster.yaml and the README's on-prem cluster file pass Ray's own cluster-config validation (what `ray up` runs),
and a sweep plans against the cluster that cluster.yaml's autoscaler can reach."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from torchmate_ray.tune.search.space import SweepSettings
from torchmate_ray.tune.sweep.resources import Node, launchable_nodes, plan_resources

ROOT = Path(__file__).resolve().parent.parent


def onprem_section() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### On-prem machines"):]
    return section[:section.index("\n## ")]


def readme_onprem() -> dict:
    """The README's on-prem cluster file."""
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", onprem_section(), re.S).group(1))


def readme_recipe() -> list[str]:
    """The commands of the README's on-prem recipe, comments dropped (tests/test_ray_up.py runs them)."""
    recipe = re.search(r"```bash\n(.*?)```", onprem_section(), re.S).group(1)
    return [shlex.join(shlex.split(line, comments=True)) for line in recipe.splitlines() if line.strip()]


FILES = [("cluster.yaml", lambda: yaml.safe_load((ROOT / "cluster.yaml").read_text()), "aws"),
         ("readme-onprem", readme_onprem, "local")]


@pytest.mark.parametrize("load, provider", [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_cluster_file_passes_rays_validation(load, provider):
    config = load()
    assert config["provider"]["type"] == provider
    validate_config(prepare_config(copy.deepcopy(config)))  # raises on any schema violation
    commands = " ".join(config["setup_commands"])
    assert "torch==2.14.1 torchvision==0.29.1" in commands and "-e ~/torchmate_ray" in commands
    assert all("RAY_AUTH_MODE=token" in " ".join(config[key])
               for key in ("head_start_ray_commands", "worker_start_ray_commands"))



def test_onprem_file_runs_the_cloud_files_commands():
    """What tests/test_ray_up.py runs for real is what cluster.yaml runs: the same setup (less the EFS mount) and
    start commands, so that a change to one shows up in the other."""
    cloud, onprem = yaml.safe_load((ROOT / "cluster.yaml").read_text()), readme_onprem()
    assert onprem["setup_commands"] == [command for command in cloud["setup_commands"] if "/mnt/shared" not in command]
    assert len(cloud["setup_commands"]) == len(onprem["setup_commands"]) + 1
    for key in ("head_start_ray_commands", "worker_start_ray_commands", "file_mounts", "rsync_exclude"):
        assert onprem[key] == cloud[key], key


# --- plans against an autoscaling cluster, from its autoscaler's config ------------------------------------------
def bootstrap_config() -> dict:
    """cluster.yaml as `ray up` hands it to the head (~/ray_bootstrap_config.yaml): each node type's CPUs and GPUs
    filled in from its instance type (a g5.2xlarge has 8 vCPUs and one A10G)."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["available_node_types"]["gpu_worker"]["resources"] = {"CPU": 8, "GPU": 1}
    return config


HEAD = Node(0, 0, head=True)
G5 = Node(8, 1)


@pytest.mark.parametrize("alive, launchable", [
    ((HEAD,), (G5,) * 4),                 # min_workers: 0, nothing running: all four can come
    ((HEAD, G5), (G5,) * 3),              # one up: three more
    ((HEAD, G5, G5, G5, G5), ()),         # full
    ((HEAD, Node(2, 0)), (G5,) * 3),      # a node of another shape, joined by hand, counts against max_workers
], ids=["none-up", "one-up", "full", "foreign-node"])
def test_launchable_nodes_from_the_bootstrap_config(alive, launchable):
    assert launchable_nodes(bootstrap_config(), alive) == launchable


def test_node_type_whose_resources_are_not_filled_in_is_not_counted_on():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())  # gpu_worker's resources: {} (read from AWS)
    assert launchable_nodes(config, (HEAD,)) == ()


def test_plan_of_the_shipped_cluster_counts_the_nodes_the_autoscaler_can_add():
    settings = SweepSettings(resources={"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": None})
    plan = plan_resources(settings, (HEAD,), 50, launchable_nodes(bootstrap_config(), (HEAD,)))
    assert plan.gpus_per_worker == 0.125 and plan.max_concurrent == 32  # 8 trials on each of 4 GPUs
    assert plan.grows and plan.autoscaled
    assert plan.describe()[0] == "cluster: 1 node(s) (0 CPUs, 0 GPUs) now, up to 5 node(s) (32 CPUs, 4 GPUs) as " \
                                 "the autoscaler adds nodes"
    assert plan.describe()[2] == "trials at once: 32 (at full size)"
    fixed = plan_resources(settings, (HEAD, G5), 50)  # no autoscaler: the alive nodes, as before
    assert not fixed.autoscaled and fixed.max_concurrent == 8 and fixed.describe()[0] == \
        "cluster: 2 node(s) (8 CPUs, 1 GPUs)"


@pytest.mark.parametrize("resources, line", [
    ({"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 2}, "sweep.resources.gpus_per_worker: a trial needs 2 "
     "GPU(s) but the largest node, alive or that the autoscaler can launch, has 1; lower gpus_per_worker "
     "(--gpus-per-worker 0 for CPU) or join a cluster with GPUs"),
    ({"workers": 1, "cpus_per_worker": 16, "gpus_per_worker": 0}, "sweep.resources.cpus_per_worker: a trial needs 16 "
     "CPU(s) but the largest node, alive or that the autoscaler can launch, has 8; lower cpus_per_worker "
     "(--cpus-per-worker)"),
    ({"workers": 5, "cpus_per_worker": 1, "gpus_per_worker": 1}, "sweep.resources.workers: 5 workers x (1 CPU, 1 GPU) "
     "need room for 5 workers, but the cluster holds 4 (32 CPUs, 4 GPUs on 5 node(s)); use at most 4 workers per "
     "trial or fewer CPUs/GPUs per worker"),
], ids=["gpus", "cpus", "workers"])
def test_request_no_node_type_can_hold_is_refused(resources, line):
    from torchmate_ray.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        plan_resources(SweepSettings(resources=resources), (HEAD,), 4, launchable_nodes(bootstrap_config(), (HEAD,)))
    assert str(refused.value) == line


def test_trial_on_a_node_that_cannot_see_the_experiment_fails_at_once_in_one_line(tmp_path):
    """A node that joined after the sweep's storage check (an autoscaled one) is held to it when a trial starts:
    without the experiment's files there, the trial would write its checkpoints on that node alone."""
    import ray

    from torchmate_ray.tune.records.files import INVOCATION_FILE
    from torchmate_ray.tune.trial.setup import StorageNotShared, check_storage_visible

    experiment = tmp_path / "exp"
    with pytest.raises(StorageNotShared) as refused:
        check_storage_visible(str(experiment))
    assert str(refused.value) == (f"node {ray.util.get_node_ip_address()} cannot see the experiment's storage: "
                                  f"{experiment / INVOCATION_FILE} is not there; --storage-path must be a directory "
                                  f"that every node shares (NFS, EFS) at the same path")
    assert not experiment.exists()  # nothing made on this node
    experiment.mkdir()
    (experiment / INVOCATION_FILE).write_text("{}")
    check_storage_visible(str(experiment))
