"""study.train by exact values: `Fused.__init__` (the architecture taken from the first model and kept without
weights, on the meta device; the weights, optimizer state and learning rates on the device asked for, the rates in
the weights' dtype; a group of one member) and its `compile_mode` branches, `Fused._fused_step`'s Adadelta averages
after one and two steps against torch's Adadelta written out by hand, `Single` (its model on the device asked for,
a fresh gradient each step, the learning rate asked for), both nets' state_dict round trips, `evaluate`'s top-5
counting rows, `autocast` (off on a CPU, bf16 on CUDA), `fit` (each epoch's mean per-image loss over batches of
unequal size, images per second, test and validation accuracy per member, no reports when no epoch is left, losses
summed on the group's device) and `confusion_matrices` counting on the batch's device, not the default one.

Stand-ins: torch.compile, torch._dynamo.reset and torch._dynamo.mark_static_address are replaced by recorders
(compiling for real takes tens of seconds on a CPU, and CUDA graphs need a GPU): the tests check what Fused asks of
them (which mode, which tensors held at fixed addresses) and that its step goes through what torch.compile
returned. `Clock` stands in for study.train's time module (fit's images per second from given readings, not the
wall clock). torch.cuda.amp.common.amp_definitely_not_available and torch.cuda.is_bf16_supported are told CUDA is
there, so autocast on CUDA is constructed (never entered) on a machine without a GPU. The meta device stands in for
an accelerator where a test needs a device other than the CPU: tensors there have a device and a dtype but no data.
The one CUDA test is skipped without a GPU."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

from study import train
from study.train import (EPS, RHO, EpochReport, Fused, Single, autocast, confusion_matrices, evaluate,
                         fit)
from tests.test_train import CPU, LOGITS, TRUE, identity_net

META = torch.device("meta")


def leaky(slope: float) -> nn.Sequential:
    """Two members can differ only where no weight is: here the activation's negative slope."""
    linear = nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]]))
        linear.bias.copy_(torch.tensor([0.5, -0.5]))
    return nn.Sequential(linear, nn.LeakyReLU(slope))


def test_the_architecture_is_the_first_members_and_holds_no_weights() -> None:
    x = -torch.ones(2, 3) * torch.tensor([[1.0], [2.0]])  # negative inputs: the slope shows in every output
    first, second = leaky(0.5), leaky(0.01)
    net = Fused([first, second], [1.0, 1.0], CPU)
    assert isinstance(net.base[1], nn.LeakyReLU) and net.base[1].negative_slope == 0.5
    with torch.no_grad():  # pre-activations -2.5, -4.5 and -5.5, -8.5; member 1 too goes through slope 0.5
        assert net.logits(x).tolist() == [[[-1.25, -2.25], [-2.75, -4.25]]] * 2
    assert all(p.device == META for p in net.base.parameters())  # the weights live in net.params only
    assert net.base is not first and first[0].weight.device == CPU  # a copy: the member itself is untouched


def test_a_group_of_one_member_equals_single() -> None:
    model = identity_net(8)
    net = Fused([model], [1.0], CPU)
    assert net.lr.tolist() == [1.0] and net.params["weight"].shape == (1, 8, 8)
    top = net.logits(LOGITS).argmax(-1)
    assert top.tolist() == [LOGITS.argmax(-1).tolist()]
    counts = confusion_matrices(net, [(LOGITS, TRUE)], 8)
    assert torch.equal(counts, confusion_matrices(Single(identity_net(8), 1.0, CPU), [(LOGITS, TRUE)], 8))


def test_weights_state_and_learning_rates_go_to_the_device_asked_for() -> None:
    """CPU models, device meta: every tensor Fused keeps is on meta, none stays behind on the CPU."""
    net = Fused([identity_net(4), identity_net(4)], [0.1, 1.0], META)
    for state in (net.params, net.square_avg, net.acc_delta):
        assert [(k, t.device, t.shape) for k, t in state.items()] == [("weight", META, (2, 4, 4))]
    assert net.lr.device == META and net.lr.shape == (2,) and net.lr.dtype == torch.float32
    assert net.device == META


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_learning_rates_in_the_weights_dtype(dtype: torch.dtype) -> None:
    """float32 weights: float32 rates; float64 weights: float64 rates, 0.1 kept exact as torch's Adadelta keeps it."""
    net = Fused([identity_net(4).to(dtype), identity_net(4).to(dtype)], [0.1, 0.7], CPU)
    assert net.lr.dtype == dtype and net.lr.device == CPU
    assert net.lr.tolist() == torch.tensor([0.1, 0.7], dtype=dtype).tolist()
    if dtype == torch.float64:
        assert net.lr.tolist() == [0.1, 0.7]


class Compiler:
    """Records what Fused asks of torch.compile and dynamo; the 'compiled' step is the step itself, counted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.modes: list[Any] = []
        self.static: list[torch.Tensor] = []
        self.resets = self.calls = 0
        monkeypatch.setattr(torch, "compile", self.compile)
        monkeypatch.setattr(torch._dynamo, "reset", self.reset)
        monkeypatch.setattr(torch._dynamo, "mark_static_address", self.static.append)

    def reset(self) -> None:
        self.resets += 1

    def compile(self, fn: Any, mode: Any = "unset", **kwargs: Any) -> Any:
        assert not kwargs
        self.modes.append(mode)

        def compiled(*args: Any) -> Any:
            self.calls += 1
            return fn(*args)
        return compiled


def fused(compile_mode: str | None) -> Fused:
    return Fused([identity_net(4), identity_net(4)], [0.1, 1.0], CPU, compile_mode)


def step(net: Fused) -> torch.Tensor:
    return net.step(torch.eye(4), torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))


def test_no_compile_mode_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = Compiler(monkeypatch)
    net = fused(None)
    assert (compiler.modes, compiler.static, compiler.resets) == ([], [], 0)
    assert net._step == net._fused_step
    step(net)
    assert compiler.calls == 0


@pytest.mark.parametrize("mode, asked", [("default", None), ("max-autotune", "max-autotune")])
def test_compile_modes_without_cuda_graphs(monkeypatch: pytest.MonkeyPatch, mode: str, asked: str | None) -> None:
    """mode=default is torch.compile's mode=None; no tensor is pinned to its address."""
    compiler = Compiler(monkeypatch)
    net = fused(mode)
    assert (compiler.modes, compiler.static, compiler.resets) == ([asked], [], 1)
    plain = fused(None)
    torch.testing.assert_close(step(net), step(plain), rtol=0, atol=0)
    assert compiler.calls == 1  # the step went through what torch.compile returned


def test_reduce_overhead_pins_every_mutated_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA graphs replay fixed addresses: the weights, both Adadelta averages and the rates are marked static."""
    compiler = Compiler(monkeypatch)
    net = fused("reduce-overhead")
    assert compiler.modes == ["reduce-overhead"] and compiler.resets == 1
    expected = [*net.params.values(), *net.square_avg.values(), *net.acc_delta.values(), net.lr]
    assert [id(t) for t in compiler.static] == [id(t) for t in expected] and len(expected) == 4
    step(net)
    assert compiler.calls == 1


def expected_counts() -> torch.Tensor:
    counts = torch.zeros(2, 8, 8, dtype=torch.int64)
    for k, predicted in enumerate(([0, 0, 0, 7, 7, 1], [7, 7, 7, 0, 0, 6])):
        for t, p in zip(TRUE.tolist(), predicted):
            counts[k, t, p] += 1
    return counts


def flipped(m: int) -> nn.Linear:
    """The class order reversed: logit j = x[m - 1 - j]."""
    net = identity_net(m)
    with torch.no_grad():
        net.weight.copy_(torch.eye(m).flip(0))
    return net


def flipped_pair(device: torch.device) -> Fused:
    return Fused([identity_net(8), flipped(8)], [1.0, 1.0], device)


def test_confusion_matrices_count_on_the_batches_device_not_the_default_one() -> None:
    """A process whose default device is another (torch.set_default_device, here meta) still counts CPU batches
    on the CPU: the member index is made where the labels are."""
    net = flipped_pair(CPU)
    with torch.device("meta"):
        counts = confusion_matrices(net, [(LOGITS[:4], TRUE[:4]), (LOGITS[4:], TRUE[4:])], 8)
    assert counts.device == CPU and torch.equal(counts, expected_counts())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_confusion_matrices_on_cuda() -> None:
    cuda = torch.device("cuda")
    counts = confusion_matrices(flipped_pair(cuda), [(LOGITS.to(cuda), TRUE.to(cuda))], 8)
    assert counts.device == CPU and torch.equal(counts, expected_counts())


def test_autocast_is_off_on_a_cpu() -> None:
    context = autocast(CPU)
    assert context.device == "cpu" and not context._enabled


def test_autocast_asks_for_bf16_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16, not torch's CUDA default fp16 (which would need loss scaling); constructed only, never entered, so a
    machine without a GPU checks it too: torch is told CUDA is there, else it would disable autocast itself."""
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    context = autocast(torch.device("cuda"))
    assert (context.device, context.fast_dtype, context._enabled) == ("cuda", torch.bfloat16, True)


def test_single_puts_its_model_on_the_device_asked_for() -> None:
    net = Single(identity_net(4), 1.0, META)
    assert net.model.weight.device == META and net.device == META


def test_single_frees_the_last_gradient_before_the_next_backward() -> None:
    """zero_grad(set_to_none=True): each backward writes a fresh gradient, so one read after a step keeps its
    values; zeroing in place would overwrite it with the next batch's gradient."""
    net = Single(identity_net(2), 0.0, CPU)  # lr 0: the weights stay the identity, the gradients are by hand
    net.step(torch.tensor([[1.0, 0.0]]), torch.tensor([[0]]))
    first = net.model.weight.grad
    net.step(torch.tensor([[0.0, 2.0]]), torch.tensor([[1]]))
    # (softmax of the logits x - the one-hot target) outer x: softmax([1, 0]) - (1, 0) = (-r, r), r = 1/(1+e);
    # softmax([0, 2]) - (0, 1) = (s, -s), s = 1/(1+e^2)
    r, s = 1 / (1 + math.e), 1 / (1 + math.e ** 2)
    torch.testing.assert_close(first, torch.tensor([[-r, 0.0], [r, 0.0]]))
    torch.testing.assert_close(net.model.weight.grad, torch.tensor([[0.0, 2 * s], [0.0, -2 * s]]))
    assert net.model.weight.grad is not first
    assert torch.equal(net.model.weight, torch.eye(2))  # the rate asked for (0), not Adadelta's default 1.0


def test_single_state_dict_round_trip() -> None:
    """A fresh Single loaded from a stepped one holds its weights and its Adadelta averages."""
    x, target = torch.tensor([[1.0, 0.0]]), torch.tensor([[1]])
    stepped, fresh = Single(identity_net(2), 1.0, CPU), Single(identity_net(2), 1.0, CPU)
    stepped.step(x, target)
    fresh.load_state_dict(stepped.state_dict())
    assert not torch.equal(stepped.model.weight, torch.eye(2))  # the step moved it: loading has something to copy
    assert torch.equal(fresh.model.weight, stepped.model.weight)
    for key in ("square_avg", "acc_delta"):
        assert torch.equal(fresh.optimizer.state[fresh.model.weight][key],
                           stepped.optimizer.state[stepped.model.weight][key])


def test_fused_state_dict_round_trip_in_place() -> None:
    """A fresh group loaded from a stepped one holds its weights and both averages, in its own tensors (a compiled
    step keeps their addresses)."""
    stepped, fresh = fused(None), fused(None)
    step(stepped)
    keys = ("params", "square_avg", "acc_delta")
    held = [getattr(fresh, key)["weight"] for key in keys]
    # the step changed each: loading has something to copy
    assert not any(torch.equal(t, getattr(stepped, key)["weight"]) for t, key in zip(held, keys))
    fresh.load_state_dict(stepped.state_dict())
    for t, key in zip(held, keys, strict=True):
        assert getattr(fresh, key)["weight"] is t and torch.equal(t, getattr(stepped, key)["weight"])


def adadelta_averages(g: float, steps: int) -> tuple[float, float]:
    """torch.optim.Adadelta's (square_avg, acc_delta) for one weight whose gradient is g every step."""
    square_avg = acc_delta = 0.0
    for _ in range(steps):
        square_avg = RHO * square_avg + (1 - RHO) * g * g
        delta = math.sqrt(acc_delta + EPS) / math.sqrt(square_avg + EPS) * g
        acc_delta = RHO * acc_delta + (1 - RHO) * delta * delta
    return square_avg, acc_delta


def test_fused_adadelta_averages_after_one_and_two_steps() -> None:
    """Zero weights, lr 0 (the weights stay zero, so the gradient is the same every step): every logit is 0, the
    softmax is 1/2 and 1/2, and the weight gradient is the batch mean of (1/2 - onehot) outer x."""
    zero = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        zero.weight.zero_()
    net = Fused([zero, copy.deepcopy(zero)], [0.0, 0.0], CPU)
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([[0, 0], [1, 0]])
    grads = [[[-0.25, -0.5], [0.25, 0.5]], [[0.25, -0.5], [-0.25, 0.5]]]  # member 1's first example says class 1
    for steps in (1, 2):
        assert net.step(x, target).tolist() == pytest.approx([math.log(2)] * 2)
        for state, which in ((net.square_avg, 0), (net.acc_delta, 1)):
            expected = [[[adadelta_averages(g, steps)[which] for g in row] for row in member] for member in grads]
            torch.testing.assert_close(state["weight"], torch.tensor(expected, dtype=torch.float64),
                                       rtol=1e-12, atol=0)
    assert net.params["weight"].abs().max() == 0


def test_top5_counts_every_row_whose_label_is_in_its_top_five() -> None:
    """Two rows with their labels at the same rank count twice: a top-5 hit per row, not per rank."""
    net = Fused([identity_net(8), flipped(8)], [1.0, 1.0], CPU)
    x = rows([9, 8, 7, 6, 5, 4, 3, 2], [9, 8, 7, 6, 5, 4, 3, 2], [9, 8, 7, 6, 5, 4, 3, 2])
    # member 0 ranks the labels 2nd, 2nd and 8th; member 1 (reversed) 7th, 7th and 1st
    top1, top5 = evaluate(net, [(x, torch.tensor([1, 1, 7]))])
    assert top1.tolist() == [0.0, 1 / 3] and top5.tolist() == [2 / 3, 1 / 3]


L5 = math.log(5)


def rows(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# Six classes, member 1 flipped; logits (log 5, 0, 0, 0, 0, 0): softmax 1/2 on the first, 1/10 on each other; zeros: 1/6 each.
TRAIN = [(rows([L5, 0, 0, 0, 0, 0], [0] * 6, [0, 0, 0, 0, 0, L5]), torch.tensor([[0, 2, 0], [1, 1, 1]])),
         (rows([L5, 0, 0, 0, 0, 0], [0] * 6), torch.tensor([[0, 3], [5, 3]]))]
# member 0: log 2 + log 6 + log 10, then log 2 + log 6; member 1 (reversed): log 10 + log 6 + log 10, then the same
# log 2 + log 6; 5 images in batches of 3 and 2 (2 members: a count of members instead of images would give 4)
TRAIN_LOSS = [math.log(1440) / 5, math.log(7200) / 5]
# val: member 0 ranks class 0 first and class 4 fifth; member 1 (reversed) ranks class 0 last, class 4 second
VAL = [(rows([6, 5, 4, 3, 2, 1], [6, 5, 4, 3, 2, 1]), torch.tensor([0, 4]))]
# test: class 5 ranked first by member 0, last (sixth) by member 1
TEST = [(rows([1, 2, 3, 4, 5, 6]), torch.tensor([5]))]


class Clock:
    """Stands in for time.perf_counter in study.train: the readings it is given, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, readings: list[float]) -> None:
        self.readings = iter(readings)
        monkeypatch.setattr(train, "time", self)

    def perf_counter(self) -> float:
        return next(self.readings)


def test_fit_reports_the_epochs_mean_loss_speed_and_accuracies(monkeypatch: pytest.MonkeyPatch) -> None:
    """lr 0: the weights never move, so every epoch's losses are the hand-made logits' cross-entropies."""
    Clock(monkeypatch, [10.0, 12.0, 20.0, 28.0])  # 5 images in 2 s, then in 8 s
    net = Fused([identity_net(6), flipped(6)], [0.0, 0.0], CPU)
    seen: list[list[EpochReport]] = []
    epochs: list[int] = []
    last = fit(net, TRAIN, lambda: TEST, 3, lambda y: y, seen.append, start_epoch=1, set_epoch=epochs.append,
               val=lambda: VAL)
    assert epochs == [1, 2] and last == seen[-1]
    for reports, epoch, speed in zip(seen, (2, 3), (2.5, 0.625), strict=True):
        assert [(r.epoch, r.test_acc, r.test_top5, r.images_per_s, r.val_acc) for r in reports] == [
            (epoch, 1.0, 1.0, speed, 0.5), (epoch, 0.0, 0.0, speed, 0.0)]
        assert [r.train_loss for r in reports] == pytest.approx(TRAIN_LOSS, rel=1e-6)


def test_fit_of_one_image_without_a_validation_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """A single member, one batch of one image: its loss is the mean; no val split, val_acc NaN."""
    Clock(monkeypatch, [0.0, 0.25])
    net = Single(identity_net(6), 0.0, CPU)
    [report] = fit(net, [(rows([L5, 0, 0, 0, 0, 0]), torch.tensor([[0]]))], lambda: TEST, 1, lambda y: y,
                   lambda reports: None)
    assert (report.epoch, report.test_acc, report.images_per_s) == (1, 1.0, 4.0)
    assert report.train_loss == pytest.approx(math.log(2), rel=1e-6) and math.isnan(report.val_acc)


def test_fit_with_no_epoch_left_returns_no_reports() -> None:
    """A resumed trial that has already trained every epoch."""
    net = Single(identity_net(6), 0.0, CPU)
    assert fit(net, TRAIN, lambda: TEST, 2, lambda y: y, lambda reports: None, start_epoch=2) == []


def test_fit_sums_losses_on_the_nets_device_not_the_default_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process whose default device is another (here meta) still trains a CPU group on the CPU."""
    Clock(monkeypatch, [0.0, 1.0])
    net = Fused([identity_net(6), flipped(6)], [0.0, 0.0], CPU)
    with torch.device("meta"):
        reports = fit(net, TRAIN, lambda: TEST, 1, lambda y: y, lambda reports: None)
    assert [r.train_loss for r in reports] == pytest.approx(TRAIN_LOSS, rel=1e-6)
