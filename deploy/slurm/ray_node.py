"""One node of a Slurm job's Ray cluster. study.sbatch runs it once on every node of the allocation (one srun
task per node). On the head node (the batch host) it starts Ray's head, waits until every node has joined,
runs the command and exits with the command's code; on the other nodes it starts a Ray worker that leaves
when the head is gone.

    python deploy/slurm/ray_node.py --head-node NODE --address IP:PORT --nodes N [--join-timeout S] -- COMMAND...

Not `ray symmetric-run` (ray/scripts/symmetric_run.py, Ray 2.60), which takes a node for the head only when
the address is one of its non-loopback interface addresses (an address from /etc/hosts such as 127.0.1.1 makes
every node a worker), exits 0 when `ray start` fails, gives the nodes 30 s to join, refuses a node where another
Ray runs, and ends with `ray stop`, which stops every Ray process of the user on the node. Here the head is the
node Slurm names, a `ray start` that fails before its node has joined fails the task (and `srun
--kill-on-bad-exit` the step), the join timeout is an argument, and each node stops only the Ray it started, on
ports of its own. A worker whose Ray ends after joining leaves the study to go on without it, as Tune does.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

# The study has ended (or saved its state) before a node stops: nothing to drain (Ray's default waits 30 s).
RAY_ENV = {**os.environ, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
HEAD_GONE_CHECKS = 3  # a worker leaves after this many failed checks of the head, 5 s apart


class NodeError(Exception):
    """This node cannot take its part: one line and exit code 1 (srun --kill-on-bad-exit then ends the step)."""

    code = 1


class JobError(NodeError):
    """The job script asked for something this node cannot give: exit code 2."""

    code = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head-node", required=True, help="the Slurm node that runs the head (the batch host)")
    parser.add_argument("--address", required=True, help="the head's IP:PORT, as every node reaches it")
    parser.add_argument("--nodes", type=int, required=True, help="nodes the head waits for, itself included")
    parser.add_argument("--join-timeout", type=float, default=600, help="seconds for every node to join (default 600)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command the head runs")
    args = parser.parse_args(argv)
    if args.command[:1] != ["--"] or len(args.command) < 2:
        parser.error("the command to run on the head goes after --")
    args.command = args.command[1:]
    return args


def resources(env: dict[str, str]) -> list[str]:
    """The CPUs and GPUs this node gives Ray: the task's CPUs and the GPUs Slurm allocated on this node."""
    if not env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        raise JobError("SLURM_CPUS_PER_TASK is unset: give the job `#SBATCH --cpus-per-task=<CPUs per node>`")
    cpus = int(env["SLURM_CPUS_PER_TASK"])
    usable = len(os.sched_getaffinity(0))
    if usable < cpus:  # Slurm >= 22.05: srun's steps no longer inherit --cpus-per-task; study.sbatch passes it on
        raise JobError(f"this task may run on {usable} CPU(s) but Ray would be told {cpus} (SLURM_CPUS_PER_TASK): "
                        "run srun with --cpus-per-task, or export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK first")
    # A count however the job asked (--gpus-per-node=4, --gres=gpu:4, --gres=gpu:a100:4); SLURM_GPUS_PER_NODE is
    # unset for --gres and typed ("a100:4") for a typed request (sbatch(1), srun(1): OUTPUT ENVIRONMENT VARIABLES).
    gpus = env.get("SLURM_GPUS_ON_NODE", "0")
    if not gpus.isdigit():
        raise JobError(f"SLURM_GPUS_ON_NODE={gpus!r} is not a GPU count (a number, 0 or more)")
    return [f"--num-cpus={cpus}", f"--num-gpus={gpus}"]


def ray_start(head: bool, address: str, node: str, env: dict[str, str]) -> list[str]:
    """The `ray start` command of this node, named as Slurm names it. Every port is this job's own: the GCS port
    the batch script chose,
    free ports for the services Ray would put on fixed ones (dashboard 8265, client server 10001, dashboard
    agent 52365), OS-assigned worker ports (not Ray's shared 10002-19999), and Ray's OS-assigned defaults for
    the rest (node manager, object manager, agent gRPC, runtime env agent, metrics)."""
    from ray._common.network_utils import find_free_port
    from ray._common.utils import get_default_ray_temp_dir

    ports: set[int] = set()
    while len(ports) < 3:  # distinct ports free on this node now
        ports.add(find_free_port())
    agent, dashboard, client = ports
    # The temp dir: this node's (RAY_TMPDIR, TMPDIR or /tmp, as the head picks it); a worker would take the head's.
    own = ["--block", f"--node-name={node}", f"--temp-dir={get_default_ray_temp_dir()}",
           f"--dashboard-agent-listen-port={agent}", "--min-worker-port=0", "--max-worker-port=0", *resources(env)]
    if head:
        ip, _, port = address.rpartition(":")
        return ["ray", "start", "--head", f"--node-ip-address={ip}", f"--port={port}", f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={client}", *own]
    return ["ray", "start", f"--address={address}", *own]  # the node's address: its route to the head (Ray's default)


def alive_nodes(gcs) -> list:
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    try:
        return list(gcs.get_all_node_info(timeout=5, state_filter=GcsNodeInfo.GcsNodeState.ALIVE).values())
    except Exception:  # the GCS is not up yet, or is gone
        return []


def answers(address: str) -> bool:
    """The GCS at address accepts connections (a refused or silent port: not up yet, or gone)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except OSError:
        return False


def stop(ray: subprocess.Popen) -> None:
    """This node's Ray only: `ray start --block` stops the processes it started on SIGTERM."""
    if ray.poll() is None:
        ray.terminate()
        try:
            ray.wait(60)
        except subprocess.TimeoutExpired:
            ray.kill()
            ray.wait()


def started(ray: subprocess.Popen, node: str) -> None:
    if ray.poll() is not None:
        raise NodeError(f"`ray start` on {node} exited with code {ray.returncode} (its output is above)")


def until(ready: Callable[[], bool], deadline: float, late: Callable[[], str], ray: subprocess.Popen | None,
          node: str) -> None:
    """Wait for ready(); fail when this node's `ray start` has ended, or with late() after the deadline."""
    while not ready():
        if ray is not None:
            started(ray, node)
        if time.monotonic() > deadline:
            raise NodeError(f"{late()} (JOIN_TIMEOUT in study.sbatch; each node's `ray start` output is above)")
        time.sleep(2)


def run_head(args: argparse.Namespace, node: str, ray: subprocess.Popen) -> int:
    from ray._raylet import GcsClient

    deadline = time.monotonic() + args.join_timeout
    # GcsClient would wait ~35 s in its constructor for a GCS that is not up, blind to `ray start` failing.
    until(lambda: answers(args.address), deadline, lambda: f"the Ray head did not answer at {args.address} within "
          f"{args.join_timeout:g} s", ray, node)
    gcs, nodes = GcsClient(address=args.address), []

    def joined() -> bool:
        nonlocal nodes
        alive = alive_nodes(gcs)
        if len(alive) != len(nodes):
            print(f"{len(alive)} of {args.nodes} nodes joined the Ray head at {args.address}", flush=True)
        nodes = alive
        return len(nodes) >= args.nodes

    until(joined, deadline, lambda: f"{len(nodes)} of {args.nodes} nodes joined the Ray head at {args.address} "
          f"within {args.join_timeout:g} s", ray, node)
    cpus = sum(n.resources_total.get("CPU", 0) for n in nodes)
    gpus = sum(n.resources_total.get("GPU", 0) for n in nodes)
    nodes.sort(key=lambda n: (not n.is_head_node, n.node_name))
    listed = ", ".join(f"{n.node_name} {n.node_manager_address}" + (" (head)" if n.is_head_node else "") for n in nodes)
    print(f"Ray cluster up: {listed}; {cpus:g} CPUs, {gpus:g} GPUs. Running: {shlex.join(args.command)}", flush=True)
    with subprocess.Popen(args.command) as command:
        for s in (signal.SIGTERM, signal.SIGINT):  # Slurm signals every process of the step: the command stops
            signal.signal(s, lambda signum, frame: None)  # as it chooses (the launcher saves Tune's state) first
        return command.wait()


def run_worker(args: argparse.Namespace, node: str) -> int:
    from ray._raylet import GcsClient

    deadline = time.monotonic() + args.join_timeout
    until(lambda: answers(args.address), deadline,
          lambda: f"the Ray head at {args.address} did not answer {node} within {args.join_timeout:g} s", None, node)
    gcs = GcsClient(address=args.address)
    ray = subprocess.Popen(ray_start(False, args.address, node, os.environ), env=RAY_ENV)
    try:
        until(lambda: any(n.node_name == node for n in alive_nodes(gcs)), deadline,
              lambda: f"{node} did not join the Ray head at {args.address} within {args.join_timeout:g} s", ray, node)
        misses = 0
        while misses < HEAD_GONE_CHECKS:
            time.sleep(5)
            if ray.poll() is not None:  # Tune carries on without this node (its trials resume elsewhere)
                print(f"warning: {node}: its Ray ended with code {ray.returncode} after joining; the study goes on "
                      "without this node", file=sys.stderr, flush=True)
                return 0
            misses = 0 if answers(args.address) else misses + 1
        return 0  # the head has ended the cluster: this node's part is done
    finally:
        stop(ray)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    for s in (signal.SIGTERM, signal.SIGINT):  # Slurm ending the step: stop this node's Ray on the way out
        signal.signal(s, lambda signum, frame: sys.exit(128 + signum))
    try:
        if node != args.head_node:
            return run_worker(args, node)
        ray = subprocess.Popen(ray_start(True, args.address, node, os.environ), env=RAY_ENV)
        try:
            return run_head(args, node, ray)
        finally:
            stop(ray)
    except NodeError as exc:
        print(f"error: {node}: {exc}", file=sys.stderr, flush=True)
        return exc.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
