"""Every architecture builds for any (channels, H, W, classes) and gives logits of the right shape."""

from __future__ import annotations

import pytest
import torch

from errors import UsageError
from study import models


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 10), ((3, 32, 32), 100), ((3, 8, 8), 7)])
def test_output_shape(arch: str, shape: tuple[int, int, int], classes: int) -> None:
    with torch.device("meta"):  # shapes only: no weights are drawn (resnet101's 44M took seconds on a CPU)
        net = models.build(arch, shape, classes)
        assert net(torch.zeros(4, *shape)).shape == (4, classes)


@pytest.mark.parametrize("arch", ["vgg", "resnet50", "mlp3", "conv3"])  # a family name alone is not enough
def test_unknown_arch_rejected(arch: str) -> None:
    with pytest.raises(UsageError, match=f"^model.arch='{arch}' is unknown: choose one of perceptron, mlp1"):
        models.build(arch, (1, 28, 28), 10)


def test_too_few_conv_widths_rejected() -> None:
    with pytest.raises(UsageError, match=r"^model.conv_channels has 3 widths; conv4 needs 4$"):
        models.build("conv4", (1, 28, 28), 10, conv_channels=(8, 8, 8))
