"""torch backend: the baseline users would write, a map-style Dataset over virtual indices and a DataLoader.

Per example: look the source image and labels up in the same NoiseModels, one per group member (a
white-noise image is drawn from v by the same WhiteNoise), normalise the one image; workers collate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from loaders.datasets import ImageSet
from loaders.noise import WHITE, NoiseModel, WhiteNoise
from loaders.tensor import affine, normalise


class VirtualDataset(Dataset):
    """Item v of the diluted set: (its normalised source image, its label under each member's noise model)."""

    def __init__(self, data: ImageSet, noises: Sequence[NoiseModel]) -> None:
        """data: the image table the noise models index (the clean images, then any noise pool)."""
        self.images, self.noises = data.images, noises
        self.white = WhiteNoise(noises[0].spec.seed, tuple(data.images.shape[1:]), data.mean, data.std)
        self.scale, self.shift = (t[0] for t in affine(data.mean, data.std, torch.device("cpu")))

    def __len__(self) -> int:
        return self.noises[0].n_virtual

    def __getitem__(self, v: int) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.tensor([v])
        source, _ = self.noises[0](v)
        image = self.white(v)[0] if source == WHITE else self.images[source[0]]
        return normalise(image, self.scale, self.shift), torch.cat([noise(v)[1] for noise in self.noises])


class TorchLoader:
    """A DataLoader over VirtualDataset, reshuffled per epoch from (seed, epoch); batches go to the device."""

    def __init__(self, data: ImageSet, noises: Sequence[NoiseModel], batch_size: int, seed: int, device: torch.device,
                 workers: int) -> None:
        self.dataset = VirtualDataset(data, [noise.to("cpu") for noise in noises])
        self.batch_size, self.seed, self.device, self.workers = batch_size, seed, device, workers
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        loader = DataLoader(self.dataset, self.batch_size, shuffle=True, generator=g, num_workers=self.workers,
                            pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.T.to(self.device, non_blocking=True)  # labels (K, B)
