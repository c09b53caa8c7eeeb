"""Where trials run: resources per trial, the Ray cluster address, and connecting to Ray."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from loaders.errors import UsageError


def check_resources(cfg: dict[str, Any]) -> dict[str, float]:
    """Tune resources per trial. A GPU request for a local Ray with no GPU visible fails (or, when asked,
    falls back to CPU); a cluster is not checked, as its autoscaler may still add GPU nodes."""
    import torch

    cpu, gpu = cfg["resources"]["cpu"], cfg["resources"]["gpu"]  # their types and ranges: study.schema
    if gpu and not cfg["ray"]["address"] and not torch.cuda.is_available():
        if not cfg["resources"]["allow_cpu_fallback"]:
            raise UsageError(f"resources.gpu={gpu} but no GPU is visible here: use resources.gpu=0 (preset=smoke), "
                             "or resources.allow_cpu_fallback=true to run these trials on CPU")
        print(f"note: no GPU visible, resources.gpu={gpu} becomes 0 (resources.allow_cpu_fallback=true)", file=sys.stderr)
        gpu = 0
    if not cfg["ray"]["address"]:  # a local Ray has what this machine has: more would stay pending for ever
        cpus = cfg["ray"]["num_cpus"] or os.cpu_count() or 1
        if cpu > cpus:
            raise UsageError(f"resources.cpu={cpu!r} is invalid: it must be at most {cpus}, the CPUs of the local Ray "
                             "(ray.num_cpus, else this machine's cores); or join a cluster with ray.address")
        gpus = torch.cuda.device_count() if gpu else 0
        if gpu > gpus:
            raise UsageError(f"resources.gpu={gpu!r} is invalid: it must be at most {gpus}, the GPUs visible to the "
                             "local Ray; or join a cluster with ray.address")
    return {"cpu": cpu, "gpu": gpu}


def node_name() -> str:
    """This Ray node, as a user finds it: host, IP and node id (which tells apart nodes that share a host)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    ip = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)  # as `ray status` lists it
    return f"{socket.gethostname()} ({ip}, node {node_id[:12]})"


def check_address(cfg: dict[str, Any]) -> None:
    """A cluster address that does not answer fails in seconds, before anything is written (ray.init would retry for minutes)."""
    address = cfg["ray"]["address"]
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise UsageError(f"ray.address={address!r} is unreachable: no Ray head answers there "
                         "(start one with `ray start --head`, or use ray.address=null for a local Ray)") from None


def connect(cfg: dict[str, Any]) -> None:
    import ray

    address = cfg["ray"]["address"]
    if ray.is_initialized():  # joined already, to check the nodes' storage (study.storage.check_nodes)
        return
    if not address:  # "local" never attaches to a stale cluster left by an earlier `ray start`
        ray.init(address="local", num_cpus=cfg["ray"]["num_cpus"],
                 runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}})
        return
    try:
        ray.init(address=address)
    except ConnectionError as exc:  # e.g. address=auto with no cluster running
        raise UsageError(f"ray.address={address!r}: {str(exc).strip().splitlines()[0]}") from None
