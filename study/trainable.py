"""The Tune function trainable: a thin wrapper that trains one group (study.trial.Trial) and reports
each epoch to Tune, every member's metrics under `members/<k>/`, with a checkpoint of all members every
`train.checkpoint_every` epochs; after a failure it resumes every member from Tune's checkpoint.

A trial's config is {"members": [config, ...]} (search=grid: a fused group) or one config (optuna and
ASHA choose one config per trial)."""

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


def members(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The member configs of a Tune trial's config."""
    return config["members"] if "members" in config else [config]


def trainable(config: dict[str, Any], data_root: str | None = None) -> None:
    """`data_root`: set when a resumed run dir reads its data from another root than it started with."""
    # One intra-op thread per CPU Tune gave this trial, so packed trials do not oversubscribe cores.
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    configs = members(config)
    if data_root:
        configs = [{**c, "data": {**c["data"], "root": data_root}} for c in configs]
    trial = Trial(configs)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry or a resumed study: continue every member after the last saved epoch
        with checkpoint.as_directory() as folder:
            trial.load_state_dict(torch.load(Path(folder) / STATE_FILE, map_location=trial.device))
    node_id = ray.get_runtime_context().get_node_id()  # Tune adds hostname/node_ip; this tells nodes on one host apart
    train = trial.configs[0]["train"]
    every, last = train["checkpoint_every"], train["epochs"]

    def report(reports: list[EpochReport]) -> None:
        best = max(reports, key=lambda r: r.test_acc)  # the top level is what Tune's table, ASHA and Optuna read
        metrics = {**dataclasses.asdict(best), "node_id": node_id,
                   "members": {str(k): dataclasses.asdict(r) for k, r in enumerate(reports)}}
        if train.get("report_confusion") and best.epoch == last:  # exp=confusion sums these
            metrics["confusion"] = trial.confusion().sum(0).tolist()
        if not every or (best.epoch % every and best.epoch != last):
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            torch.save(trial.state_dict(), Path(folder) / STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    trial.run(report)
