"""cluster.yaml and the README's on-prem cluster file pass Ray's own cluster-config validation (what `ray up` runs)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent


def readme_onprem() -> dict:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### On-prem machines"):]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


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

