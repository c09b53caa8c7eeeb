# The image every node of a study runs: cluster.yaml (AWS), deploy/k8s/rayjob.yaml (KubeRay) and, through
# Apptainer, deploy/slurm/study.sbatch. FFCV's system packages, Python 3.11 (the tested version) and the
# project's venv from constraints.txt, boto3 for Ray's AWS autoscaler on the head.
#   docker build -t <registry>/label-noise-study:<tag> . && docker push <registry>/label-noise-study:<tag>
# No CUDA toolkit or runtime of its own: the pinned torch wheel (2.14.0+cu130) brings its CUDA 13.0 libraries
# as wheels, and a CUDA base image would add a second, unused set (GBs) that names a version torch does not
# use. The NVIDIA driver comes from the host: the NVIDIA container runtime mounts it (docker --runtime=nvidia,
# which Ray's launcher adds on GPU hosts; Kubernetes' device plugin; apptainer --nv).
FROM ubuntu:22.04

# What the NVIDIA container runtime reads (as CUDA base images set it): every GPU the container is given, the
# driver's compute libraries and nvidia-smi, and a refusal to start on a driver too old for torch's CUDA 13.0
# (>= 580) rather than trials failing later.
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility NVIDIA_REQUIRE_CUDA="cuda>=13.0"

ARG DEBIAN_FRONTEND=noninteractive
# FFCV's build prerequisites (scripts/bootstrap.sh), a compiler for its extension, what Ray's launcher runs
# inside the container (rsync, ssh client, sudo, nfs-common for mounts), and wget: KubeRay's probes run
# `wget ... | grep success` (ray-operator/controllers/ray/utils/constant.go, BaseWgetHealthCommand).
RUN apt-get update && apt-get install -y --no-install-recommends \
        pkg-config libturbojpeg0-dev libopencv-dev build-essential \
        curl wget ca-certificates rsync openssh-client sudo nfs-common tini \
    && rm -rf /var/lib/apt/lists/*

# Python 3.11 and the venv, made by uv (a pinned release): the same interpreter line the project is tested on.
COPY --from=ghcr.io/astral-sh/uv:0.9.5 /uv /usr/local/bin/uv
ENV VIRTUAL_ENV=/opt/venv UV_PYTHON_INSTALL_DIR=/opt/python UV_LINK_MODE=copy
RUN uv venv --python 3.11 --seed $VIRTUAL_ENV
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Dependencies first (a layer that survives code edits), then the project itself.
COPY pyproject.toml constraints.txt ./
RUN mkdir -p loaders study analysis bench rundir \
    && uv pip install -c constraints.txt boto3 ".[test]" \
    && uv pip uninstall label-noise-study
COPY . .
RUN uv pip install --no-deps -c constraints.txt -e . && python -c "import ffcv, torch, ray, study.launch"

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["bash"]
