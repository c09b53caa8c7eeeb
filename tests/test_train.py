"""The trainer: the plain trainer and the tensor loader on real MNIST; top-1/top-5 on a hand-made model,
resume == straight run (weights included, single and fused), the same config twice gives the same run."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.denormals import TINY, averages, denormal_share, prepared
from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import TensorLoader
from study.train import Fused, Single, evaluate, fit
from study.trial import Trial
from tests.conftest import trial_config


def test_trainer_learns_mnist_subset(data_root: Path) -> None:
    torch.set_num_threads(2)
    reports = []
    # mlp1: 0.89 after 3 epochs, in a tenth of conv2's time (conv2 is trained in test_trial.py and the loss tests)
    Trial(trial_config(data_root, model={"arch": "mlp1"}, train={"epochs": 3})).run(lambda rs: reports.append(rs[0]))
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert reports[-1].test_acc >= 0.85, reports
    assert reports[-1].test_top5 >= reports[-1].test_acc
    assert all(r.images_per_s > 0 and r.train_loss > 0 for r in reports)


def test_epoch_visits_every_virtual_index_once(data_root: Path) -> None:
    trial = Trial(trial_config(data_root, noise={"alpha": 2.5, "seed": 1}, data={"n_clean": 300}))
    loader: TensorLoader = trial.loader
    assert len(loader) == -(-1050 // 128)
    order = loader.order()
    assert torch.equal(order.sort().values, torch.arange(1050))
    loader.set_epoch(1)
    assert not torch.equal(order, loader.order())  # a fresh permutation each epoch


def test_batches_are_normalised_images_with_noise_labels(data_root: Path) -> None:
    trial = Trial(trial_config(data_root, noise={"alpha": 1.0}, data={"n_clean": 200}))
    xs, ys = zip(*trial.loader)
    x, y = torch.cat(xs), torch.cat(ys, dim=1)[0]  # one member: label row 0
    assert x.shape == (400, 1, 28, 28) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 0.3 and 0.7 < x.std().item() < 1.3  # MNIST-normalised
    expected = NoiseModel(NoiseSpec(alpha=1.0), trial.noise.rows, 10)(trial.loader.order())[1]
    assert torch.equal(y, expected)


def test_resume_from_state_continues_epochs(data_root: Path) -> None:
    config = trial_config(data_root, model={"arch": "mlp1"}, data={"n_clean": 500}, train={"epochs": 2})
    first = Trial(config)
    first.run(lambda r: None)
    resumed = Trial({**config, "train": {**config["train"], "epochs": 3}})
    resumed.load_state_dict(first.state_dict())
    reports = []
    resumed.run(lambda rs: reports.append(rs[0]))
    assert [r.epoch for r in reports] == [3]


CPU = torch.device("cpu")


def identity_net(m: int) -> nn.Linear:
    net = nn.Linear(m, m, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(m))
    return net


# Logits over 8 classes; the true class is ranked 1st, 2nd, 5th, 6th, 8th and 3rd.
LOGITS = torch.tensor([[9, 8, 7, 6, 5, 4, 3, 2],
                       [9, 8, 7, 6, 5, 4, 3, 2],
                       [9, 8, 7, 6, 5, 4, 3, 2],
                       [2, 3, 4, 5, 6, 7, 8, 9],
                       [2, 3, 4, 5, 6, 7, 8, 9],
                       [1, 9, 8, 2, 3, 4, 5, 6]], dtype=torch.float32)
TRUE = torch.tensor([0, 1, 4, 2, 0, 7])


def test_top1_and_top5_on_a_hand_made_model() -> None:
    net = Single(identity_net(8), 1.0, CPU)
    top1, top5 = evaluate(net, [(LOGITS[:4], TRUE[:4]), (LOGITS[4:], TRUE[4:])])  # two batches
    assert top1.tolist() == [1 / 6] and top5.tolist() == [4 / 6]  # ranks 1, 2, 5, 3 are in the top 5


def test_top5_per_member_of_a_fused_group() -> None:
    flip = identity_net(8)
    with torch.no_grad():
        flip.weight.copy_(torch.eye(8).flip(0))  # member 1 sees the classes in reverse: ranks reversed
    net = Fused([identity_net(8), flip], [1.0, 1.0], CPU)
    top1, top5 = evaluate(net, [(LOGITS, TRUE)])
    # member 1's logits are reversed: ranks 8, 7, 4, 3, 1, 6 -> top-1 one, top-5 three
    assert top1.tolist() == [1 / 6, 1 / 6] and top5.tolist() == [4 / 6, 3 / 6]


@pytest.mark.parametrize("classes", [3, 5, 6])
def test_top5_with_five_classes_or_fewer_is_nan(classes: int) -> None:
    """Every guess is in the top 5 of 5 classes or fewer: top-5 says nothing there, and is NaN (issue 23)."""
    net = Single(identity_net(classes), 1.0, CPU)
    logits = torch.arange(classes, 0, -1, dtype=torch.float32).repeat(2, 1)  # class 0 ranked first, the last one last
    top1, top5 = evaluate(net, [(logits, torch.tensor([classes - 1, 0]))])
    assert top1.tolist() == [0.5]
    assert math.isnan(top5.item()) if classes <= 5 else top5.tolist() == [0.5]  # class 5 ranks 6th of 6


def reports_of(trial: Trial) -> list[list[tuple]]:
    out = []
    trial.run(lambda rs: out.append([(r.epoch, r.train_loss, r.test_acc, r.test_top5) for r in rs]))
    return out


def weights(trial: Trial, k: int) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in trial.net.weights(k).items()}


def group(data_root: Path, epochs: int, members: int) -> list[dict] | dict:
    base = trial_config(data_root, model={"arch": "mlp1", "mlp_hidden": 64}, data={"n_clean": 400, "n_test": 300},
                        noise={"alpha": 1.0}, train={"epochs": epochs, "batch_size": 64, "lr": 0.5})
    if members == 1:
        return base
    return [{**base, "train": {**base["train"], "lr": lr, "seed": seed}, "noise": {**base["noise"], "seed": seed}}
            for lr, seed in zip((0.5, 0.2), (0, 1))]


@pytest.mark.parametrize("members", [1, 2])
def test_two_epochs_resume_one_equals_three_straight(data_root: Path, members: int) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        straight = Trial(group(data_root, 3, members))
        assert isinstance(straight.net, Single if members == 1 else Fused)
        straight_reports = reports_of(straight)

        first = Trial(group(data_root, 2, members))
        first_reports = reports_of(first)
        state = copy.deepcopy(first.state_dict())
        del first  # nothing is shared with the resumed trial but the state
        resumed = Trial(group(data_root, 3, members))
        fresh = [weights(resumed, k) for k in range(members)]
        resumed.load_state_dict(state)
        resumed_reports = reports_of(resumed)
    finally:
        torch.use_deterministic_algorithms(False)
    assert [r[0][0] for r in resumed_reports] == [3]
    assert first_reports + resumed_reports == straight_reports
    for k in range(members):
        w_straight, w_resumed = weights(straight, k), weights(resumed, k)
        assert w_straight.keys() == w_resumed.keys()
        for name in w_straight:
            assert torch.equal(w_straight[name], w_resumed[name]), name
            assert not torch.equal(w_straight[name], fresh[k][name])  # training moved them


@pytest.mark.parametrize("members", [1, 2])
def test_same_config_twice_gives_the_same_run(data_root: Path, members: int) -> None:
    torch.set_num_threads(1)
    runs = []
    for _ in range(2):
        trial = Trial(group(data_root, 2, members))
        runs.append((reports_of(trial), [weights(trial, k) for k in range(members)]))
    (r1, w1), (r2, w2) = runs
    assert r1 == r2
    for a, b in zip(w1, w2):
        assert all(torch.equal(a[n], b[n]) for n in a)
    if members == 2:  # and the members really differ (own lr, init and labels)
        assert r1[-1][0][1:] != r1[-1][1][1:]


def test_different_train_seed_gives_a_different_run(data_root: Path) -> None:
    torch.set_num_threads(1)
    a = reports_of(Trial(group(data_root, 1, 1)))
    config = group(data_root, 1, 1)
    b = reports_of(Trial({**config, "train": {**config["train"], "seed": 5}}))
    assert a != b


def test_confusion_matrices_by_hand() -> None:
    from study.train import confusion_matrices

    flip = identity_net(8)
    with torch.no_grad():
        flip.weight.copy_(torch.eye(8).flip(0))
    counts = confusion_matrices(Fused([identity_net(8), flip], [1.0, 1.0], CPU), [(LOGITS[:4], TRUE[:4]),
                                                                                (LOGITS[4:], TRUE[4:])], 8)
    expected = torch.zeros(2, 8, 8, dtype=torch.int64)
    for k, predicted in enumerate(([0, 0, 0, 7, 7, 1], [7, 7, 7, 0, 0, 6])):
        for t, p in zip(TRUE.tolist(), predicted):
            expected[k, t, p] += 1  # row = true class, column = predicted
    assert counts.dtype == torch.int64 and torch.equal(counts, expected)
    single = confusion_matrices(Single(identity_net(8), 1.0, CPU), [(LOGITS, TRUE)], 8)
    assert torch.equal(single, expected[:1])


def test_fused_rejects_models_with_buffers() -> None:
    with pytest.raises(ValueError, match=r"^Fused trains models without buffers only \(no BatchNorm\)$"):
        Fused([nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))] * 2, [1.0, 1.0], CPU)


@pytest.mark.parametrize("kind", ["single", "fused"])
def test_fit_keeps_adadelta_averages_out_of_the_denormal_range(kind: str) -> None:
    """Dead units' Adadelta averages decay into denormals and stick there, where CPU steps are ~2.3x slower
    (bench.denormals); the same steps through fit leave none, and the thread's IEEE default is back after it."""
    torch.set_num_threads(1)  # the flushing flag is per thread, as a CPU trial trains
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (4, 16))
    y = y[:1] if kind == "single" else y
    net = prepared(kind, "mlp1", 0.7, (x, y), warm=0)
    with torch.no_grad():  # start near the bottom of the normal range: 150 steps cross it instead of about 700
        for average in averages(net):
            average.mul_(1e-30)
    outside, through = copy.deepcopy(net), copy.deepcopy(net)
    for _ in range(150):
        outside.step(x, y)
    assert denormal_share(outside) > 0.5  # the state the flush is for: without it, most averages are denormal
    fit(through, [(x, y)] * 150, lambda: [(x, y[0])], 1, lambda t: t, lambda reports: None)
    assert denormal_share(through) == 0.0
    assert [p.abs().max() > 0 for p in averages(through)] == [p.abs().max() > 0 for p in averages(outside)]
    assert (torch.tensor([TINY]) * 0.5).item() > 0  # a denormal result survives again after fit
