"""The Tune function trainable: a thin wrapper that reports each epoch of a Trial to Tune, with a
checkpoint every `train.checkpoint_every` epochs, and resumes from Tune's checkpoint after a failure."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from study.train import EpochReport
from study.trial import Trial

STATE_FILE = "trial.pt"


def trainable(config: dict[str, Any]) -> None:
    # One intra-op thread per CPU Tune gave this trial, so packed trials do not oversubscribe cores.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    trial = Trial(config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry or a resumed study: continue after the last saved epoch
        with checkpoint.as_directory() as folder:
            trial.load_state_dict(torch.load(Path(folder) / STATE_FILE, map_location=trial.device))
    node_id = ray.get_runtime_context().get_node_id()  # Tune adds hostname/node_ip; this tells nodes on one host apart
    train = config["train"]
    every, last = train["checkpoint_every"], train["epochs"]

    def report(r: EpochReport) -> None:
        metrics = {**dataclasses.asdict(r), "node_id": node_id}
        if train.get("report_confusion") and r.epoch == last:  # exp=confusion sums these
            metrics["confusion"] = trial.confusion().tolist()
        if not every or (r.epoch % every and r.epoch != last):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trial.state_dict(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    trial.run(report)
