"""study.trial on its own: shared_part, pick_device, compile_mode, and a Trial's members (loss, learning rate, init,
labels), its path (Single for one member, Fused for several), the epochs and metrics it reports, its confusion
matrices and its checkpoint round trip, each pinned to exact values on MNIST at the smallest scale (a perceptron,
100 clean images, 100 test images, 2 epochs of 4 steps).

mutmut runs, for a mutant, only the tests it saw call the mutated function, and it credits whatever a module
fixture calls to the first test that requests it: so the first test to request `group` checks everything the
group's construction decides, and the first to request `ran` everything its run reports; later tests call what
they check again themselves."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from errors import UsageError
from study import models
from study import trial as trial_module
from study.train import EpochReport, Fused, Single, evaluate
from study.trial import COMPILE_AUTO, MEMBER_KEYS, Trial, compile_mode, pick_device, shared_part
from tests.conftest import trial_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no CUDA: compile_mode reads .type
# (lr, train.seed, noise.seed) of the group's members: members 0 and 2 share an init, 1 and 2 their labels
MEMBERS = [(0.5, 0, 0), (0.2, 1, 7), (0.1, 0, 7)]
N_CLEAN, N_TEST, N_VAL, BATCH, EPOCHS = 100, 100, 50, 64, 2
REPORT_KEYS = [f.name for f in dataclasses.fields(EpochReport)]


def small(data_root: Path, **sections: dict) -> dict:
    """A perceptron on 100 clean MNIST images (uniform noise alpha = 1: 200 virtual), 2 epochs of batches of 64."""
    base = {"model": {"arch": "perceptron"}, "data": {"n_clean": N_CLEAN, "n_test": N_TEST, "n_val": 0},
            "noise": {"alpha": 1.0}, "train": {"epochs": EPOCHS, "batch_size": BATCH, "device": "cpu"}}
    for name, values in sections.items():
        base[name] = {**base[name], **values}
    return trial_config(data_root, **base)


def members(data_root: Path, **sections: dict) -> list[dict]:
    configs = []
    for lr, seed, noise_seed in MEMBERS:
        config = small(data_root, **sections)
        config["train"]["lr"], config["train"]["seed"], config["noise"]["seed"] = lr, seed, noise_seed
        configs.append(config)
    return configs


def fresh_model(seed: int, arch: str = "perceptron", **kwargs: Any) -> torch.nn.Module:
    """What a member's model must be: the architecture drawn from its own train.seed."""
    torch.manual_seed(seed)
    return models.build(arch, (1, 28, 28), 10, **kwargs)


def weights(trial: Trial, k: int) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in trial.net.weights(k).items()}


def row(report: EpochReport) -> tuple:
    """A report without its throughput (a wall-clock measure)."""
    return report.epoch, report.train_loss, report.test_acc, report.test_top5, report.val_acc


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Every run and evaluation here on one intra-op thread, so what is computed twice (a run resumed, accuracies
    and confusion counts recomputed) repeats bit for bit; torch's setting is restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spy_set_epoch(trial: Trial) -> list[int]:
    """The epochs the run gives the loader's set_epoch, in order."""
    calls, set_epoch = [], trial.loader.set_epoch

    def spy(epoch: int) -> None:
        calls.append(epoch)
        set_epoch(epoch)

    trial.loader.set_epoch = spy
    return calls


def labels_of(batches) -> torch.Tensor:
    return torch.cat([y for _, y in batches])


# shared_part, pick_device, compile_mode


def test_shared_part_drops_exactly_the_member_keys_from_a_copy() -> None:
    assert MEMBER_KEYS == ("train.lr", "train.seed", "noise.seed")
    config = {"data": {"n_clean": 100, "seed": 3, "lr": 2}, "noise": {"alpha": 1.0, "seed": 7, "delta": 0.5},
              "model": {"arch": "mlp1"}, "train": {"lr": 0.1, "seed": 3, "epochs": 2, "loss": "ce"}}
    before = copy.deepcopy(config)
    out = shared_part(config)
    assert out == {"data": {"n_clean": 100, "seed": 3, "lr": 2}, "noise": {"alpha": 1.0, "delta": 0.5},
                   "model": {"arch": "mlp1"}, "train": {"epochs": 2, "loss": "ce"}}
    assert config == before  # the input keeps its member keys
    assert all(out[s] is not config[s] for s in config)  # every section a copy
    out["model"]["arch"] = "conv2"
    assert config["model"]["arch"] == "mlp1"


def test_shared_part_of_a_config_lacking_member_keys_or_sections() -> None:
    assert shared_part({"train": {"lr": 0.1}, "data": {"n_clean": 5}}) == {"train": {}, "data": {"n_clean": 5}}
    assert shared_part({"noise": {"alpha": 2.0}}) == {"noise": {"alpha": 2.0}}
    assert shared_part({}) == {}


def test_pick_device_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == CPU and pick_device("cpu") == CPU
    message = "train.device=cuda but no CUDA device is visible: use train.device=auto or cpu"
    with pytest.raises(UsageError, match=f"^{re.escape(message)}$"):
        pick_device("cuda")


def test_pick_device_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch.device("cuda") is made, never used
    assert pick_device("auto") == CUDA and pick_device("cuda") == CUDA and pick_device("cpu") == CPU


@pytest.mark.parametrize("setting, device, mode", [
    ("auto", CUDA, "reduce-overhead"), ("auto", CPU, None), ("none", CUDA, None), ("none", CPU, None),
    ("default", CPU, "default"), ("reduce-overhead", CPU, "reduce-overhead"), ("max-autotune", CUDA, "max-autotune"),
    ("max-autotune-no-cudagraphs", CUDA, "max-autotune-no-cudagraphs"),
])
def test_compile_mode_of_each_setting_and_device(setting: str, device: torch.device, mode: str | None) -> None:
    assert COMPILE_AUTO == "reduce-overhead"
    assert compile_mode(setting, device) == mode


# Trial: members


@pytest.mark.parametrize("where, section, values", [
    (1, "model", {"mlp_hidden": 9}), (2, "data", {"n_clean": 101}), (1, "noise", {"alpha": 2.0}),
    (2, "train", {"epochs": 3}),
])
def test_members_that_differ_in_a_shared_key_are_refused(data_root: Path, where: int, section: str,
                                                         values: dict) -> None:
    configs = members(data_root)
    configs[where][section] = {**configs[where][section], **values}
    with pytest.raises(ValueError, match=r"^the members of a group may differ only in train\.lr, train\.seed, "
                                         r"noise\.seed$"):
        Trial(configs)


@pytest.fixture(scope="module")
def group(data_root: Path) -> SimpleNamespace:
    """A fused group of the three MEMBERS (ce, uniform noise alpha = 1, a held-out split of 50, confusion reported),
    built from a tuple, with its fresh weights and first batch recorded before any training."""
    configs = members(data_root, data={"n_val": N_VAL}, train={"report_confusion": True, "compile": "auto"})
    trial = Trial(tuple(configs))
    first = next(iter(trial.loader))
    return SimpleNamespace(configs=configs, trial=trial, fresh=[weights(trial, k) for k in range(len(MEMBERS))],
                           first=first)


def test_a_fused_group_gives_each_member_its_lr_init_and_labels(group: SimpleNamespace) -> None:
    trial, configs = group.trial, group.configs
    assert type(trial.configs) is list and trial.configs == configs
    assert trial.device == CPU and trial.epoch == 0
    net = trial.net
    assert isinstance(net, Fused)
    assert torch.equal(net.lr, torch.tensor([0.5, 0.2, 0.1]))  # each member's train.lr, in order
    assert net._step == net._fused_step  # compile=auto on a CPU: eager
    for k, (_, seed, _) in enumerate(MEMBERS):  # each member's init drawn from its own train.seed
        expected = fresh_model(seed).state_dict()
        assert group.fresh[k].keys() == expected.keys()
        assert all(torch.equal(group.fresh[k][n], expected[n]) for n in expected), k
    assert not torch.equal(group.fresh[0]["1.weight"], group.fresh[1]["1.weight"])
    # the data: one noise model per member with its noise.seed, the first one's the trial's
    assert [n.spec.seed for n in trial.data.noises] == [0, 7, 7]
    assert trial.noise is trial.data.noises[0] and trial.loader is trial.data.loader
    assert trial.loader.n_virtual == 2 * N_CLEAN and len(trial.loader) == 4  # ce: the noisy copies are trained on
    x, y = group.first
    assert x.shape == (BATCH, 1, 28, 28) and y.shape == (3, BATCH)
    assert torch.equal(y[1], y[2]) and not torch.equal(y[0], y[1])  # labels follow noise.seed
    assert trial.to_target(y) is y  # ce: the labels are the targets
    assert trial.data.val_batches is not None and labels_of(trial.data.val_batches()).numel() == N_VAL


def test_model_builds_the_configured_architecture_from_its_seed(group: SimpleNamespace) -> None:
    trial, base = group.trial, group.configs[0]
    conv = {**base, "model": {"arch": "conv2", "mlp_hidden": 9, "conv_channels": [3, 5, 11], "fc_hidden": 7},
            "train": {**base["train"], "seed": 4}}
    net = trial.model(conv)
    shapes = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert shapes == {"0.weight": (3, 1, 3, 3), "0.bias": (3,), "3.weight": (5, 3, 3, 3), "3.bias": (5,),
                      "7.weight": (7, 5 * 7 * 7), "7.bias": (7,), "9.weight": (10, 7), "9.bias": (10,)}
    expected = fresh_model(4, "conv2", mlp_hidden=9, conv_channels=(3, 5, 11), fc_hidden=7).state_dict()
    assert all(torch.equal(t, expected[n]) for n, t in net.state_dict().items())
    mlp = trial.model({**conv, "model": {**conv["model"], "arch": "mlp1"}})
    assert [tuple(p.shape) for p in mlp.parameters()] == [(9, 784), (9,), (10, 9), (10,)]
    assert all(p.device == CPU for p in mlp.parameters())


@pytest.fixture(scope="module")
def ran(group: SimpleNamespace) -> SimpleNamespace:
    """The group trained for its 2 epochs as a runner does: each epoch's reports and metrics, the trial's epoch
    when it reports, the loader's set_epoch calls, and a copy of the state after epoch 1."""
    trial = group.trial
    record = SimpleNamespace(reports=[], metrics=[], epochs_seen=[], state=None)
    record.set_epoch = spy_set_epoch(trial)

    def on_epoch(reports: list[EpochReport]) -> None:
        record.reports.append(reports)
        record.metrics.append(trial.metrics(reports))
        record.epochs_seen.append(trial.epoch)
        if reports[0].epoch == 1:
            record.state = copy.deepcopy(trial.state_dict())

    record.returned = trial.run(on_epoch)
    return SimpleNamespace(**vars(group), **vars(record))


def test_a_fused_group_run_reports_every_epoch_of_every_member(ran: SimpleNamespace) -> None:
    trial = ran.trial
    assert ran.set_epoch == [0, 1] and ran.epochs_seen == [1, 2] and trial.epoch == EPOCHS
    assert [[r.epoch for r in rs] for rs in ran.reports] == [[1, 1, 1], [2, 2, 2]]
    assert ran.returned == ran.reports[-1]
    for rs in ran.reports:
        for r in rs:
            assert 0 <= r.test_acc <= r.test_top5 <= 1 and 0 <= r.val_acc <= 1 and r.train_loss > 0
            assert r.test_acc * N_TEST == round(r.test_acc * N_TEST) and r.val_acc * N_VAL == round(r.val_acc * N_VAL)
    # the last epoch's accuracies are those of the trained members on the test and held-out splits
    top1, top5 = evaluate(trial.net, trial.data.test_batches())
    val = evaluate(trial.net, trial.data.val_batches())[0]
    last = ran.reports[-1]
    assert [r.test_acc for r in last] == top1.tolist() and [r.test_top5 for r in last] == top5.tolist()
    assert [r.val_acc for r in last] == val.tolist()
    assert not torch.equal(weights(trial, 0)["1.weight"], ran.fresh[0]["1.weight"])  # trained
    # metrics: the best member on top, every member under members/<k>/, the summed confusion after the last epoch
    for epoch, (rs, metrics) in enumerate(zip(ran.reports, ran.metrics), 1):
        best = [r.test_acc for r in rs].index(max(r.test_acc for r in rs))
        expected = {**dataclasses.asdict(rs[best]),
                    "members": {str(k): dataclasses.asdict(r) for k, r in enumerate(rs)}}
        if epoch == EPOCHS:
            expected["confusion"] = trial.confusion().sum(0).tolist()
        assert metrics == expected
        assert list(metrics["members"]) == ["0", "1", "2"] and metrics["epoch"] == epoch
    assert sum(map(sum, ran.metrics[-1]["confusion"])) == 3 * N_TEST
    assert ran.state["epoch"] == 1


def test_metrics_name_the_best_member_and_add_the_confusion_only_when_due(ran: SimpleNamespace) -> None:
    trial, first, last = ran.trial, ran.reports[0], ran.reports[-1]
    # a hand-made epoch where member 1 is best by test_acc (ties go to the first), member 0 by any other metric
    made = [dataclasses.replace(r, test_acc=acc, test_top5=1 - acc, val_acc=1 - acc, train_loss=loss)
            for r, acc, loss in zip(last, (0.25, 0.75, 0.75), (3.0, 2.0, 1.0))]
    metrics = trial.metrics(made)
    assert list(metrics) == [*REPORT_KEYS, "members", "confusion"]
    assert {k: metrics[k] for k in REPORT_KEYS} == dataclasses.asdict(made[1])
    assert metrics["members"] == {"0": dataclasses.asdict(made[0]), "1": dataclasses.asdict(made[1]),
                                  "2": dataclasses.asdict(made[2])}
    assert metrics["confusion"] == trial.confusion().sum(0).tolist()
    assert list(trial.metrics(first)) == [*REPORT_KEYS, "members"]  # epoch 1 of 2: not the last
    quiet = SimpleNamespace(configs=[{"train": {**trial.configs[0]["train"], "report_confusion": False}}],
                            confusion=trial.confusion)
    assert "confusion" not in Trial.metrics(quiet, last)


def test_confusion_counts_each_member_on_the_test_set(ran: SimpleNamespace) -> None:
    trial = ran.trial
    counts = trial.confusion()
    assert counts.shape == (3, 10, 10) and counts.dtype.kind == "i"
    classes = torch.bincount(labels_of(trial.data.test_batches()), minlength=10).numpy()
    assert classes.sum() == N_TEST
    for k, report in enumerate(ran.reports[-1]):
        assert (counts[k].sum(1) == classes).all()  # row = true class
        assert counts[k].trace() / N_TEST == report.test_acc  # the diagonal is what top-1 counted
    assert not (counts[0] == counts[1]).all()  # each member's own


def test_state_round_trip_continues_training_identically(ran: SimpleNamespace) -> None:
    state = ran.trial.state_dict()
    assert set(state) == {"net", "epoch"} and state["epoch"] == EPOCHS
    resumed = Trial(ran.configs)
    assert resumed.epoch == 0
    resumed.load_state_dict(copy.deepcopy(ran.state))
    assert resumed.epoch == 1
    for k in range(3):  # the epoch-1 weights are back
        assert all(torch.equal(t, ran.state["net"]["params"][n][k]) for n, t in resumed.net.weights(k).items())
    calls, reports = spy_set_epoch(resumed), []
    resumed.run(reports.append)
    assert calls == [1] and resumed.epoch == EPOCHS
    assert [[row(r) for r in rs] for rs in reports] == [[row(r) for r in ran.reports[-1]]]
    for k in range(3):
        assert all(torch.equal(t, ran.trial.net.weights(k)[n]) for n, t in resumed.net.weights(k).items())


@pytest.mark.parametrize("every, last, due", [
    (1, 3, [1, 2, 3]), (3, 7, [3, 6, 7]), (2, 6, [2, 4, 6]), (2, 5, [2, 4, 5]), (5, 3, [3]), (0, 4, []),
])
def test_checkpoints_every_k_epochs_and_at_the_last(every: int, last: int, due: list[int]) -> None:
    trial = SimpleNamespace(configs=[{"train": {"checkpoint_every": every, "epochs": last}}])
    answers = [Trial.checkpoint_due(trial, e) for e in range(1, last + 1)]
    assert all(type(a) is bool for a in answers)
    assert [e for e, a in zip(range(1, last + 1), answers) if a] == due


def test_a_single_member_h_alpha_trial_trains_on_clean_images_against_soft_targets(data_root: Path) -> None:
    config = small(data_root, train={"loss": "h_alpha", "lr": 0.3, "seed": 3, "epochs": 1, "report_confusion": False})
    trial = Trial(config)
    assert trial.configs == [config]
    net = trial.net
    assert isinstance(net, Single) and [g["lr"] for g in net.optimizer.param_groups] == [0.3]
    expected = fresh_model(3).state_dict()
    assert all(torch.equal(t, expected[n]) for n, t in net.model.state_dict().items())
    # H_alpha: the clean examples only (alpha = 0 labels), the noise (uniform, alpha = 1) in the targets
    assert trial.loader.n_virtual == N_CLEAN and len(trial.loader) == 2 and trial.noise.spec.alpha == 0.0
    assert (trial.data.distributions[0] == 0.1).all()
    y = torch.tensor([[0, 3, 9]])
    soft = torch.full((1, 3, 10), 0.05)
    soft[0, [0, 1, 2], [0, 3, 9]] = 0.55  # (1 + alpha / m) / (1 + alpha) on the label, alpha / m / (1 + alpha) off it
    torch.testing.assert_close(trial.to_target(y), soft)
    reports, metrics = [], []
    trial.run(lambda rs: (reports.append(rs), metrics.append(trial.metrics(rs))))
    # the same epoch by hand: the member's init and lr, its batches, the soft targets, Adadelta
    twin, table, loss_sum = Single(fresh_model(3), 0.3, CPU), (torch.eye(10) + 0.1) / 2, torch.zeros(())
    for x, y in trial.loader:
        loss_sum = loss_sum + twin.step(x, table[y]).float() * y.shape[-1]
    assert [[r.epoch for r in rs] for rs in reports] == [[1]] and trial.epoch == 1
    (report,), = reports
    assert report.train_loss == float(loss_sum[0] / N_CLEAN)
    assert all(torch.equal(t, twin.model.state_dict()[n]) for n, t in net.model.state_dict().items())
    assert math.isnan(report.val_acc)  # no held-out split
    assert report.test_acc == evaluate(net, trial.data.test_batches())[0].item()
    assert metrics == [{**dataclasses.asdict(report), "members": {"0": dataclasses.asdict(report)}}]  # no confusion


def test_the_compile_setting_reaches_the_fused_step(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modes = []

    def fused(nets, lrs, device, mode):
        modes.append(mode)
        return Fused(nets, lrs, device)

    monkeypatch.setattr(trial_module, "Fused", fused)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # train.device=cpu is the CPU all the same
    trial = Trial(members(data_root, train={"compile": "max-autotune-no-cudagraphs"})[:2])
    assert trial.device == CPU and modes == ["max-autotune-no-cudagraphs"] and isinstance(trial.net, Fused)
    assert torch.equal(trial.net.lr, torch.tensor([0.5, 0.2]))


def test_h_alpha_targets_follow_each_members_own_noise_distribution(data_root: Path) -> None:
    """Structured noise in a random class order: each noise.seed its own distribution, and its member's targets."""
    configs = members(data_root, noise={"delta": 0.1, "order": "random"}, train={"loss": "h_alpha"})[:2]
    trial = Trial(configs)
    dists = [torch.from_numpy(d).float() for d in trial.data.distributions]
    assert not torch.equal(dists[0], dists[1])
    y = torch.tensor([[0, 3, 9], [0, 3, 9]])
    targets = trial.to_target(y)
    assert targets.shape == (2, 3, 10)
    for k in range(2):  # alpha = 1: half the weight on the label, half spread as the member's distribution
        torch.testing.assert_close(targets[k], (torch.eye(10)[y[k]] + dists[k][y[k]]) / 2)
