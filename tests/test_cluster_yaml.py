"""cluster.yaml passes the cluster launcher's own validation, offline (no AWS call), and has the properties
a real cluster needs: a pinned current image, idempotent setup without apt or pip downloads, explicit
boto3, only tracked files synced, EFS with AWS's mount options, token auth in every shell, a private token
file, p4d opt-in and spot g5 workers; instance profiles from deploy/aws/stack.yaml that let the head launch
workers from the AMI's SSM parameter and every node pull the image from ECR. The Dockerfile it names: no CUDA
of its own but the driver requirement of the pinned torch's CUDA, FFCV's apt packages, the venv from
constraints.txt."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
DOCKERFILE = REPO / "Dockerfile"
STACK = REPO / "deploy" / "aws" / "stack.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    """The config as `ray up` sees it: merged with Ray's AWS defaults, then validated by Ray's schema."""
    config = prepare_config(yaml.safe_load(CLUSTER_YAML.read_text()))
    validate_config(config)
    return config


def test_cluster_yaml_validates(config: dict) -> None:
    types = config["available_node_types"]
    for node_type in types.values():  # the launcher rejects fractional node resources
        assert all(isinstance(v, int) for v in node_type["resources"].values())
    assert {"g5.xlarge", "p4d.24xlarge"} <= {t["node_config"]["InstanceType"] for t in types.values()}
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no trials on the head
    # The autoscaler runs in the head's container, one network hop past the host: IMDSv2 must reach it.
    assert head["node_config"]["MetadataOptions"]["HttpPutResponseHopLimit"] >= 2
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_image_is_pinned_and_current(config: dict) -> None:
    image = config["docker"]["image"]
    name, _, tag = image.rpartition(":")
    assert "@sha256:" in image or (name and tag and tag != "latest"), image  # a fixed tag or digest
    assert not image.startswith("rayproject/"), image  # the project's own image (Dockerfile)
    assert config["docker"]["pull_before_run"] is True
    for node_type in config["available_node_types"].values():
        ami = node_type["node_config"]["ImageId"]
        # Ray 2.60's _check_ami replaces "" and latest_dlami with a 2021 CUDA 11.2 AMI: a current one, named.
        assert ami.lower() not in ("", "latest_dlami")
        assert ami.startswith("resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-")


def dockerfile_env(text: str) -> dict[str, str]:
    """The ENV values the Dockerfile sets (KEY=value forms)."""
    lines = re.findall(r"^ENV (.+)$", text, re.M)
    return dict(word.split("=", 1) for word in shlex.split(" ".join(lines)))


def test_dockerfile_cuda_is_torchs_own_ffcv_packages_and_the_pinned_venv() -> None:
    text = DOCKERFILE.read_text()
    # One CUDA: the pinned torch wheel's own (its CUDA libraries come as wheels), not a second one from the base.
    (base,) = re.findall(r"^FROM (\S+)", text, re.M)
    assert not base.startswith("nvidia/cuda"), base
    pinned = re.search(r"^torch==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)[1]
    assert torch.__version__.split("+")[0] == pinned and torch.version.cuda, torch.__version__
    # The host's driver, which the NVIDIA container runtime mounts, must run that CUDA: it refuses an older one.
    env = dockerfile_env(text)
    assert env["NVIDIA_REQUIRE_CUDA"] == f"cuda>={torch.version.cuda}", env
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    apt = re.search(r"APT_PACKAGES=\(([^)]*)\)", bootstrap)[1].split()  # FFCV's build prerequisites
    installs = " ".join(re.findall(r"apt-get install [^&]*", text))
    assert apt and all(pkg in installs.split() for pkg in apt), (apt, installs)
    assert "-c constraints.txt" in text and "boto3" in text and "COPY pyproject.toml constraints.txt" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git"} <= set(ignored)


def test_setup_is_idempotent_and_installs_nothing_heavy(config: dict) -> None:
    commands = config["head_setup_commands"] + config["worker_setup_commands"] + config["initialization_commands"]
    text = " ".join(commands)
    assert "apt-get" not in text and "torch" not in text and "-c " not in text  # all in the image
    assert config["head_setup_commands"] == config["setup_commands"]  # not Ray's default `pip install boto3`
    assert "cloud-init status --wait" in text  # first boot's apt holds the dpkg lock until cloud-init ends
    assert "mountpoint -q /mnt/shared ||" in text  # the mount is skipped when already there


def test_only_tracked_files_are_synced(config: dict) -> None:
    assert config["rsync_filter"] == [".gitignore"]
    ignored = (REPO / ".gitignore").read_text().split()
    assert {".venv/", "runs/"} <= set(ignored)


def test_efs_mount_options_and_shared_root(config: dict) -> None:
    (mount,) = [c for c in config["initialization_commands"] if "mount -t nfs4" in c]
    options = re.search(r"-o (\S+)", mount)[1].split(",")
    aws = {"nfsvers=4.1", "rsize=1048576", "wsize=1048576", "hard", "timeo=600", "retrans=2", "noresvport"}
    assert aws <= set(options)
    assert re.search(r"fs-\w+\.efs\.us-west-2\.amazonaws\.com:/ /mnt/shared", mount)
    assert config["provider"]["availability_zone"].count(",") >= 1  # docs/cluster.md: a mount target in each
    run = shlex.split(" ".join(config["docker"]["run_options"]))
    assert "STUDY_ROOT=/mnt/shared" in run and "/mnt/shared:/mnt/shared" in run


def test_token_auth_in_every_shell_and_a_private_token(config: dict) -> None:
    # The container's environment reaches every start command, `ray exec` and `ray attach` shell.
    assert "RAY_AUTH_MODE=token" in shlex.split(" ".join(config["docker"]["run_options"]))
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "chmod 600 ~/.ray/auth_token" in config["setup_commands"]


def test_p4d_is_opt_in_and_g5_workers_are_spot(config: dict) -> None:
    types = {t["node_config"]["InstanceType"]: t for t in config["available_node_types"].values()}
    assert types["p4d.24xlarge"]["max_workers"] == 0 and types["p4d.24xlarge"]["min_workers"] == 0
    assert types["g5.xlarge"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert types["g5.xlarge"]["max_workers"] > 0


@pytest.fixture(scope="module")
def stack() -> dict[str, dict]:
    """deploy/aws/stack.yaml's resources (CloudFormation, in the long form of its functions: plain YAML)."""
    template = yaml.safe_load(STACK.read_text())
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    return template["Resources"]


def statements(role: dict) -> list[dict]:
    return [st for policy in role["Properties"].get("Policies", []) for st in policy["PolicyDocument"]["Statement"]]


def managed(role: dict) -> set[str]:
    return {arn["Fn::Sub"].rpartition("/")[2] for arn in role["Properties"]["ManagedPolicyArns"]}


def profile_role(stack: dict[str, dict], name: str) -> dict:
    """The role of the instance profile with this name."""
    (profile,) = [r for r in stack.values() if r["Properties"].get("InstanceProfileName") == name]
    (role,) = profile["Properties"]["Roles"]
    return stack[role["Ref"]]


def test_every_node_has_an_instance_profile_from_the_stack(config: dict, stack: dict[str, dict]) -> None:
    profiles = {name: t["node_config"]["IamInstanceProfile"]["Name"] for name, t in config["available_node_types"].items()}
    head = profiles.pop(config["head_node_type"])
    workers = set(profiles.values())  # without one, Ray gives workers no role at all
    assert profile_role(stack, head) is not profile_role(stack, workers.pop()) and not workers


def test_head_role_launches_workers_from_the_ami_parameter(config: dict, stack: dict[str, dict]) -> None:
    types = config["available_node_types"]
    head = profile_role(stack, types[config["head_node_type"]]["node_config"]["IamInstanceProfile"]["Name"])
    allowed = {st["Action"]: st["Resource"] for st in statements(head) if st["Effect"] == "Allow"}
    assert "AmazonEC2FullAccess" in managed(head)  # the autoscaler's EC2 calls, as Ray's own default role
    # EC2 resolves `ImageId: resolve:ssm:<parameter>` with the caller's rights: the head's, for every worker.
    parameter = allowed["ssm:GetParameters"]["Fn::Sub"].replace("${AWS::Partition}", "aws")
    parameter = parameter.replace("${AWS::Region}", config["provider"]["region"])
    for node_type in types.values():
        path = node_type["node_config"]["ImageId"].removeprefix("resolve:ssm:")
        assert fnmatch.fnmatchcase(f"arn:aws:ssm:{config['provider']['region']}::parameter{path}", parameter), path
    # ...and hands the workers their own profile.
    worker = next(t for name, t in types.items() if name != config["head_node_type"])
    worker_role = profile_role(stack, worker["node_config"]["IamInstanceProfile"]["Name"])
    assert allowed["iam:PassRole"] == {"Fn::GetAtt": [next(k for k, r in stack.items() if r is worker_role), "Arn"]}


def test_every_node_can_pull_the_image_from_ecr(config: dict, stack: dict[str, dict]) -> None:
    for node_type in config["available_node_types"].values():
        role = profile_role(stack, node_type["node_config"]["IamInstanceProfile"]["Name"])
        assert "AmazonEC2ContainerRegistryReadOnly" in managed(role)
    # On the host, before Ray's `docker pull`: a login to this account's registry in the cluster's region.
    region = config["provider"]["region"]
    (login,) = [c for c in config["initialization_commands"] if "docker login" in c]
    assert f"aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin" in login
    assert login.endswith(f'--output text).dkr.ecr.{region}.amazonaws.com"')
    registry = config["docker"]["image"].split("/")[0]
    assert registry.endswith(f".dkr.ecr.{region}.amazonaws.com"), registry
    commands = config["initialization_commands"]
    assert commands.index(login) < next(i for i, c in enumerate(commands) if "mount -t nfs4" in c)


def test_stack_makes_the_security_group_and_efs_cluster_yaml_names(config: dict, stack: dict[str, dict]) -> None:
    groups = {k: r for k, r in stack.items() if r["Type"] == "AWS::EC2::SecurityGroup"}
    (nodes,) = [k for k, r in groups.items() if r["Properties"]["GroupName"] == config["provider"]["security_group"]["GroupName"]]
    targets = [r["Properties"] for r in stack.values() if r["Type"] == "AWS::EFS::MountTarget"]
    assert len(targets) == len(config["provider"]["availability_zone"].split(","))  # one in each zone
    for target in targets:
        (efs_group,) = target["SecurityGroups"]
        (rule,) = groups[efs_group["Ref"]]["Properties"]["SecurityGroupIngress"]
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 2049, 2049)
        assert rule["SourceSecurityGroupId"] == {"Ref": nodes}  # NFS from the nodes only


def test_every_placeholder_is_documented_and_a_wrong_fs_id_says_so(config: dict) -> None:
    docs = (REPO / "docs" / "cluster.md").read_text()
    placeholders = {"fs-REPLACE_ME", config["docker"]["image"]}  # the EFS id, the image (KubeRay's too)
    text = CLUSTER_YAML.read_text() + (REPO / "deploy" / "k8s" / "rayjob.yaml").read_text()
    assert text.count("REPLACE_ME") == sum(text.count(p) for p in placeholders)  # no other placeholder
    assert all(f"`{p}`" in docs for p in placeholders), placeholders
    (mount,) = [c for c in config["initialization_commands"] if "mount -t nfs4" in c]
    assert re.search(r'\|\| \{ echo "error: EFS did not mount at /mnt/shared: [^"]*FileSystemId[^"]*" >&2; exit 1; \}', mount)
