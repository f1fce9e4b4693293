"""cluster.yaml and the README's on-prem cluster file pass Ray's own cluster-config validation (what `ray up` runs)."""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

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
