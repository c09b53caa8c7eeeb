"""Exact structure of every architecture (Figure 1): layer counts, widths, pooling positions, ResNet stems."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from study import models

MNIST, CIFAR = (1, 28, 28), (3, 32, 32)
WIDTHS = (32, 32, 64, 64, 128, 128)


def build(arch: str, shape=MNIST, classes: int = 10) -> nn.Module:
    with torch.device("meta"):  # structure only: no memory, no init cost (resnet101)
        return models.build(arch, shape, classes, 256, WIDTHS, 128)


def kinds(net: nn.Module) -> list[str]:
    """The leaf layers that matter, in order: L(in,out), C(in,out,k), P."""
    out = []
    for m in net.modules():
        if isinstance(m, nn.Linear):
            out.append(f"L{m.in_features},{m.out_features}")
        elif isinstance(m, nn.Conv2d):
            out.append(f"C{m.in_channels},{m.out_channels},{m.kernel_size[0]}")
        elif isinstance(m, nn.MaxPool2d):
            out.append("P")
    return out


@pytest.mark.parametrize("arch,expected", [
    ("perceptron", ["L784,10"]),
    ("mlp1", ["L784,256", "L256,10"]),
    ("mlp2", ["L784,256", "L256,256", "L256,10"]),
    ("mlp4", ["L784,256", "L256,256", "L256,256", "L256,256", "L256,10"]),
    # conv2 pools after each conv: 28 -> 14 -> 7
    ("conv2", ["C1,32,3", "P", "C32,32,3", "P", "L1568,128", "L128,10"]),
    # deeper nets pool after every second conv: conv4 28 -> 14 -> 7; conv6 28 -> 14 -> 7 -> 3
    ("conv4", ["C1,32,3", "C32,32,3", "P", "C32,64,3", "C64,64,3", "P", "L3136,128", "L128,10"]),
    ("conv6", ["C1,32,3", "C32,32,3", "P", "C32,64,3", "C64,64,3", "P", "C64,128,3", "C128,128,3", "P",
               "L1152,128", "L128,10"]),
])
def test_mlp_and_convnet_layers_exactly(arch: str, expected: list[str]) -> None:
    assert kinds(build(arch)) == expected


def test_default_widths_are_the_documented_ones() -> None:
    """MLP hidden layers of 256 units, conv widths 32-32-64-64-128-128 and a 128-unit FC layer (models' docstring)."""
    with torch.device("meta"):
        assert kinds(models.build("mlp1", MNIST, 10)) == ["L784,256", "L256,10"]
        assert kinds(models.build("conv6", MNIST, 10)) == kinds(build("conv6"))


def test_convnet_pools_while_the_image_has_two_pixels() -> None:
    """2x2 pooling needs 2 pixels: a 2x2 input pools once to 1x1, then no more."""
    assert kinds(build("conv2", (1, 2, 2))) == ["C1,32,3", "P", "C32,32,3", "L32,128", "L128,10"]
    assert kinds(build("conv4", (1, 3, 3))) == ["C1,32,3", "C32,32,3", "P", "C32,64,3", "C64,64,3", "L64,128", "L128,10"]


def test_relu_follows_every_hidden_layer() -> None:
    net = build("mlp4")
    layers = list(net)
    relus = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]
    linears = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    assert relus == [i + 1 for i in linears[:-1]] and linears[-1] == len(layers) - 1  # logits: no ReLU


def test_convnet_on_cifar_shapes() -> None:
    assert kinds(build("conv4", CIFAR, 100))[-2:] == ["L4096,128", "L128,100"]  # 32 -> 16 -> 8, 64 * 8 * 8
    assert kinds(build("conv6", CIFAR))[-2] == "L2048,128"  # 32 -> 16 -> 8 -> 4
    with torch.no_grad():  # and the real forward pass agrees with the computed flatten size
        out = models.build("conv6", CIFAR, 10, 256, WIDTHS, 128)(torch.zeros(2, *CIFAR))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("arch,blocks", [("resnet18", [2, 2, 2, 2]), ("resnet101", [3, 4, 23, 3])])
@pytest.mark.parametrize("shape,small", [(CIFAR, True), (MNIST, True), ((3, 64, 64), True), ((3, 65, 65), False),
                                         ((3, 224, 224), False), ((1, 128, 128), False),
                                         ((4, 96, 96), False)])
def test_resnet_stem(arch: str, blocks: list[int], shape: tuple[int, int, int], small: bool) -> None:
    net = build(arch, shape, 10)
    conv1 = net.conv1
    assert conv1.in_channels == shape[0] and conv1.out_channels == 64 and conv1.bias is None
    if small:  # CIFAR-style: 3x3 stride 1, no max-pool
        assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
        assert isinstance(net.maxpool, nn.Identity)
    else:  # ImageNet stem kept: 7x7 stride 2 and a 3x3/2 max-pool
        assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((7, 7), (2, 2), (3, 3))
        assert isinstance(net.maxpool, nn.MaxPool2d)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == blocks
    assert net.fc.out_features == 10


def test_resnet_small_stem_keeps_32px_resolution_into_layer1() -> None:
    net = models.build("resnet18", CIFAR, 10).eval()
    with torch.no_grad():
        x = net.relu(net.bn1(net.conv1(torch.zeros(1, *CIFAR))))
        assert net.layer1(net.maxpool(x)).shape == (1, 64, 32, 32)
