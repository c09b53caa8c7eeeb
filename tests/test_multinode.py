"""Multi-node behaviour on a loopback Ray cluster (real processes, nothing mocked): a worker node with a
different HOME and its own Ray temp dir reads every path from the one storage root the driver resolved; a
node that cannot see the root is refused before anything is written; a trial holding a GPU slot on a node
without CUDA fails with one line naming the node instead of training on CPU."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import REPO, free_ports
from tests.test_faults import RAY, TINY, started, up

pytestmark = pytest.mark.slow


@pytest.fixture
def env(data_root: Path, ray_tmpdir: str) -> dict[str, str]:
    """A token-auth cluster's environment (as cluster.yaml sets it), its own Ray temp dir, no inherited root."""
    base = {k: v for k, v in os.environ.items() if k not in ("STUDY_ROOT", "XDG_CACHE_HOME")}
    return {**base, "PYTHONPATH": str(REPO), "STUDY_DATA_ROOT": str(data_root), "RAY_TMPDIR": ray_tmpdir,
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@contextlib.contextmanager
def cluster(env: dict[str, str], tmp: Path, head_args: list[str], worker_env: dict[str, str] | None = None,
            worker_prefix: list[str] | None = None) -> Iterator[str]:
    """A head and (worker_env given) one worker node on loopback; yields the GCS address."""
    gcs, client, head_agent, worker_agent, head_metrics, worker_metrics = free_ports(6)
    node = ["--block", "--node-ip-address=127.0.0.1"]
    head = [RAY, "start", "--head", *node, *head_args, "--include-dashboard=false", f"--port={gcs}",
            f"--temp-dir={env['RAY_TMPDIR']}", f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={head_agent}", f"--metrics-export-port={head_metrics}"]
    with contextlib.ExitStack() as stack:
        head_proc = stack.enter_context(started(head, env, tmp / "head.log"))
        up(head_proc, tmp / "head.log")
        if worker_env is not None:
            worker = [*(worker_prefix or []), RAY, "start", *node, "--num-cpus=1", f"--address=127.0.0.1:{gcs}",
                      f"--temp-dir={worker_env['RAY_TMPDIR']}", f"--dashboard-agent-listen-port={worker_agent}",
                      f"--metrics-export-port={worker_metrics}"]
            worker_proc = stack.enter_context(started(worker, worker_env, tmp / "worker.log"))
            up(worker_proc, tmp / "worker.log")
        yield f"127.0.0.1:{gcs}"


def other_node_env(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """A worker node's environment: another HOME (so another ~/.cache) and its own Ray temp dir."""
    home, ray_tmp = tmp / "home2", Path(env["RAY_TMPDIR"] + "w")
    home.mkdir()
    ray_tmp.mkdir()
    return {**env, "HOME": str(home), "RAY_TMPDIR": str(ray_tmp)}


def study(args: list[str], env: dict[str, str], log: Path) -> subprocess.CompletedProcess:
    with log.open("w") as out:
        return subprocess.run([sys.executable, "-m", "study.launch", *args], env=env, cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, timeout=240)


def test_worker_with_another_home_reads_everything_from_the_shared_root(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "shared"
    # exp=confusion's artifact, where the storage root keeps it: the worker must read it there, not in its HOME.
    (root / "confusion").mkdir(parents=True)
    np.save(root / "confusion" / "mnist.npy", np.random.default_rng(0).integers(0, 50, (10, 10)))
    worker_env = other_node_env(env, tmp_path)
    log = tmp_path / "launch.log"
    args = ["exp=structured", "preset=smoke", "data.download=false", "data.backend=ffcv", "data.n_clean=200",
            "data.n_test=200", "noise.alpha=2", "train.epochs=1", "figures=[]", "grid.noise.delta=[0.2]",
            "grid.noise.order=[confusing,reverse]"]
    try:
        # The head takes no trials (CPU 0, as in cluster.yaml): every trial runs on the worker.
        with cluster(env, tmp_path, ["--num-cpus=0"], worker_env) as address:
            result = study([*args, f"ray.address={address}"], {**env, "STUDY_ROOT": str(root)}, log)
    finally:
        shutil.rmtree(worker_env["RAY_TMPDIR"], ignore_errors=True)
    text = log.read_text()
    assert result.returncode == 0, text[-3000:]
    run_dir = Path(re.search(r"^run dir: (.+)$", text, re.M).group(1))
    assert run_dir.parent == root / "runs"  # runs under the named root, not ./runs
    written = re.findall(r"writing (\S+\.beton)", text)  # the driver's line, or a worker's forwarded one
    assert len(written) == 1 and Path(written[0]).parent == root / "ffcv", written  # once, by the driver
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "ok").all() and (trials["epochs"] == 1).all()
    assert trials["node_id"].nunique() == 1  # the worker (the head has no CPU for trials)
    assert not any(Path(worker_env["HOME"]).rglob("*label-noise-study*"))  # nothing under the worker's own HOME


def blind_mount(root: Path) -> list[str] | None:
    """A command prefix that runs a process in a mount namespace where root is an empty tmpfs: a node that
    has no access to the driver's file system at that path. None where mount namespaces are unavailable."""
    prefix = ["unshare", "--mount", "--propagation", "private"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*prefix, "mount", "-t", "tmpfs", "none", str(root)], capture_output=True)
    if shutil.which("unshare") is None or probe.returncode:
        return None
    return [*prefix, "sh", "-c", f'mount -t tmpfs none "{root}" && exec "$0" "$@"']


def test_node_that_cannot_see_the_root_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    prefix = blind_mount(root)
    if prefix is None:
        pytest.skip("no mount namespaces here (unshare --mount): cannot give one node its own file system")
    worker_env = other_node_env(env, tmp_path)
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    try:
        with cluster(env, tmp_path, ["--num-cpus=1"], worker_env, prefix) as address:
            result = study([*TINY, f"ray.address={address}", f"storage.root={root}", f"run_dir={run_dir}"], env, log)
    finally:
        shutil.rmtree(worker_env["RAY_TMPDIR"], ignore_errors=True)
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    assert result.returncode == 2, log.read_text()[-3000:]
    assert len(errors) == 1 and f"storage.root='{root}' is not visible on node" in errors[0], errors
    assert re.search(r" on node \S+ \(\S+, node [0-9a-f]{12}\) \(No such file or directory at ", errors[0]), errors
    assert not run_dir.exists() and not list(root.iterdir())  # nothing written, the token removed


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a node without CUDA")
def test_gpu_trial_on_a_node_without_cuda_fails_naming_it(env: dict[str, str], tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    # The head advertises a GPU it does not have: Ray places the trial there, torch finds no CUDA.
    with cluster(env, tmp_path, ["--num-cpus=1", "--num-gpus=1"]) as address:
        result = study([*TINY, "grid.noise.alpha=[0]", "resources.gpu=0.5", "train.device=auto", "max_failures=0",
                        f"ray.address={address}",
                        f"storage.root={tmp_path / 'shared'}", f"run_dir={run_dir}"], env, log)
    assert result.returncode == 1, log.read_text()[-3000:]  # written, but not a whole study
    failed = [line for line in log.read_text().splitlines() if "trial(s) failed:" in line]
    trials = pd.read_csv(run_dir / "trials.csv")
    groups = trials["group"].nunique()  # Tune trials: a fused group each
    assert f"error: {groups} of {groups} trials failed" in log.read_text()
    assert (trials["status"] == "error").all() and (trials["epochs"] == 0).all()  # nothing trained on CPU
    assert len(failed) == 1 and failed[0].startswith(f"{trials['group'].nunique()} trial(s) failed: "), failed
    assert re.search(r"resources.gpu=0.5 but node \S+ \(\S+, node [0-9a-f]{12}\) shows this trial no CUDA device",
                     failed[0]), failed
