"""The noise function compiled for numba, and the FFCV Operation that relabels inside the pipeline.

The hash is loaders.noise's own `_mul32`/`_fmix32`, compiled by numba from the same source; only
`hash32`'s three lines are restated (the torch version builds a tensor). Constants and the threshold
table come from loaders.noise, so a label here is bit-identical to NoiseModel's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numba as nb
import numpy as np
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State
from numba.extending import register_jitable

from loaders import noise

register_jitable(noise._mul32)  # numba resolves the global _mul32 inside _fmix32 to this
_fmix32 = register_jitable(noise._fmix32)
MASK32, KEY_SALT, STREAM_LABEL = noise.MASK32, noise.KEY_SALT, noise.STREAM_LABEL


@nb.njit(cache=False)
def hash32(seed: int, v: int, stream: int) -> int:
    """loaders.noise.hash32 for one int64 v >= 0."""
    key = _fmix32((seed ^ stream) & MASK32)
    h = _fmix32((v & MASK32) ^ key)
    return _fmix32(h ^ (v >> 32) ^ _fmix32(key ^ KEY_SALT))


@nb.njit(cache=False)
def label(v: int, clean: int, n: int, table: np.ndarray, seed: int) -> int:
    """Label of virtual example v whose source image has class `clean` (NoiseModel.__call__ for one v)."""
    if v < n:
        return clean
    h = hash32(seed, v, STREAM_LABEL)
    k = 0
    for j in range(1, table.shape[1] - 1):
        k += h >= table[clean, j]
    return k


@nb.njit(cache=False)
def labels_numba(v: np.ndarray, clean_labels: np.ndarray, table: np.ndarray, seed: int) -> np.ndarray:
    """Vectorised `label` over int64 virtual indices, with clean_labels of the n source images."""
    n = clean_labels.shape[0]
    out = np.empty(v.shape[0], np.int64)
    for i in range(v.shape[0]):
        out[i] = label(v[i], clean_labels[v[i] % n], n, table, seed)
    return out


class Relabel(Operation):
    """Label pipeline op after IntDecoder: the decoded clean label of the source image -> this copy's label.

    It needs the batch's virtual indices (`with_indices`), which VirtualLoader makes distinct per copy.
    """

    def __init__(self, noise_model: noise.NoiseModel) -> None:
        super().__init__()
        self.n, self.seed, self.table = noise_model.n, noise_model.spec.seed, noise_model.table_np

    def generate_code(self) -> Callable:
        n, seed, table = self.n, self.seed, self.table

        def relabel(labels, _, indices):
            for i in range(labels.shape[0]):
                labels[i, 0] = label(np.int64(indices[i]), labels[i, 0], n, table, seed)
            return labels

        relabel.is_parallel = False  # ~100 ns per label: a parallel loop's fork-join costs more (measured: -20%)
        relabel.with_indices = True
        return relabel

    def declare_state_and_memory(self, previous_state: State) -> tuple[State, AllocationQuery | None]:
        return replace(previous_state, jit_mode=True), None  # in place: no buffer of its own
