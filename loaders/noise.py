"""The noise model: virtual index v of the diluted dataset -> (source image, label).

The diluted set has ``n_virtual = n + round(alpha * n)`` examples. Virtual index ``v`` is copy
``v // n`` of image ``v % n``. Copy 0 keeps the clean label. Every other copy carries a label drawn
from the noise distribution of its image's true class, with the uniform variate taken from a
counter-based hash of ``(seed, v)``. Nothing of size ``alpha * n`` is ever stored: a label is
recomputed from ``v`` whenever it is needed, by any backend, on any device.

Only integer arithmetic is used (32-bit values held in int64, products kept below 2**63), so the
torch path (CPU or CUDA) and the numba path used inside FFCV give bit-identical labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from loaders.errors import UsageError

MASK32 = 0xFFFFFFFF
TWO32 = 1 << 32
# Distinct hash streams so that later draws (e.g. a source image) never reuse the label variate.
STREAM_LABEL = 0x1B873593
KEY_SALT = 0x27D4EB2F  # separates the key that mixes v's high word from the one that mixes its low word


@dataclass(frozen=True)
class NoiseSpec:
    """What noise dilutes the training set.

    alpha: noisy examples added per clean example (real, >= 0).
    seed: fixes every noisy label for ever; the same (seed, v) always gives the same label.
    """

    alpha: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and np.isfinite(self.alpha) and self.alpha >= 0):
            raise UsageError(f"noise.alpha={self.alpha!r} is invalid: it must be a real number >= 0")
        if not (isinstance(self.seed, (int, np.integer)) and 0 <= self.seed < TWO32):
            raise UsageError(f"noise.seed={self.seed!r} is invalid: it must be an integer in [0, 2**32)")

    def n_virtual(self, n: int) -> int:
        """Size of the diluted set built on n clean examples (fractional alpha is rounded)."""
        return n + int(round(self.alpha * n))


def uniform_distribution(m: int) -> np.ndarray:
    """(m, m) row-stochastic matrix: a noisy label is uniform over all m classes, correct one included."""
    return np.full((m, m), 1.0 / m)


def thresholds(dist: np.ndarray) -> np.ndarray:
    """Integer inverse-CDF table: label k is drawn for a 32-bit variate h when T[c, k] <= h < T[c, k+1].

    T[c, 0] = 0 and T[c, m] = 2**32. For the uniform matrix T[c, k] = ceil(k * 2**32 / m), so the
    label equals (h * m) >> 32 exactly.
    """
    dist = np.asarray(dist, dtype=np.float64)
    m = dist.shape[0]
    if dist.shape != (m, m) or (dist < 0).any() or not np.allclose(dist.sum(1), 1.0):
        raise UsageError("a noise distribution must be an (m, m) row-stochastic matrix")
    cdf = np.concatenate([np.zeros((m, 1)), np.cumsum(dist, axis=1)], axis=1)
    table = np.ceil(cdf * TWO32).astype(np.int64)
    table[:, -1] = TWO32
    if m > 1 and np.allclose(dist, 1.0 / m):  # exact rationals for the uniform case
        table[:] = -((-np.arange(m + 1, dtype=np.int64) * TWO32) // m)
    return table


# _mul32 and _fmix32 use only operators, so loaders.ffcv_ops compiles these very functions for numba.
def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for x in [0, 2**32): split c in 16-bit halves so no product overflows int64."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & MASK32


def _fmix32(x: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's finaliser: a bijection of 32-bit values with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def hash32(seed: int, v: torch.Tensor, stream: int) -> torch.Tensor:
    """Counter-based hash of (seed, stream, v) for int64 v >= 0 -> int64 values in [0, 2**32)."""
    key = _fmix32(torch.tensor((seed ^ stream) & MASK32, dtype=torch.int64, device=v.device))
    h = _fmix32((v & MASK32) ^ key)
    return _fmix32(h ^ (v >> 32) ^ _fmix32(key ^ KEY_SALT))


class NoiseModel:
    """The noise function, bound to one dataset's clean labels. Vectorised, device-agnostic."""

    def __init__(self, spec: NoiseSpec, clean_labels: torch.Tensor, num_classes: int,
                 dist: np.ndarray | None = None) -> None:
        self.spec = spec
        self.n = int(clean_labels.numel())
        self.m = num_classes
        self.n_virtual = spec.n_virtual(self.n)
        self.clean_labels = clean_labels.long()
        self.table_np = thresholds(uniform_distribution(num_classes) if dist is None else dist)
        self.table = torch.from_numpy(self.table_np).to(clean_labels.device)

    def to(self, device: torch.device | str) -> "NoiseModel":
        self.clean_labels = self.clean_labels.to(device)
        self.table = self.table.to(device)
        return self

    def __call__(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Virtual indices (int64, any shape) -> (source image index, label), both int64."""
        source = v % self.n
        clean = self.clean_labels[source]
        h = hash32(self.spec.seed, v, STREAM_LABEL)
        rows = self.table[clean]  # (..., m + 1) thresholds of each example's true class
        noisy = (h.unsqueeze(-1) >= rows[..., 1:-1]).sum(-1)
        return source, torch.where(v < self.n, clean, noisy)
