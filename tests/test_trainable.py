"""study.trainable by hand: a Tune trial's members, the paths a resumed study reads from where this launch
resolved them, what Tune gets each epoch, when a checkpoint is written, and the GPU claim (the trainable under
Tune: tests/test_budget_resume.py, tests/test_faults.py)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from types import SimpleNamespace

from study import trainable
from study.train import EpochReport
from study.trial import Trial
from tests.conftest import trial_config


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


class Session:
    """Tune's session API as the trainable uses it (the runtime context, get_checkpoint, report) outside Tune:
    what it was given, and every report with a copy of its checkpoint. The trainable under Tune itself:
    tests/test_budget_resume.py and tests/test_faults.py (slow)."""

    def __init__(self, tmp_path: Path, resources: dict[str, float], checkpoint: Path | None = None) -> None:
        from ray import tune

        self.tmp_path, self.reports, self.saved = tmp_path, [], {}
        context = SimpleNamespace(get_assigned_resources=lambda: resources, get_node_id=lambda: "node-7")
        self.ray = SimpleNamespace(get_runtime_context=lambda: context)
        self.tune = SimpleNamespace(Checkpoint=tune.Checkpoint, report=self.report,
                                    get_checkpoint=lambda: checkpoint and tune.Checkpoint.from_directory(checkpoint))

    def report(self, metrics: dict, checkpoint=None) -> None:
        self.reports.append(metrics)
        if checkpoint is not None:  # Tune copies it before the trainable's temporary folder goes
            self.saved[metrics["epoch"]] = Path(shutil.copytree(checkpoint.path, self.tmp_path / f"epoch{metrics['epoch']}"))


def test_the_trainable_trains_every_member_reports_each_epoch_and_resumes_from_a_checkpoint(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two members read data from where this launch placed it, on as many threads as Tune gave CPUs; Tune gets
    each epoch's metrics with the node id and, every checkpoint_every epochs and at the last, a checkpoint of both
    members; resumed from the epoch-2 checkpoint, the trial goes on at epoch 3 and ends as the first run did."""
    import torch

    config = {"members": [trial_config(tmp_path / "moved", data={"n_clean": 200, "n_test": 200},
                                       model={"arch": "perceptron"},
                                       train={"epochs": 3, "checkpoint_every": 2, "lr": lr}) for lr in (0.1, 0.01)]}
    threads = torch.get_num_threads()
    session = Session(tmp_path, {"CPU": 3.0})
    monkeypatch.setattr(trainable, "ray", session.ray)
    monkeypatch.setattr(trainable, "tune", session.tune)
    try:
        trainable.trainable(config, paths={"data.root": str(data_root)})
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    assert [r["epoch"] for r in session.reports] == [1, 2, 3] and sorted(session.saved) == [2, 3]
    assert all(r["node_id"] == "node-7" and sorted(r["members"]) == ["0", "1"] for r in session.reports)
    state = torch.load(session.saved[2] / trainable.STATE_FILE)
    assert state["epoch"] == 2

    again = Session(tmp_path / "again", {"CPU": 1.0}, checkpoint=session.saved[2])
    (tmp_path / "again").mkdir()
    monkeypatch.setattr(trainable, "ray", again.ray)
    monkeypatch.setattr(trainable, "tune", again.tune)
    try:
        trainable.trainable(config, paths={"data.root": str(data_root)})
    finally:
        torch.set_num_threads(threads)
    assert [r["epoch"] for r in again.reports] == [3] and sorted(again.saved) == [3]
    timeless = lambda r: repr({k: {m: v for m, v in member.items() if m != "images_per_s"}  # noqa: E731
                               for k, member in r["members"].items()})  # repr: val_acc is NaN (n_val = 0)
    assert timeless(again.reports[0]) == timeless(session.reports[-1])  # the same epoch 3, bit for bit


def test_a_gpu_slot_without_cuda_names_its_node_and_a_fraction_caps_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """claim_gpu on a node whose torch sees no CUDA: one line naming the node, what CUDA_VISIBLE_DEVICES and torch
    say, and the two ways out; where CUDA is seen, a fractional slot caps this process's memory at its fraction and
    a whole GPU caps nothing (under Ray: tests/test_gpu_fraction.py)."""
    import torch

    monkeypatch.setattr(trainable, "node_name", lambda: "gpu-3 (10.0.0.4, node 0123456789ab)")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(trainable.NoCuda) as err:
        trainable.claim_gpu(0.5)
    assert str(err.value) == ("resources.gpu=0.5 but node gpu-3 (10.0.0.4, node 0123456789ab) shows this trial no CUDA "
                              f"device (CUDA_VISIBLE_DEVICES='', torch {torch.__version__} needs an NVIDIA driver for "
                              f"CUDA {torch.version.cuda}): fix that node's driver or image, or run with resources.gpu=0")
    capped = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", capped.append)
    for gpu in (0.25, 1, 1.0, 2):
        trainable.claim_gpu(gpu)
    assert capped == [0.25]


def test_the_trainable_takes_one_thread_without_a_cpu_grant_and_claims_its_gpu_slot_first(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    config = trial_config(data_root, data={"n_clean": 200, "n_test": 200}, model={"arch": "perceptron"},
                          train={"epochs": 1})
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        session = Session(tmp_path, {})  # Tune granted no CPU (num_cpus=0): one thread, not torch's default
        monkeypatch.setattr(trainable, "ray", session.ray)
        monkeypatch.setattr(trainable, "tune", session.tune)
        trainable.trainable(config)
        assert torch.get_num_threads() == 1 and [r["epoch"] for r in session.reports] == [1]
        gpu = Session(tmp_path, {"CPU": 1.0, "GPU": 0.5})
        monkeypatch.setattr(trainable, "ray", gpu.ray)
        monkeypatch.setattr(trainable, "tune", gpu.tune)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(trainable, "node_name", lambda: "cpu-only (10.0.0.5, node 0123456789ab)")
        with pytest.raises(trainable.NoCuda, match=r"^resources.gpu=0.5 but node cpu-only \(10.0.0.5"):
            trainable.trainable(config)
        assert gpu.reports == []  # nothing trained on the CPU in the GPU's stead
    finally:
        torch.set_num_threads(threads)
