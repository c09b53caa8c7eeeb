"""study.train by exact values: `Fused.__init__` (the architecture taken from the first model and kept without
weights, on the meta device; the weights, optimizer state and learning rates on the device asked for, the rates in
the weights' dtype; a group of one member) and its `compile_mode` branches, and `confusion_matrices` counting on
the batch's device, not the default one.

Stand-ins: torch.compile, torch._dynamo.reset and torch._dynamo.mark_static_address are replaced by recorders
(compiling for real takes tens of seconds on a CPU, and CUDA graphs need a GPU): the tests check what Fused asks of
them (which mode, which tensors held at fixed addresses) and that its step goes through what torch.compile
returned. The meta device stands in for an accelerator where a test needs a device other than the CPU: tensors
there have a device and a dtype but no data. The one CUDA test is skipped without a GPU."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from study.train import Fused, Single, confusion_matrices
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


def flipped_pair(device: torch.device) -> Fused:
    flip = identity_net(8)
    with torch.no_grad():
        flip.weight.copy_(torch.eye(8).flip(0))
    return Fused([identity_net(8), flip], [1.0, 1.0], device)


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
