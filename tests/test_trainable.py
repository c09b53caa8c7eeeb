"""study.trainable by hand: a Tune trial's members, the paths a resumed study reads from where this launch
resolved them, what Tune gets each epoch, when a checkpoint is written, and the GPU claim (the trainable under
Tune: tests/test_budget_resume.py, tests/test_faults.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from types import SimpleNamespace

from study import trainable
from study.train import EpochReport
from study.trial import Trial


def test_members_of_a_grouped_and_of_a_single_trial() -> None:
    a, b = {"train": {"lr": 0.1}}, {"train": {"lr": 0.5}}
    assert trainable.members({"members": [a, b]}) == [a, b]
    assert trainable.members(a) == [a]  # optuna and ASHA: one config per trial


def test_paths_are_set_in_every_member() -> None:
    configs = [{"data": {"root": "/old", "cache": "/old/ffcv"}, "noise": {"confusion": "/old/c.npy", "seed": s}}
               for s in (0, 1)]
    paths = {"data.root": "/new", "noise.confusion": "/new/c.npy"}
    assert trainable.placed(configs, paths) == [
        {"data": {"root": "/new", "cache": "/old/ffcv"}, "noise": {"confusion": "/new/c.npy", "seed": s}} for s in (0, 1)]
    assert configs[0]["data"]["root"] == "/old"  # copies
    assert trainable.placed(configs, None) == configs == trainable.placed(configs, {})


def test_tune_gets_the_best_member_on_top_and_every_member_below() -> None:
    reports = [EpochReport(3, 1.5, 0.5, 0.9, 800.0), EpochReport(3, 1.2, 0.7, 0.95, 800.0, 0.65),
               EpochReport(3, 1.1, 0.6, 0.97, 800.0)]
    trial = SimpleNamespace(configs=[{"train": {"report_confusion": False, "epochs": 4}}])
    metrics = Trial.metrics(trial, reports)  # what both runners record (the trainable adds node_id)
    assert metrics == {**dataclasses.asdict(reports[1]),
                       "members": {"0": dataclasses.asdict(reports[0]), "1": dataclasses.asdict(reports[1]),
                                   "2": dataclasses.asdict(reports[2])}}
    assert metrics["test_acc"] == 0.7 and metrics["val_acc"] == 0.65 and metrics["epoch"] == 3
    confusion = SimpleNamespace(configs=[{"train": {"report_confusion": True, "epochs": 3}}],
                                confusion=lambda: np.arange(12).reshape(3, 2, 2))  # exp=confusion: summed, last epoch
    assert Trial.metrics(confusion, reports)["confusion"] == [[12, 15], [18, 21]]
    assert "confusion" not in Trial.metrics(confusion, [dataclasses.replace(r, epoch=2) for r in reports])


@pytest.mark.parametrize("every, last, due", [
    (1, 4, [1, 2, 3, 4]), (3, 7, [3, 6, 7]), (2, 6, [2, 4, 6]), (5, 3, [3]), (0, 4, []),
])
def test_checkpoints_every_k_epochs_and_at_the_last(every: int, last: int, due: list[int]) -> None:
    trial = SimpleNamespace(configs=[{"train": {"checkpoint_every": every, "epochs": last}}])
    assert [e for e in range(1, last + 1) if Trial.checkpoint_due(trial, e)] == due


def test_no_gpu_slot_claims_nothing() -> None:
    """resources.gpu = 0: no CUDA check, no memory cap (a GPU slot without CUDA names its node: that needs Ray,
    tests/test_gpu_fraction.py)."""
    assert trainable.claim_gpu(0) is None and trainable.claim_gpu(0.0) is None
