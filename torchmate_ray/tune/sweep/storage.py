"""The experiment's storage on a cluster: every node must see it (ray#37177). Checked on the nodes alive at the
sweep's start here; a node that joins later is checked by each trial that starts on it
(``trial/setup.check_storage_visible``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import ray

from torchmate_ray.errors import ConfigError


def check_storage_shared(path: Path) -> None:
    """Refuse a storage path that some node of the cluster cannot write, or whose files this node cannot see.

    Trials write checkpoints from whichever node runs them and a resumed sweep reads them back from
    here (ray#37177): on a multi-node cluster the experiment must live on shared storage. Leaves no
    directory that was not there (a refused sweep leaves no experiment).
    """
    created = not path.exists()
    try:
        _check_storage_shared(path, path / ".storage_check")
    finally:
        shutil.rmtree(path if created else path / ".storage_check", ignore_errors=True)


def _check_storage_shared(path: Path, probe: Path) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe.mkdir(parents=True, exist_ok=True)
    nodes = [(n["NodeID"], n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")]
    write = ray.remote(num_cpus=0)(_write_probe)
    refs = [write.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(
        str(probe), node_id) for node_id, _ in nodes]
    for (node_id, ip), error in zip(nodes, ray.get(refs, timeout=120)):
        if error:
            raise ConfigError("--storage-path", f"node {ip} cannot write {path}: {error}; use a directory that "
                              f"every node shares (NFS, EFS) at the same path")
        if not (probe / node_id).is_file():
            raise ConfigError("--storage-path", f"{path} is not shared: what node {ip} writes there does not appear "
                              f"on this node; use a directory that every node shares (NFS, EFS) at the same path")


def _write_probe(directory: str, name: str) -> str | None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / name).write_text(name)
        return None
    except OSError as err:
        return str(err)
