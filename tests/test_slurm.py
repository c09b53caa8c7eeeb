"""deploy/slurm/study.sbatch, run unchanged on a simulated Slurm allocation. tests/slurm_shims stand in for
srun (Slurm >= 22.05: a step gets only the CPUs it asks for), scontrol (a requeue is recorded, and the test
runs the job again as Slurm would) and each node's hostname (node0 at 127.0.0.2, node1 at 127.0.0.3; the
batch host's `hostname --ip-address` is 127.0.1.1, as /etc/hosts makes it on many Debian/Ubuntu hosts). The
SLURM_* variables are the ones sbatch and srun set. The Ray nodes are real, on loopback, each with its own
Ray temp dir, while sockets hold the ports Ray's services default to, as another job's Ray on the node would.

A job runs in its own process group, which is killed at the end; the ray shim refuses `ray stop` (it would
stop every Ray process of the user on this machine) and records it, and no test may see one."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.test_faults import TINY, kill_group, rows, wait_for

SBATCH = REPO / "deploy" / "slurm" / "study.sbatch"
SHIMS = Path(__file__).with_name("slurm_shims")
HOSTS = {"node0": "127.0.0.2", "node1": "127.0.0.3"}
CPUS = min(2, len(os.sched_getaffinity(0)))  # per task: more than srun's default of one, where the machine has it
# The fixed ports of Ray's services: GCS, dashboard, client server, dashboard agent, the first worker ports.
RAY_DEFAULT_PORTS = (6379, 8265, 10001, 52365, 10002, 10003)


@pytest.fixture
def ray_default_ports() -> Iterator[None]:
    """Another job's Ray on the node: every default port taken (one already in use is taken all the same)."""
    with contextlib.ExitStack() as stack:
        for port in RAY_DEFAULT_PORTS:
            sock = stack.enter_context(socket.socket())
            with contextlib.suppress(OSError):
                sock.bind(("", port))
                sock.listen()
        yield


def allocation(tmp_path: Path, sim: str, nodes: list[str], job_id: int, **variables: str) -> dict[str, str]:
    """The batch script's environment on the first node of a job on these nodes, as sbatch sets it. The nodes'
    own dirs (their Ray temp dirs: short, for Ray's socket paths) and the records of the shims are in sim."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "SRUN_", "RAY_", "STUDY_ROOT"))}
    (tmp_path / "shared").mkdir(exist_ok=True)
    return {**base, "PATH": f"{SHIMS}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
            "SLURM_JOB_ID": str(job_id), "SLURM_JOB_NAME": "label-noise", "SLURM_JOB_NODELIST": ",".join(nodes),
            "SLURM_JOB_NUM_NODES": str(len(nodes)), "SLURM_CPUS_PER_TASK": str(CPUS), "SLURMD_NODENAME": nodes[0],
            "SLURM_SUBMIT_DIR": str(REPO), "VENV": sys.prefix, "STUDY_ROOT": str(tmp_path / "shared"),
            "SIM_DIR": sim, "SIM_HOSTS": " ".join(f"{n}={ip}" for n, ip in HOSTS.items()),
            "SIM_RAY": str(Path(sys.executable).with_name("ray")), **variables}


def run_dir(env: dict[str, str]) -> Path:
    return Path(env["STUDY_ROOT"]) / "runs" / f"label-noise-{env['SLURM_JOB_ID']}"


@contextlib.contextmanager
def batch(env: dict[str, str], args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """The batch script as Slurm starts it, in a process group of its own that is killed at the end; its output
    is appended to log (--open-mode=append: a requeued job's output follows the first one's)."""
    with log.open("a") as out:
        proc = subprocess.Popen(["bash", str(SBATCH), *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        kill_group(proc)


def job(env: dict[str, str], args: list[str], log: Path) -> int:
    """The batch script run to its end; its exit code."""
    with batch(env, args, log) as proc:
        return proc.wait(timeout=600)


def requeued(sim: str) -> list[str]:
    """The jobs `scontrol requeue` was asked to requeue."""
    path = Path(sim) / "requeued"
    return path.read_text().split() if path.exists() else []


def no_ray_stopped(sim: str) -> bool:
    return not (Path(sim) / "ray-stop").exists()


@pytest.mark.slow
def test_one_node_time_warning_checkpoints_requeues_and_the_same_command_finishes(
        data_root: Path, tmp_path: Path, ray_tmpdir: str, ray_default_ports: None) -> None:
    env, log, epochs = allocation(tmp_path, ray_tmpdir, ["node0"], 4201), tmp_path / "job.out", 40
    args = [*TINY, "grid.noise.alpha=[0,1]", "grid.train.lr=[0.5]", f"train.epochs={epochs}", "max_concurrent_trials=1"]
    with batch(env, args, log) as proc:
        # The time warning once one trial has finished and the other is under way: Slurm signals the batch shell.
        wait_for(lambda: sorted(min(len(r), epochs) // epochs for r in rows(run_dir(env)).values()) == [0, 1],
                 proc, log)
        os.kill(proc.pid, signal.SIGUSR1)
        first = proc.wait(timeout=300)
    text = log.read_text()
    assert first == 128 + signal.SIGTERM, text[-3000:]  # the launcher stopped by SIGTERM, its state saved
    assert f"Ray cluster up: node0 127.0.0.2 (head); {CPUS} CPUs, 0 GPUs." in text  # the task's CPUs, not srun's one
    assert requeued(ray_tmpdir) == ["4201"] and "requeueing job 4201" in text
    before = {name: len(r) for name, r in rows(run_dir(env)).items()}
    assert not (run_dir(env) / "trials.csv").exists()

    assert job(env, args, log) == 0, log.read_text()[-3000:]  # the requeued job: the same command, the same id
    assert "holds this study: continuing it" in log.read_text()
    trials = pd.read_csv(run_dir(env) / "trials.csv")
    assert (trials["status"] == "ok").all() and (trials["epochs"] == epochs).all() and len(trials) == 2
    after = rows(run_dir(env))
    (done,) = [name for name, n in before.items() if n == epochs]
    (stopped,) = [name for name, n in before.items() if n < epochs]
    assert len(after[done]) == epochs  # the finished trial was not run again
    restarts = [r["epoch"] for r in after[stopped] if r["iterations_since_restore"] == 1]
    assert len(restarts) == 2 and restarts[1] > 1  # the stopped one went on from its checkpoint
    assert requeued(ray_tmpdir) == ["4201"] and no_ray_stopped(ray_tmpdir)


@pytest.mark.slow
def test_two_nodes_head_on_the_batch_host_with_the_allocations_gpus(
        data_root: Path, tmp_path: Path, ray_tmpdir: str, ray_default_ports: None) -> None:
    # A typed GPU request: SLURM_GPUS_PER_NODE is "a100:1", SLURM_GPUS_ON_NODE the count (no GPU trial runs).
    env = allocation(tmp_path, ray_tmpdir, ["node0", "node1"], 4202, SLURM_GPUS_PER_NODE="a100:1", SLURM_GPUS_ON_NODE="1")
    log = tmp_path / "job.out"
    assert job(env, [*TINY, "grid.noise.alpha=[0,1]", "grid.train.lr=[0.5]", "train.epochs=2"], log) == 0, \
        log.read_text()[-3000:]
    text = log.read_text()
    # The worker's address is its route to the head (on loopback, 127.0.0.1); the head is node0's 127.0.0.2.
    cluster = re.search(r"^Ray cluster up: (.*); (\d+) CPUs, (\d+) GPUs\.", text, re.M)
    assert cluster and cluster[1] == "node0 127.0.0.2 (head), node1 127.0.0.1", text[-3000:]
    assert (int(cluster[2]), int(cluster[3])) == (2 * CPUS, 2)
    trials = pd.read_csv(run_dir(env) / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "ok").all() and (trials["epochs"] == 2).all()
    assert not requeued(ray_tmpdir) and no_ray_stopped(ray_tmpdir)


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [["node0"], ["node0", "node1"]], ids=["head", "worker"])
def test_a_failed_ray_start_fails_the_job_with_nothing_run(data_root: Path, tmp_path: Path, ray_tmpdir: str,
                                                           nodes: list[str]) -> None:
    broken = Path(ray_tmpdir) / nodes[-1]
    broken.mkdir()
    (broken / "tmp").touch()  # the node's Ray temp dir cannot be made: its `ray start` fails
    env, log = allocation(tmp_path, ray_tmpdir, nodes, 4203), tmp_path / "job.out"
    code = job(env, [*TINY, "train.epochs=1"], log)
    text = log.read_text()
    assert code != 0, text[-3000:]  # FAILED, not COMPLETED (1, or 143 where srun ended the head with SIGTERM)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {broken.name}: `ray start` on {broken.name} exited with code 1 (its output is above)"], \
        errors
    assert "run dir:" not in text and not run_dir(env).exists()  # no study began
    assert not requeued(ray_tmpdir) and no_ray_stopped(ray_tmpdir)


def test_a_step_without_the_jobs_cpus_per_task_is_refused(tmp_path: Path, ray_tmpdir: str) -> None:
    """Slurm >= 22.05: a step srun starts without --cpus-per-task runs on one CPU, whatever the job asked."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU here: a step of one CPU is all the job could have")
    env = {**allocation(tmp_path, ray_tmpdir, ["node0"], 4204), "SLURM_CPUS_PER_TASK": "2"}
    node = [sys.executable, str(REPO / "deploy" / "slurm" / "ray_node.py"), "--head-node", "node0", "--address",
            "127.0.0.2:1", "--nodes", "1", "--", "true"]
    result = subprocess.run(["srun", "--nodes=1", "--ntasks-per-node=1", *node], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: node0: this task may run on 1 CPU(s) but Ray would be told 2 (SLURM_CPUS_PER_TASK): run srun with "
        "--cpus-per-task, or export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK first"]
