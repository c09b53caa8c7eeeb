"""Where trials run: resources per trial, the Ray cluster address, and connecting to Ray."""

from __future__ import annotations

import os
import socket
import sys

from errors import UsageError, invalid
from study.config import Config


def gpu_missing(cfg: Config) -> bool:
    """A GPU request for a local Ray on a machine where no GPU is visible."""
    import torch

    return bool(cfg.resources.gpu) and not cfg.ray.address and not torch.cuda.is_available()


def check_resources(cfg: Config) -> dict[str, float]:
    """Tune resources per trial. A GPU request for a local Ray with no GPU visible fails (or, when asked,
    falls back to CPU); a cluster is not checked, as its autoscaler may still add GPU nodes."""
    import torch

    cpu, gpu, local = cfg.resources.cpu, cfg.resources.gpu, not cfg.ray.address
    if gpu_missing(cfg):
        if not cfg.resources.allow_cpu_fallback:
            raise invalid("resources.gpu", gpu, "0 where no GPU is visible, as here (preset=smoke); or run these "
                                                "trials on CPU with resources.allow_cpu_fallback=true")
        print(f"note: no GPU visible, resources.gpu={gpu} becomes 0 (resources.allow_cpu_fallback=true)", file=sys.stderr)
        gpu = 0
    if local:  # a local Ray has what this machine has: more would stay pending for ever
        cpus = cfg.ray.num_cpus or os.cpu_count() or 1
        if cpu > cpus:
            raise invalid("resources.cpu", cpu, f"at most {cpus}, the CPUs of the local Ray (ray.num_cpus, else this "
                                                "machine's cores); or join a cluster with ray.address")
        gpus = torch.cuda.device_count() if gpu else 0
        if gpu > gpus:
            raise invalid("resources.gpu", gpu, f"at most {gpus}, the GPUs visible to the local Ray; or join a "
                                                "cluster with ray.address")
    return {"cpu": cpu, "gpu": gpu}


def node_name() -> str:
    """This Ray node, as a user finds it: host, IP and node id (which tells apart nodes that share a host)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    ip = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id)  # as `ray status` lists it
    return f"{socket.gethostname()} ({ip}, node {node_id[:12]})"


def check_address(cfg: Config) -> None:
    """A cluster address that does not answer fails in seconds, before anything is written (ray.init would retry for minutes)."""
    address = cfg.ray.address
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise UsageError(f"ray.address={address!r} is unreachable: no Ray head answers there "
                         "(start one with `ray start --head`, or use ray.address=null for a local Ray)") from None


def connect(cfg: Config) -> str | None:
    """Join the cluster (ray.address), or start a local Ray for this study; once per process. The address of its
    dashboard (host:port), if one runs."""
    import ray

    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep the driver's working directory (Tune passes it on)
    if ray.is_initialized():  # joined already, to check the nodes' storage (study.storage.check_nodes)
        return ray.init(ignore_reinit_error=True).dashboard_url
    address = cfg.ray.address
    if not address:  # "local" never attaches to a stale cluster left by an earlier `ray start`
        return ray.init(address="local", num_cpus=cfg.ray.num_cpus).dashboard_url
    try:
        return ray.init(address=address).dashboard_url
    except ConnectionError as exc:  # e.g. address=auto with no cluster running
        raise invalid("ray.address", address, f"a running Ray cluster's ({str(exc).strip().splitlines()[0]})") from None
