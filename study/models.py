"""The architectures of the paper's Figure 1 for any (channels, height, width, classes).

The paper gives no widths; ours are set in the config (``model:``) and default to:
MLP hidden layers of 256 units; ConvNets of 3x3 convs with channels 32-32-64-64-128-128, a 2x2
max-pool after every second conv (after each conv for the 2-layer net), then a 128-unit FC layer.
ResNet-18/101 are torchvision's, with a 3x3 stride-1 stem and no max-pool for small images.
"""

from __future__ import annotations

from torch import nn

from errors import UsageError, invalid

ARCHS = ("perceptron", "mlp1", "mlp2", "mlp4", "conv2", "conv4", "conv6", "resnet18", "resnet101")


def mlp(in_features: int, classes: int, hidden: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(in_features if i == 0 else hidden, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden if depth else in_features, classes))
    return nn.Sequential(*layers)


def convnet(channels: int, height: int, width: int, classes: int, widths: list[int], fc_hidden: int) -> nn.Sequential:
    depth = len(widths)
    pool_every = 1 if depth <= 2 else 2  # 2-layer net pools after each conv; deeper ones after each pair
    layers: list[nn.Module] = []
    c, h, w = channels, height, width
    for i, out in enumerate(widths):
        layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
        c = out
        if (i + 1) % pool_every == 0 and min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, fc_hidden), nn.ReLU(), nn.Linear(fc_hidden, classes)]
    return nn.Sequential(*layers)


def build(arch: str, shape: tuple[int, int, int], classes: int, mlp_hidden: int = 256,
          conv_channels: tuple[int, ...] = (32, 32, 64, 64, 128, 128), fc_hidden: int = 128) -> nn.Module:
    """A fresh model of the named architecture for inputs of shape (C, H, W)."""
    c, h, w = shape
    if arch == "perceptron":
        return mlp(c * h * w, classes, mlp_hidden, 0)
    if arch.startswith("mlp") and arch in ARCHS:
        return mlp(c * h * w, classes, mlp_hidden, int(arch[3:]))
    if arch.startswith("conv") and arch in ARCHS:
        depth = int(arch[4:])
        if len(conv_channels) < depth:
            raise UsageError(f"model.conv_channels has {len(conv_channels)} widths; {arch} needs {depth}")
        return convnet(c, h, w, classes, list(conv_channels[:depth]), fc_hidden)
    if arch.startswith("resnet") and arch in ARCHS:
        return resnet(int(arch[6:]), c, h, classes)
    raise invalid("model.arch", arch, choices=ARCHS)


def resnet(depth: int, channels: int, height: int, classes: int) -> nn.Module:
    """torchvision's ResNet (random init, never downloaded); small images get a CIFAR-style stem."""
    import torchvision

    net = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=classes)
    if height <= 64:  # a 7x7/2 conv + max-pool would shrink 32x32 inputs to 8x8 before the first block
        net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return net
