"""The Slurm and Kubernetes templates (deploy/), parsed offline: the keys they rely on are there, the study
arguments they pass compose with the launcher's own Hydra config, and the `ray symmetric-run` options pass
Ray's own check of them. No Slurm or Kubernetes cluster is reachable here."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.scripts.scripts import start as ray_start

from study.launch import compose

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "deploy" / "slurm" / "study.sbatch"
RAY_NODE = REPO / "deploy" / "slurm" / "ray_node.py"
RAYJOB = REPO / "deploy" / "k8s" / "rayjob.yaml"
DOCKERFILE = REPO / "Dockerfile"

spec = importlib.util.spec_from_file_location("ray_node", RAY_NODE)
ray_node = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ray_node)


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


def test_rayjob_pods_give_rays_object_store_shared_memory(job: dict) -> None:
    for pod in pods(job):
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"  # not the container's 64 MB /dev/shm


# KubeRay's readiness and liveness probes (ray-operator/controllers/ray/utils/constant.go, BaseWgetHealthCommand,
# run as `bash -c` by common/pod.go initLivenessAndReadinessProbe): every probe up to KubeRay 1.5, and from 1.6
# for Ray < 2.53. They run inside the project's image.
KUBERAY_PROBE = ["bash", "-c", "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success"
                 " && wget --tries 1 -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success"]
UBUNTU_ESSENTIAL = {"bash", "grep"}  # Priority: required packages, in every Ubuntu image


def test_image_has_every_program_kuberays_probes_run() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM ubuntu:\S+$", text, re.M)
    installs = " ".join(re.findall(r"apt-get install ([^&]*)", text)).split()
    programs = {KUBERAY_PROBE[0]} | {part.split()[0] for part in re.split(r"\||&&", KUBERAY_PROBE[2])}
    assert programs == {"bash", "wget", "grep"}
    assert programs <= set(installs) | UBUNTU_ESSENTIAL, programs - set(installs)  # else pods never turn Ready


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


# The batch script's values on a two-node job (the shell would put them in).
SBATCH_VALUES = {"$SLURM_JOB_NUM_NODES": "2", "$head_node": "node0", "$head_ip": "10.0.0.5", "$port": "40123",
                 "$JOIN_TIMEOUT": "600"}


def sbatch_step() -> list[str]:
    """The srun line that starts the cluster, as words: srun's options, ray_node.py's and the command's."""
    text = SBATCH.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("srun ") and "ray_node.py" in line]
    for name, value in SBATCH_VALUES.items():
        line = line.replace(name, value)
    return shlex.split(line.rstrip(" &"))


def test_sbatch_starts_one_ray_node_per_node_from_the_allocation() -> None:
    text = SBATCH.read_text()
    words = sbatch_step()
    node = words.index("deploy/slurm/ray_node.py")
    srun = words[:words.index("${RUN[@]}")]
    # One task per node; a node whose Ray fails ends the step (a non-zero exit, not COMPLETED).
    assert srun[0] == "srun" and "--ntasks-per-node=1" in srun and "--kill-on-bad-exit=1" in srun
    # ray_node.py's own parser takes the arguments; the head runs the launcher on this job's cluster.
    args = ray_node.parse_args(words[node + 1:])
    assert (args.head_node, args.address, args.nodes, args.join_timeout) == ("node0", "10.0.0.5:40123", 2, 600)
    assert "python -m study.launch" in args.command[2] and "ray.address=10.0.0.5:40123" in args.command
    # Nodes that start slowly (a loaded file system) get minutes to join, not symmetric-run's 30 s; settable.
    assert int(re.search(r"^JOIN_TIMEOUT=\$\{JOIN_TIMEOUT:-(\d+)\}", text, re.M)[1]) >= 300
    # Slurm >= 22.05: srun's steps do not inherit --cpus-per-task unless passed on before the srun.
    assert text.index("export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK") < text.index("srun --nodes")
    # The head's address from the batch host's non-loopback addresses, never `hostname --ip-address` (127.0.1.1).
    assert "head_node=$SLURMD_NODENAME" in text and "head_ip=$(hostname --all-ip-addresses" in text
    code = "\n".join(line.partition("#")[0] for line in text.splitlines() if not line.startswith("#"))
    assert "--ip-address" not in code.replace("--all-ip-addresses", "") and "symmetric-run" not in code
    assert "ray stop" not in code and '"stop"' not in RAY_NODE.read_text()  # node-wide: every job's Ray


@pytest.mark.parametrize("variables, gpus", [
    ({"SLURM_GPUS_PER_NODE": "4", "SLURM_GPUS_ON_NODE": "4"}, 4),       # --gpus-per-node=4
    ({"SLURM_GPUS_ON_NODE": "4"}, 4),                                    # --gres=gpu:4
    ({"SLURM_GPUS_PER_NODE": "a100:4", "SLURM_GPUS_ON_NODE": "4"}, 4),  # --gpus-per-node=a100:4, --gres=gpu:a100:4
    ({}, 0),                                                             # no GPUs asked for
])
def test_ray_node_gives_ray_the_gpus_slurm_allocated_however_asked(variables: dict[str, str], gpus: int) -> None:
    options = ray_node.resources({"SLURM_CPUS_PER_TASK": "1", **variables})
    assert options == ["--num-cpus=1", f"--num-gpus={gpus}"]
    ray_start.make_context("start", options)  # Ray's own parser takes them (it refuses --num-gpus=a100:4)


def test_ray_node_refuses_cpus_the_task_does_not_have() -> None:
    with pytest.raises(ray_node.JobError, match=r"^SLURM_CPUS_PER_TASK is unset: give the job `#SBATCH --cpus-per"):
        ray_node.resources({})
    usable = len(os.sched_getaffinity(0))
    with pytest.raises(ray_node.JobError, match=rf"^this task may run on {usable} CPU\(s\) but Ray would be told "
                                                rf"{usable + 1} \(SLURM_CPUS_PER_TASK\): run srun with --cpus-per-task"):
        ray_node.resources({"SLURM_CPUS_PER_TASK": str(usable + 1)})


@pytest.mark.parametrize("head", [True, False], ids=["head", "worker"])
def test_ray_node_puts_every_ray_service_on_ports_of_its_own(head: bool) -> None:
    argv = ray_node.ray_start(head, "127.0.0.2:43210", "node0" if head else "node1", {"SLURM_CPUS_PER_TASK": "1"})
    assert argv[:2] == ["ray", "start"]
    params = ray_start.make_context("start", argv[2:]).params  # as `ray start` parses them
    # Ray's fixed defaults (GCS 6379, dashboard 8265, client server 10001, dashboard agent 52365, the worker
    # range 10002-19999 every Ray on a node shares) are all replaced: by this job's own ports or OS-assigned ones.
    assert params["dashboard_agent_listen_port"] != 52365
    assert params["min_worker_port"] == params["max_worker_port"] == 0 and params["block"]
    assert params["temp_dir"].endswith("/ray")  # the node's own, not the head's path
    assert params["node_name"] == ("node0" if head else "node1")  # as Slurm names it
    if head:
        assert params["head"] and (params["node_ip_address"], params["port"]) == ("127.0.0.2", 43210)
        assert params["dashboard_port"] != 8265 and params["ray_client_server_port"] not in (None, 10001)
    else:
        assert params["address"] == "127.0.0.2:43210" and not params["head"]
