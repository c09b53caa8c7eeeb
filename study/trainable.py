"""The Tune function trainable: a thin wrapper that reports each epoch of a Trial to Tune."""

from __future__ import annotations

import dataclasses
from typing import Any

import ray
import torch
from ray import tune

from study.train import EpochReport
from study.trial import Trial


def trainable(config: dict[str, Any]) -> None:
    # One intra-op thread per CPU Tune gave this trial, so packed trials do not oversubscribe cores.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    trial = Trial(config)
    node_id = ray.get_runtime_context().get_node_id()  # Tune adds hostname/node_ip; this tells nodes on one host apart
    train = config["train"]

    def report(r: EpochReport) -> None:
        metrics = {**dataclasses.asdict(r), "node_id": node_id}
        if train.get("report_confusion") and r.epoch == train["epochs"]:  # exp=confusion sums these
            metrics["confusion"] = trial.confusion().tolist()
        tune.report(metrics)

    trial.run(report)
