"""FFCV backend: a .beton read through FFCV, every copy of every image relabelled inside the pipeline.

FFCV ops see the indices the traversal order yields. VirtualOrder yields virtual indices v of the
diluted set, so Relabel gives each copy its own label; SourceRows makes every decoder read table row
source(v) instead of row v. The only per-copy memory is the epoch's 4-byte order.

Relies on FFCV 1.0.2 internals (decoders index `metadata` by the batch indices; EpochIterator reads
`reader.metadata`; the OS-cache memory manager reads by address): ffcv is pinned and
tests/test_loaders.py checks those internals.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numba as nb
import numpy as np
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.decoders import CenterCropRGBImageDecoder, NDArrayDecoder
from ffcv.loader import Loader
from ffcv.memory_managers import OSCacheManager
from ffcv.pipeline import PipelineSpec
from ffcv.pipeline.compiler import Compiler
from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

from loaders.ffcv_ops import Relabel, SourceRows, VirtualIndex, VirtualOrder
from loaders.noise import NoiseModel, WhiteNoise
from loaders.tensor import affine, normalise

# FFCV 1.0.2's OSCacheManager.state_type sets `mutable = False` on numba's one interned uint8[::1] type: from then on
# every C-contiguous uint8 array in the process types as read-only, and every dispatcher that compiled with that
# type before holds a key whose hash has changed (numba's finalizer raises KeyError when it is collected: an
# "Exception ignored" traceback). The same state and reader, with a read-only type of their own.
READ_ONLY_BYTES = nb.types.Array(nb.uint8, 1, "C", readonly=True)


def cache_state_type(manager: OSCacheManager) -> nb.types.Tuple:
    return nb.types.Tuple([READ_ONLY_BYTES, nb.uint64[::1], nb.uint64[::1]])  # the file's bytes, offsets, sizes


def compile_cache_reader(manager: OSCacheManager) -> object:
    def read(address, mem_state):  # FFCV's own: the sample's bytes at `address` in the memory-mapped file
        size = mem_state[2][np.searchsorted(mem_state[1], address)]
        return mem_state[0][address:address + size]

    return Compiler.compile(read, READ_ONLY_BYTES(nb.uint64, cache_state_type(manager)))


OSCacheManager.state_type = property(cache_state_type)
OSCacheManager.compile_reader = compile_cache_reader


def image_pipeline(noise: NoiseModel, device: torch.device, jpeg_size: int | None) -> PipelineSpec:
    """decode -> tensor -> device (non-blocking) -> channels-first; normalising follows on the device."""
    if jpeg_size is None:  # NDArrayField: raw uint8, already CHW
        return PipelineSpec("image", SourceRows(NDArrayDecoder(), noise), [ToTensor(), ToDevice(device, non_blocking=True)])
    decoder = SourceRows(CenterCropRGBImageDecoder((jpeg_size, jpeg_size), ratio=1.0), noise)
    return PipelineSpec("image", decoder, [ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage(channels_last=False)])


class VirtualLoader:
    """One epoch of (normalised images, labels) over the diluted set, from a .beton holding its images.

    rows: the .beton rows that form the noise model's image table (the clean examples, then any pool),
    in order; None = the whole file is the table.
    """

    def __init__(self, path: Path, rows: np.ndarray | None, noises: Sequence[NoiseModel], batch_size: int, seed: int,
                 device: torch.device, workers: int, mean: tuple[float, ...], std: tuple[float, ...],
                 relabel: bool = True, jpeg_size: int | None = None, dtype: torch.dtype = torch.float32) -> None:
        noise = noises[0]  # its image sources are every member's; members differ in their labels only
        self.threads = torch.get_num_threads()  # FFCV sets torch's thread count to `workers`: we put it back
        to_device = ToDevice(device, non_blocking=True)
        pipelines = {"image": image_pipeline(noise, device, jpeg_size),
                     "label": PipelineSpec("label", SourceRows(IntDecoder(), noise),
                                           [*([Relabel(list(noises))] if relabel else []), ToTensor(), to_device])}
        white = noise.spec.source == "white"
        if white:  # white-noise images are drawn on the device from v, as the tensor path does
            pipelines["index"] = PipelineSpec("label", SourceRows(IntDecoder(), noise), [VirtualIndex(), ToTensor(), to_device])
        self.loader = Loader(str(path), batch_size, num_workers=workers, os_cache=True, drop_last=False,
                             order=VirtualOrder(noise.n_virtual, seed), pipelines=pipelines)
        torch.set_num_threads(self.threads)
        reader = self.loader.reader
        table = reader.metadata.copy() if rows is None else reader.metadata[rows]
        assert len(table) == noise.n + noise.n_pool, "the .beton rows must be the noise model's image table"
        # The label field now carries each table image's noise row (its class, or m when it has none): Relabel's input.
        table[f"f{self.loader.field_name_to_f_ix['label']}"] = noise.rows.cpu().numpy()
        reader.metadata = table  # decoders read row source(v) of it (SourceRows)
        assert isinstance(self.loader.memory_manager, OSCacheManager)  # reads by address, not by row number
        shape = (3, jpeg_size, jpeg_size) if jpeg_size else tuple(reader.handlers["image"].shape)
        self.white = WhiteNoise(noise.spec.seed, shape, mean, std) if white else None
        self.n, self.n_virtual = noise.n, noise.n_virtual
        self.batch_size = batch_size
        self.dtype = dtype
        self.scale, self.shift = affine(mean, std, device)

    def __len__(self) -> int:
        return -(-self.n_virtual // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.loader.next_epoch = epoch  # VirtualOrder draws epoch e's permutation from (seed, e)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.loader)
        try:
            for i, (x, y, *v) in enumerate(batches):
                if i == 0:  # FFCV's iterator thread has set torch's thread count by the time it yields
                    torch.set_num_threads(self.threads)
                if self.white is not None:
                    v = v[0].view(-1)
                    x = self.white.paste(x, v, v >= self.n)
                # FFCV reuses its output buffers a few batches later: normalising copies x; y is copied.
                yield normalise(x, self.scale, self.shift, self.dtype), y.T.clone()  # labels (K, B)
        finally:
            batches.close()  # stops FFCV's thread after its current batch (VirtualOrder reuses its buffer)
