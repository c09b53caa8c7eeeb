"""Fault tolerance with real processes on loopback: a trial killed mid-run, the driver killed mid-study,
a worker node of a 2-node cluster killed mid-study. Every process a test starts runs in its own session
(process group), and the test kills that group by its id at the end: never `ray stop`, which would stop
other users' Ray instances too."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.conftest import REPO, free_ports
from tests.helpers import LAUNCHER

RAY = str(Path(sys.executable).with_name("ray"))
TINY = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[perceptron]",
        "data.n_clean=500", "data.n_test=500", "figures=[]"]

pytestmark = pytest.mark.slow


@pytest.fixture
def env(data_root: Path, ray_tmpdir: str) -> dict[str, str]:
    """Subprocess environment with its own short Ray temp dir."""
    return {**os.environ, "PYTHONPATH": str(REPO), "STUDY_DATA_ROOT": str(data_root), "RAY_TMPDIR": ray_tmpdir}


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A process in its own session; on exit its whole group (Ray processes it started included) is killed."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process, its group and every descendant (Ray starts some workers in groups of their own)."""
    descendants: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        descendants = psutil.Process(proc.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait()


def rows(run_dir: Path) -> dict[str, list[dict]]:
    """Every result Tune has written so far, per trial folder that has one."""
    out = {}
    for path in run_dir.glob("tune/*/result.json"):  # trial folders only: old checkpoints vanish while we look
        lines = path.read_text().split("\n")[:-1]  # the last piece may be a line still being written
        if lines:
            out[path.parent.name] = [json.loads(line) for line in lines]
    return out


def wait_for(condition: Callable[[], object], proc: subprocess.Popen, log: Path, timeout: float = 240) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, f"process ended early:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")


def finished(proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    rc = proc.wait(timeout)
    assert rc == 0, log.read_text()[-3000:]


def test_trial_killed_once_resumes_from_its_checkpoint(env: dict[str, str], tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    epochs = 40  # long enough that the kill lands mid-trial
    args = [*LAUNCHER, *TINY, "grid.noise.alpha=[0]", "grid.train.lr=[0.5]", f"train.epochs={epochs}", "ray.num_cpus=1",
            "max_failures=1", f"run_dir={run_dir}"]
    with started(args, env, log) as proc:
        at = wait_for(lambda: next((r for rs in rows(run_dir).values() for r in rs if r["epoch"] >= 2), None), proc, log)
        os.kill(at["pid"], signal.SIGKILL)  # Tune reports each trial's pid: kill its actor process, as an OOM kill would
        finished(proc, log)
    trials = pd.read_csv(run_dir / "trials.csv")
    assert trials["status"].tolist() == ["ok"] and trials["epochs"].tolist() == [epochs]
    (history,) = rows(run_dir).values()
    restarts = [r["epoch"] for r in history if r["iterations_since_restore"] == 1]
    assert restarts[0] == 1 and len(restarts) == 2 and restarts[1] > 1  # the retry went on from a checkpoint
    seen = pd.read_csv(run_dir / "epochs.csv")["epoch"].tolist()
    # Every epoch once, in order. The one epoch in flight at the kill may lack its row: its checkpoint can
    # be saved before Tune records its result (seen once under load: the retry went on from epoch 3's
    # checkpoint while epoch 3's row was gone).
    assert seen == sorted(set(seen)) and seen[-1] == epochs and len(seen) >= epochs - 1, seen
    assert set(range(1, epochs + 1)) - set(seen) <= {restarts[1] - 1}


def test_driver_killed_then_resume_finishes_without_rerunning(env: dict[str, str], tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    epochs = 3
    args = [*LAUNCHER, *TINY, "grid.noise.alpha=[0,1]", "grid.train.lr=[0.1,0.5]", f"train.epochs={epochs}",
            "ray.num_cpus=1", "max_concurrent_trials=1", f"run_dir={run_dir}"]
    with started(args, env, log) as proc:
        wait_for(lambda: sum(rs[-1]["epoch"] == epochs for rs in rows(run_dir).values()) >= 2, proc, log)
        kill_group(proc)  # SIGKILL: the driver and the local Ray it started die at once
    before = {name: len(rs) for name, rs in rows(run_dir).items()}
    done_before = {name for name, rs in rows(run_dir).items() if rs[-1]["epoch"] == epochs}
    assert not (run_dir / "trials.csv").exists()

    with started([*LAUNCHER, f"resume={run_dir}"], env, log) as proc:
        finished(proc, log)
    after = rows(run_dir)
    assert all(len(after[name]) == before[name] for name in done_before)  # finished trials were not re-run
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "ok").all() and (trials["epochs"] == epochs).all()
    assert sorted(zip(trials["alpha"], trials["lr"])) == [(0, 0.1), (0, 0.5), (1, 0.1), (1, 0.5)]


def up(node: subprocess.Popen, log: Path) -> None:
    wait_for(lambda: "Ray runtime started" in log.read_text(), node, log, timeout=120)


def test_worker_node_killed_mid_study(env: dict[str, str], tmp_path: Path) -> None:
    gcs, client, head_agent, worker_agent, head_metrics, worker_metrics = free_ports(6)
    node = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1"]
    head = [RAY, "start", "--head", *node, "--include-dashboard=false", f"--port={gcs}", f"--temp-dir={env['RAY_TMPDIR']}",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={head_agent}",
            f"--metrics-export-port={head_metrics}"]
    worker = [RAY, "start", *node, f"--address=127.0.0.1:{gcs}", '--resources={"worker_node": 1}',
              f"--dashboard-agent-listen-port={worker_agent}", f"--metrics-export-port={worker_metrics}"]
    run_dir, log, epochs = tmp_path / "run", tmp_path / "launch.log", 150  # long enough for both nodes to start actors
    args = [*LAUNCHER, *TINY, "grid.noise.alpha=[0,1]", "grid.train.lr=[0.1,0.5]", f"train.epochs={epochs}",
            f"ray.address=127.0.0.1:{gcs}", "max_failures=3", f"run_dir={run_dir}"]
    env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}  # as cluster.yaml does
    with started(head, env, tmp_path / "head.log") as head_proc:
        up(head_proc, tmp_path / "head.log")
        with started(worker, env, tmp_path / "worker.log") as worker_proc, started(args, env, log) as proc:
            up(worker_proc, tmp_path / "worker.log")
            lost = wait_for(lambda: running_on(worker_proc.pid, run_dir, epochs), proc, log)
            kill_group(worker_proc)  # the worker node dies: its raylet and every trial on it at once
            finished(proc, log)
        assert head_proc.poll() is None
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "ok").all() and (trials["epochs"] == epochs).all()
    history = rows(run_dir)[lost]
    assert len({r["node_id"] for r in history}) == 2  # the trial that lost its node went on on the head...
    restarts = [r["epoch"] for r in history if r["iterations_since_restore"] == 1]
    assert len(restarts) == 2 and restarts[1] > 1  # ...from its checkpoint


def running_on(node: int, run_dir: Path, epochs: int) -> str | None:
    """A trial mid-run in a process of this node (a descendant of its `ray start`), if any."""
    for name, rs in rows(run_dir).items():
        with contextlib.suppress(psutil.NoSuchProcess):
            if rs[-1]["epoch"] < epochs and node in {p.pid for p in psutil.Process(rs[-1]["pid"]).parents()}:
                return name
    return None
