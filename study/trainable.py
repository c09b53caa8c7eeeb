"""The Tune function trainable: a thin wrapper that trains one group (study.trial.Trial) and reports
each epoch to Tune, every member's metrics under `members/<k>/`, with a checkpoint of all members every
`train.checkpoint_every` epochs; after a failure it resumes every member from Tune's checkpoint.

A trial's config is {"members": [config, ...]} (search=grid: a fused group) or one config (optuna and
ASHA choose one config per trial)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from study import console
from study.cluster import node_name
from study.grid import placed
from study.storage import check_token
from study.train import EpochReport
from study.trial import Trial

STATE_FILE = "trial.pt"
console.quiet_worker()  # on import, in every worker that unpickles this trainable: before Tune restores a checkpoint


def members(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The member configs of a Tune trial's config."""
    return config["members"] if "members" in config else [config]


class NoCuda(RuntimeError):
    """A trial holds a GPU slot on a node where torch sees no CUDA device."""


def claim_gpu(gpu: float) -> None:
    """GPU or nothing: a trial holding a GPU slot never trains on CPU; a fractional slot caps this
    process's CUDA memory at its fraction, so packed trials cannot starve each other."""
    if not gpu:
        return
    if not torch.cuda.is_available():
        raise NoCuda(f"resources.gpu={gpu:g} but node {node_name()} shows this trial no CUDA device "
                     f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, torch {torch.__version__} "
                     f"needs an NVIDIA driver for CUDA {torch.version.cuda}): fix that node's driver or image, "
                     "or run with resources.gpu=0")
    if gpu < 1:
        torch.cuda.set_per_process_memory_fraction(gpu)


def trainable(config: dict[str, Any], paths: dict[str, str] | None = None,
              token: tuple[str, str] | None = None) -> None:
    """`paths`: dotted keys (data.root, data.cache, noise.confusion) a resumed, perhaps moved, run dir reads
    from where this launch resolved them, not where the study started. `token`: (path, value) of the storage
    root's token on a cluster, read on this node before anything trains (a node whose mount failed fails here)."""
    if token:
        check_token(*token)
    resources = ray.get_runtime_context().get_assigned_resources()
    # One intra-op thread per CPU Tune gave this trial, so packed trials do not oversubscribe cores.
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    claim_gpu(resources.get("GPU", 0))
    trial = Trial(placed(members(config), paths))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry or a resumed study: continue every member after the last saved epoch
        with checkpoint.as_directory() as folder:
            trial.load_state_dict(torch.load(Path(folder) / STATE_FILE, map_location=trial.device))
    node_id = ray.get_runtime_context().get_node_id()  # Tune adds hostname/node_ip; this tells nodes on one host apart

    def report(reports: list[EpochReport]) -> None:
        metrics = {**trial.metrics(reports), "node_id": node_id}
        if not trial.checkpoint_due(reports[0].epoch):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trial.state_dict(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    trial.run(report)
