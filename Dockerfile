# The image every node of a study runs: cluster.yaml (AWS), deploy/k8s/rayjob.yaml (KubeRay) and, through
# Apptainer, deploy/slurm/study.sbatch. CUDA 12.8 runtime, FFCV's system packages, Python 3.11 (the tested
# version) and the project's venv from constraints.txt, boto3 for Ray's AWS autoscaler on the head.
#   docker build -t <registry>/label-noise-study:<tag> . && docker push <registry>/label-noise-study:<tag>
# The torch wheel brings its own CUDA libraries: the host needs an NVIDIA driver that runs them
# (torch 2.14.0+cu130: driver >= 580; `nvidia-smi` on a node shows it).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ARG DEBIAN_FRONTEND=noninteractive
# FFCV's build prerequisites (scripts/bootstrap.sh), a compiler for its extension, and what Ray's launcher
# runs inside the container (rsync, ssh client, sudo, nfs-common for mounts).
RUN apt-get update && apt-get install -y --no-install-recommends \
        pkg-config libturbojpeg0-dev libopencv-dev build-essential \
        curl ca-certificates rsync openssh-client sudo nfs-common tini \
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
