"""FFCV backend: a .beton read through FFCV, every copy of every image relabelled inside the pipeline.

Relies on FFCV 1.0.2 internals (Reader.metadata, num_samples; the OS-cache memory manager ignores
sample ids): ffcv is pinned and tests/test_loaders_ffcv.py checks those internals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.decoders import CenterCropRGBImageDecoder, NDArrayDecoder
from ffcv.loader import Loader, OrderOption
from ffcv.memory_managers import OSCacheManager
from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

from loaders.ffcv_ops import Relabel
from loaders.noise import NoiseModel
from loaders.tensor import affine


def image_pipeline(device: torch.device, jpeg_size: int | None) -> list:
    """decode -> tensor -> device (non-blocking) -> channels-first; normalising follows on the device."""
    if jpeg_size is None:  # NDArrayField: raw uint8, already CHW
        return [NDArrayDecoder(), ToTensor(), ToDevice(device, non_blocking=True)]
    return [CenterCropRGBImageDecoder((jpeg_size, jpeg_size), ratio=1.0), ToTensor(),
            ToDevice(device, non_blocking=True), ToTorchImage(channels_last=False)]


class VirtualLoader:
    """One epoch of (normalised images, labels) over the diluted set, from a .beton of the clean images.

    rows: the .beton rows that form the clean training set (a subset), in the NoiseModel's order.
    """

    def __init__(self, path: Path, rows: np.ndarray | None, noise: NoiseModel, batch_size: int, seed: int,
                 device: torch.device, workers: int, mean: tuple[float, ...], std: tuple[float, ...],
                 relabel: bool = True, jpeg_size: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.threads = torch.get_num_threads()  # FFCV sets torch's thread count to `workers`: we put it back
        n_virtual = noise.n_virtual
        label_ops = [IntDecoder(), *([Relabel(noise)] if relabel else []), ToTensor(), ToDevice(device, non_blocking=True)]
        self.loader = Loader(str(path), batch_size, num_workers=workers, os_cache=True, order=OrderOption.RANDOM,
                             seed=seed, indices=np.arange(n_virtual), drop_last=False,
                             pipelines={"image": image_pipeline(device, jpeg_size), "label": label_ops})
        # FFCV ops see dataset indices, so all copies of an image would share one label: a sample table
        # tiled 1+alpha times gives copy v its own index, row v = image v mod n (16 B/copy; no pixels copied).
        torch.set_num_threads(self.threads)
        reader = self.loader.reader
        table = reader.metadata if rows is None else reader.metadata[rows]
        assert len(table) == noise.n, "the rows of the .beton must be the NoiseModel's clean examples"
        reader.metadata = np.resize(table, n_virtual)
        reader.num_samples = n_virtual
        assert isinstance(self.loader.memory_manager, OSCacheManager)  # reads by address, not by sample id
        self.n_virtual = n_virtual
        self.batch_size = batch_size
        self.dtype = dtype
        self.scale, self.shift = affine(mean, std, device)

    def __len__(self) -> int:
        return -(-self.n_virtual // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.loader.next_epoch = epoch  # FFCV's RANDOM order draws epoch e's permutation from seed + e

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.loader)
        try:
            for i, (x, y) in enumerate(batches):
                if i == 0:  # FFCV's iterator thread has set torch's thread count by the time it yields
                    torch.set_num_threads(self.threads)
                # FFCV reuses its output buffers a few batches later: normalising copies x; y is copied.
                yield x.to(self.dtype) * self.scale + self.shift, y.view(-1).clone()
        finally:
            batches.close()
