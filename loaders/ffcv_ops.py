"""The noise function compiled for numba, and the FFCV Operations that give each copy its own index.

The hash and the source map are loaders.noise's own `_mul32`/`_fmix32`/`_source`, compiled by numba
from the same source; only `hash32`'s four lines are restated (the torch version builds a tensor).
Constants and the threshold table come from loaders.noise, so a label here is bit-identical to
NoiseModel's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numba as nb
import numpy as np
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from ffcv.traversal_order.base import TraversalOrder
from numba.extending import register_jitable

from loaders import noise

register_jitable(noise._mul32)  # numba resolves the global _mul32 inside _fmix32 to this
_fmix32 = register_jitable(noise._fmix32)
_source = register_jitable(noise._source)
MASK32, KEY_SALT, HIGH_SALT = noise.MASK32, noise.KEY_SALT, noise.HIGH_SALT


@nb.njit(cache=False)
def hash32(seed: int, v: int, stream: int) -> int:
    """loaders.noise.hash32 for one int64 v >= 0."""
    key = _fmix32((seed ^ stream) & MASK32)
    high = v >> 32
    h = _fmix32(_fmix32((v & MASK32) ^ key) ^ high ^ _fmix32(key ^ KEY_SALT))
    return h if high == 0 else _fmix32(h ^ _fmix32(high ^ key ^ HIGH_SALT))


@nb.njit(cache=False)
def label(v: int, row: int, n: int, table: np.ndarray, seed: int, counter: int, stream: int) -> int:
    """NoiseModel.__call__'s label of virtual example v whose source image has noise row `row`, drawn from the
    hash of (seed, counter) on `stream`: v's own (draw=copy) or its source image's (draw=image)."""
    if v < n:
        return row
    h = hash32(seed, counter, stream)
    k = 0
    for j in range(1, table.shape[1] - 1):
        k += h >= table[row, j]
    return k


@nb.njit(cache=False)
def vote(v: int, row: int, image: int, n: int, labels: np.ndarray, counts: np.ndarray, seed: int, counter: int,
         stream: int) -> int:
    """NoiseModel.__call__'s label under noise.labels: one of table image `image`'s annotations (counter and
    stream as in `label`)."""
    if v < n:
        return row
    return labels[image, (hash32(seed, counter, stream) * counts[image]) >> 32]


class Relabel(Operation):
    """Label pipeline op after the decoder: the decoded noise row of the source image -> this copy's label
    under each group member's noise model, one column per member: (B, K).

    It needs the batch's virtual indices (`with_indices`), which VirtualLoader makes distinct per copy.
    """

    def __init__(self, noise_models: list[noise.NoiseModel]) -> None:
        super().__init__()
        first = noise_models[0]
        self.n, self.n_pool, self.kind = first.n, max(first.n_pool, 1), first.kind
        self.start, self.a, self.b = first.spread
        self.tied = first.tied  # draw=image: the hash of (seed, source image), not of (seed, v)
        self.seeds = np.array([model.spec.seed for model in noise_models], np.int64)
        self.tables = np.stack([model.table_np for model in noise_models])
        # noise.labels: the members' shared annotations of the table images (members differ in seed only)
        self.votes = None if first.votes is None else tuple(t.cpu().numpy() for t in first.votes)

    def generate_code(self) -> Callable:
        n, n_pool, kind, seeds, tables = self.n, self.n_pool, self.kind, self.seeds, self.tables
        start, a, b, tied = self.start, self.a, self.b, self.tied
        stream = noise.STREAM_IMAGE if tied else noise.STREAM_LABEL
        m = tables.shape[1] - 1
        if self.votes is not None:
            labels, counts = self.votes

            def relabel_votes(rows, out, indices):
                for i in range(rows.shape[0]):
                    v = np.int64(indices[i])
                    image = _source(v, n, n_pool, kind, start, a, b)
                    counter = image if tied else v
                    for k in range(seeds.shape[0]):
                        out[i, k] = vote(v, rows[i, 0], image, n, labels, counts, seeds[k], counter, stream)
                return out

            relabel_votes.is_parallel = False
            relabel_votes.with_indices = True
            return relabel_votes

        def relabel(rows, out, indices):
            for i in range(rows.shape[0]):
                v = np.int64(indices[i])
                image = _source(v, n, n_pool, kind, start, a, b)
                row = m if image < 0 else rows[i, 0]  # white noise: the uniform row
                counter = image if tied else v
                for k in range(seeds.shape[0]):
                    out[i, k] = label(v, row, n, tables[k], seeds[k], counter, stream)
            return out

        relabel.is_parallel = False  # ~100 ns per label: a parallel loop's fork-join costs more (measured: -20%)
        relabel.with_indices = True
        return relabel

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return (replace(previous_state, jit_mode=True, shape=(len(self.seeds),), dtype=np.dtype(np.int64)),
                AllocationQuery((len(self.seeds),), np.dtype(np.int64)))


class SourceRows(Operation):
    """A field's decoder, made to decode row source(v) of the image table for virtual index v.

    FFCV hands decoders the batch's indices to look rows up in the metadata; ours are virtual indices
    (up to n * (1 + alpha)), so this maps them to table rows first: no per-copy metadata is stored.
    """

    def __init__(self, decoder: Operation, noise_model: noise.NoiseModel) -> None:
        super().__init__()
        self.decoder = decoder
        self.n, self.n_pool, self.kind = noise_model.n, max(noise_model.n_pool, 1), noise_model.kind
        self.start, self.a, self.b = noise_model.spread

    def accept_field(self, field) -> None:
        self.decoder.accept_field(field)

    def accept_globals(self, metadata, memory_read) -> None:
        self.decoder.accept_globals(metadata, memory_read)

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return self.decoder.declare_state_and_memory(previous_state)

    def generate_code(self) -> Callable:
        decode = Compiler.compile(self.decoder.generate_code())
        n, n_pool, kind, start, a, b = self.n, self.n_pool, self.kind, self.start, self.a, self.b

        def decode_rows(indices, destination, metadata, storage_state):
            rows = np.empty(indices.shape[0], np.int64)
            for i in range(indices.shape[0]):
                rows[i] = max(_source(np.int64(indices[i]), n, n_pool, kind, start, a, b), 0)  # white: any row, replaced later
            return decode(rows, destination, metadata, storage_state)

        return decode_rows


class VirtualIndex(Operation):
    """After a decoder of the label field: the batch's virtual indices themselves (white noise is drawn from them)."""

    def generate_code(self) -> Callable:
        def index(out, _, indices):
            for i in range(out.shape[0]):
                out[i, 0] = indices[i]
            return out

        index.with_indices = True
        return index

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return replace(previous_state, jit_mode=True), None


class VirtualOrder(TraversalOrder):
    """Epoch e visits every virtual index once, in a permutation drawn from (seed, e) into one reused
    buffer: the loader's only memory per virtual example (4 B, or 8 B past 2**32 examples). FFCV's own
    orders permute `loader.indices` and keep the first epoch's order too (16 B per example, 24 B at peak).
    """

    def __init__(self, n_virtual: int, seed: int) -> None:  # no super().__init__: FFCV calls us with the loader
        self.buffer = np.empty(n_virtual, np.uint32 if n_virtual <= 2**32 else np.int64)  # 4 B per copy up to 2**32
        self.seed = seed

    def __call__(self, loader) -> "VirtualOrder":
        return self  # FFCV 1.0.2 builds the order by calling a TraversalOrder instance with the loader

    def sample_order(self, epoch: int) -> np.ndarray:
        step = 1 << 20  # fill 0..n-1 in chunks: np.arange(n) would be a second n-sized array
        for start in range(0, len(self.buffer), step):
            stop = min(start + step, len(self.buffer))
            self.buffer[start:stop] = np.arange(start, stop)
        np.random.default_rng([self.seed, epoch]).shuffle(self.buffer)  # in place
        return self.buffer
