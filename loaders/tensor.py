"""GPU-resident loader: the whole dataset as one uint8 tensor on the training device.

Each epoch is a seeded permutation of the diluted set's virtual indices; each batch gathers its
source images and asks the noise model for its labels, so nothing of size alpha * n is stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from loaders.datasets import ImageSet
from loaders.noise import WHITE, NoiseModel, WhiteNoise


def affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) so that uint8 * scale + shift == (x / 255 - mean) / std, per channel (every backend)."""
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def normalise(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> a new normalised tensor; in place after the one copy (every backend, bit-identical)."""
    return images.to(dtype).mul_(scale).add_(shift)


class TensorLoader:
    """Iterates over one epoch of (normalised images, noisy labels) batches of the diluted set."""

    def __init__(self, data: ImageSet, noise: NoiseModel, batch_size: int, seed: int,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        """data: the image table the noise model indexes (the clean images, then any noise pool)."""
        self.images = data.images.to(device)
        self.white = (WhiteNoise(noise.spec.seed, tuple(data.images.shape[1:]), data.mean, data.std)
                      if noise.spec.source == "white" else None)
        self.noise = noise.to(device)
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.scale, self.shift = affine(data.mean, data.std, device)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.noise.n_virtual // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """This epoch's visiting order; drawn on the CPU so every device sees the same order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.noise.n_virtual, generator=g).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for v in self.order().split(self.batch_size):
            source, labels = self.noise(v)
            images = self.images[source.clamp(min=0)]
            if self.white is not None:
                images = self.white.paste(images, v, source == WHITE)
            yield normalise(images, self.scale, self.shift, self.dtype), labels


def batches(data: ImageSet, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A clean split (the test set) in order, normalised like the training data."""
    images, labels = data.images.to(device), data.labels.to(device)
    scale, shift = affine(data.mean, data.std, device)
    for start in range(0, len(data), batch_size):
        yield normalise(images[start:start + batch_size], scale, shift), labels[start:start + batch_size]
