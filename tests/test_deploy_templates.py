"""The Slurm and Kubernetes templates (deploy/), parsed offline: the keys they rely on are there, the study
arguments they pass compose with the launcher's own Hydra config, and the `ray symmetric-run` options pass
Ray's own check of them. No Slurm or Kubernetes cluster is reachable here."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
import yaml
from ray.scripts.symmetric_run import curate_and_validate_ray_start_args

from study.launch import compose

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "deploy" / "slurm" / "study.sbatch"
RAYJOB = REPO / "deploy" / "k8s" / "rayjob.yaml"


def ray_version() -> str:
    return re.search(r"^ray==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)[1]


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def pods(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_rayjob_runs_the_launcher_and_tears_down(job: dict) -> None:
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "study.launch"]
    cfg, choices = compose(argv[3:])  # the launcher's own config accepts every override
    assert cfg["ray"]["address"] == "auto" and choices["preset"] == "paper"
    assert cfg["run_dir"].startswith("/mnt/shared/runs/")  # fixed, on the shared volume: a retry continues it


def test_rayjob_cluster_image_auth_gpus_and_shared_storage(job: dict) -> None:
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray_version()
    assert cluster["authOptions"]["mode"] == "token"  # KubeRay sets RAY_AUTH_MODE and RAY_AUTH_TOKEN in every pod
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no trials on the head
    cluster_yaml = yaml.safe_load((REPO / "cluster.yaml").read_text())
    for pod in pods(job):
        (container,) = pod["containers"]
        assert container["image"] == cluster_yaml["docker"]["image"]  # the one image (Dockerfile)
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert env["STUDY_ROOT"] == mounts["shared"] == "/mnt/shared"
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "label-noise-shared"
    (gpu_group,) = cluster["workerGroupSpecs"]
    limits = gpu_group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1 and gpu_group["maxReplicas"] >= gpu_group["minReplicas"] >= 0


def directives(text: str) -> dict[str, str]:
    """The #SBATCH options, as {--name: value}."""
    out = {}
    for line in re.findall(r"^#SBATCH (\S+)", text, re.M):
        name, _, value = line.partition("=")
        out[name] = value
    return out


def test_sbatch_requeues_itself_before_the_wall_time() -> None:
    text = SBATCH.read_text()
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    options = directives(text)
    assert "--requeue" in options and options["--ntasks-per-node"] == "1"  # one symmetric-run per node
    signal, _, seconds = options["--signal"].partition("@")
    assert signal == "B:USR1" and int(seconds) >= 300  # to the batch shell, minutes ahead: time to save
    assert "trap on_time_up USR1" in text and 'kill -TERM "$(cat "$pid_file")"' in text
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text
    # The same run dir after a requeue (the job id stays), under the shared root.
    assert re.search(r'^RUN_DIR=\$\{RUN_DIR:-\$STUDY_ROOT/runs/\$SLURM_JOB_NAME-\$SLURM_JOB_ID\}', text, re.M)
    assert re.search(r"^export STUDY_ROOT=", text, re.M) and '"run_dir=$RUN_DIR"' in text
    assert "export RAY_AUTH_MODE=token" in text and "export RAY_AUTH_TOKEN" in text


def test_sbatch_symmetric_run_options_pass_rays_check() -> None:
    text = SBATCH.read_text().replace("\\\n", " ")
    (command,) = re.findall(r"ray symmetric-run (.*?) -- ", text)
    args = shlex.split(command)
    assert args[args.index("--address") + 1] == "$head_ip:$port" and "--min-nodes" in args
    # Ray's own parser of `ray symmetric-run` (ray/scripts/symmetric_run.py) rejects --head, --port, --block...
    start_args = curate_and_validate_ray_start_args(args)
    assert "--num-cpus=$SLURM_CPUS_PER_TASK" in start_args
    with pytest.raises(click.ClickException):
        curate_and_validate_ray_start_args([*args, "--block"])
