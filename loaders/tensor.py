"""GPU-resident loader: the whole dataset as one uint8 tensor on the training device.

Each epoch is a seeded permutation of the diluted set's virtual indices. The noise model runs once per
epoch over the whole order, in chunks of 2**20 indices on the training device, one label row per member
noise model; a batch is then a slice, so nothing of size alpha * n outlives the epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from loaders.datasets import ImageSet
from loaders.noise import WHITE, NoiseModel, WhiteNoise

LABEL_CHUNK = 1 << 20  # virtual indices per noise-model call: a few large kernels instead of many per batch
GATHER_IMAGES = 8192  # images gathered and normalised per call, then cut into batches (fewer, larger kernels)


def affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) so that uint8 * scale + shift == (x / 255 - mean) / std, per channel (every backend)."""
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def normalise(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> a new normalised tensor; in place after the one copy (every backend, bit-identical)."""
    return images.to(dtype).mul_(scale).add_(shift)


def epoch_labels(noises: Sequence[NoiseModel], v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(source rows, labels (K, N)) of the virtual indices v for K noise models sharing one image table."""
    sources, labels = [], []
    for chunk in v.split(LABEL_CHUNK):
        source, first = noises[0](chunk)
        sources.append(source)
        labels.append(torch.stack([first, *(noise(chunk)[1] for noise in noises[1:])]))
    return torch.cat(sources), torch.cat(labels, dim=1)


class TensorLoader:
    """Iterates over one epoch of (normalised images, noisy labels (K, B)) batches of the diluted set.

    noises: one noise model per group member (they differ only in their seed's labels); the first one's
    image sources are every member's.
    """

    def __init__(self, data: ImageSet, noises: Sequence[NoiseModel], batch_size: int, seed: int,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        """data: the image table the noise models index (the clean images, then any noise pool)."""
        self.images = data.images.to(device)
        self.noises = [noise.to(device) for noise in noises]
        spec = self.noises[0].spec
        self.white = WhiteNoise(spec.seed, tuple(data.images.shape[1:]), data.mean, data.std) if spec.source == "white" else None
        self.n_virtual = self.noises[0].n_virtual
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.scale, self.shift = affine(data.mean, data.std, device)
        self.epoch = 0

    def __len__(self) -> int:
        return -(-self.n_virtual // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """This epoch's visiting order; drawn on the CPU so every device sees the same order."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n_virtual, generator=g).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        v = self.order()
        source, labels = epoch_labels(self.noises, v)
        per_gather = max(1, GATHER_IMAGES // self.batch_size) * self.batch_size
        for start in range(0, self.n_virtual, per_gather):
            stop = min(start + per_gather, self.n_virtual)
            rows = source[start:stop]
            images = self.images[rows.clamp(min=0)]
            if self.white is not None:
                images = self.white.paste(images, v[start:stop], rows == WHITE)
            x = normalise(images, self.scale, self.shift, self.dtype)
            for i in range(0, stop - start, self.batch_size):
                yield x[i:i + self.batch_size], labels[:, start + i:start + i + self.batch_size]


def batches(data: ImageSet, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A clean split (the test set) in order, normalised like the training data."""
    images, labels = data.images.to(device), data.labels.to(device)
    scale, shift = affine(data.mean, data.std, device)
    for start in range(0, len(data), batch_size):
        yield normalise(images[start:start + batch_size], scale, shift), labels[start:start + batch_size]
