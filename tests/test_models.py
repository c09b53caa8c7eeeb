"""Every architecture builds for any (channels, H, W, classes) and gives logits of the right shape."""

from __future__ import annotations

import pytest
import torch

from errors import UsageError
from study import models


@pytest.mark.parametrize("arch", models.ARCHS)
@pytest.mark.parametrize("shape,classes", [((1, 28, 28), 10), ((3, 32, 32), 100), ((3, 8, 8), 7)])
def test_output_shape(arch: str, shape: tuple[int, int, int], classes: int) -> None:
    net = models.build(arch, shape, classes)
    assert net(torch.zeros(4, *shape)).shape == (4, classes)


def test_unknown_arch_rejected() -> None:
    with pytest.raises(UsageError, match="model.arch='vgg'.*choose one of perceptron"):
        models.build("vgg", (1, 28, 28), 10)
