"""The GPU-present path: runs only where CUDA is visible (and says why it skipped otherwise).
A fused step in bf16 on CUDA equals the fp32 CPU step within bf16 tolerance; device=auto picks CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

from study.models import build
from study.train import Fused, Single
from study.trial import pick_device

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device visible: the GPU-present path (bf16 fused/single steps "
                                       "on CUDA vs CPU) runs only on a GPU machine")
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def members(k: int) -> list[torch.nn.Module]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build("conv2", (1, 28, 28), 10, conv_channels=(8, 16), fc_hidden=32))
    return out


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (2, 64), generator=g)


def test_auto_device_is_cuda() -> None:
    assert pick_device("auto").type == "cuda"


@pytest.mark.parametrize("compile_mode", [None, "reduce-overhead"])
def test_fused_step_on_cuda_equals_cpu_within_bf16(compile_mode: str | None) -> None:
    x, y = batch()
    cpu = Fused(members(2), [0.5, 0.1], CPU)
    gpu = Fused(members(2), [0.5, 0.1], CUDA, compile_mode)
    for _ in range(3):
        loss_cpu = cpu.step(x, y)
        loss_gpu = gpu.step(x.to(CUDA), y.to(CUDA))
        torch.testing.assert_close(loss_gpu.float().cpu(), loss_cpu, rtol=3e-2, atol=3e-2)
    for k in range(2):
        for name, w in cpu.weights(k).items():
            torch.testing.assert_close(gpu.weights(k)[name].float().cpu(), w, rtol=5e-2, atol=5e-3)
    logits_cpu, logits_gpu = cpu.logits(x), gpu.logits(x.to(CUDA)).float().cpu()
    assert (logits_cpu.argmax(-1) == logits_gpu.argmax(-1)).float().mean() > 0.95


def test_single_step_on_cuda_equals_cpu_within_bf16() -> None:
    x, y = batch()
    model = members(1)[0]
    cpu, gpu = Single(copy.deepcopy(model), 0.5, CPU), Single(copy.deepcopy(model), 0.5, CUDA)
    for _ in range(3):
        torch.testing.assert_close(gpu.step(x.to(CUDA), y[:1].to(CUDA)).float().cpu(), cpu.step(x, y[:1]),
                                   rtol=3e-2, atol=3e-2)
    for name, w in cpu.weights(0).items():
        torch.testing.assert_close(gpu.weights(0)[name].float().cpu(), w, rtol=5e-2, atol=5e-3)


def test_h_alpha_targets_on_cuda_equal_cpu() -> None:
    from loaders.noise import uniform_distribution
    from study import losses

    dists = torch.from_numpy(uniform_distribution(10))[None].repeat(2, 1, 1)
    y = torch.randint(0, 10, (2, 64))
    cpu = losses.targets("h_alpha", 4.0, dists)(y)
    gpu = losses.targets("h_alpha", 4.0, dists.to(CUDA))(y.to(CUDA))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_tensor_loader_on_cuda_equals_cpu() -> None:
    """loaders.tensor on CUDA: every batch on the device, its labels equal to the CPU's bit for bit and its images
    within float rounding (white noise's log and cos may differ in the last bit); the test batches too."""
    from loaders.datasets import ImageSet
    from loaders.noise import NoiseModel, NoiseSpec
    from loaders.tensor import TensorLoader, batches

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (500, 1, 4, 4), dtype=torch.uint8, generator=g)
    data = ImageSet(images, torch.arange(500) % 10, 10, (0.3,), (0.2,))
    noises = [NoiseModel(NoiseSpec(alpha=3, seed=s, source="white"), data.labels, 10) for s in (1, 2)]
    cpu, gpu = (TensorLoader(data, noises, 64, seed=5, device=d) for d in (CPU, CUDA))
    for (x, y), (xg, yg) in zip(cpu, gpu, strict=True):
        assert xg.device.type == yg.device.type == "cuda"
        assert torch.equal(yg.cpu(), y)
        torch.testing.assert_close(xg.cpu(), x)
    for (x, y), (xg, yg) in zip(batches(data, 64, CPU), batches(data, 64, CUDA), strict=True):
        assert xg.device.type == yg.device.type == "cuda"
        assert torch.equal(yg.cpu(), y) and torch.equal(xg.cpu(), x)
