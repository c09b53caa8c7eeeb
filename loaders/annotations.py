"""Noise given as data: a per-copy label matrix (noise.matrix) or per-image annotations (noise.labels).

noise.matrix: an (m, m) row-stochastic per-copy distribution (row = true class) from a .npy or .csv file,
or `cifar10n:<kind>`, the empirical matrix of those CIFAR-10N annotators against the clean labels.
noise.labels: per-image annotations, an (n, r) integer .npy (row i: image i's r labels, by original
training index), a CSV of `index,label` rows (repeats allowed: any number of labels per image), or
`cifar10n:<kind>`. Images are padded to the largest count with -1; `counts` says how many are real.

CIFAR-10N (Wei et al., ICLR 2022; CC BY-NC 4.0) is the file CIFAR-10_human.pt under the data root,
downloaded from the CIFAR-N release on first use when data.download allows it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from errors import UsageError, invalid
from rundir import atomic_path

CIFAR10N_FILE = "CIFAR-10_human.pt"
CIFAR10N_URL = "https://github.com/UCSC-REAL/cifar-10-100n/raw/main/data/CIFAR-10_human.pt"
CIFAR10N = {"random": ("random_label1", "random_label2", "random_label3"), "worst": ("worse_label",),
            "aggre": ("aggre_label",)}
PREFIX = "cifar10n:"
ROW_SUM_TOLERANCE = 1e-6  # a row of a written-out matrix (e.g. CSV with 8 decimals) may miss 1 by rounding


@dataclass(frozen=True)
class Votes:
    """Per-image annotations: labels (n, r) int64 padded with -1, counts (n,) the real ones per image."""

    labels: np.ndarray
    counts: np.ndarray

    def subset(self, rows: np.ndarray) -> "Votes":
        return Votes(self.labels[rows], self.counts[rows])

    def matrix(self, clean: np.ndarray, m: int) -> np.ndarray:
        """The empirical (m, m) matrix P(annotation | true class) over every annotation of these images
        (the uniform row for a class with none)."""
        real = np.arange(self.labels.shape[1]) < self.counts[:, None]
        rows = np.broadcast_to(clean[:, None], self.labels.shape)[real]
        counts = np.zeros((m, m))
        np.add.at(counts, (rows, self.labels[real]), 1)
        total = counts.sum(1, keepdims=True)
        return np.where(total > 0, counts / np.maximum(total, 1), 1.0 / m)


def is_cifar10n(value: str) -> bool:
    return value.startswith(PREFIX)


@functools.lru_cache(maxsize=2)
def cifar10n(root: str, download: bool = False) -> dict[str, np.ndarray]:
    """The CIFAR-10N arrays (50,000 each, original training order), from root, downloaded there when missing
    and allowed (to a temp file first, so a failed download leaves nothing)."""
    path = Path(root) / CIFAR10N_FILE
    if not path.is_file():
        if not download:
            raise UsageError(f"CIFAR-10N annotations not found at {path}: put {CIFAR10N_FILE} there (from "
                             f"{CIFAR10N_URL}), point data.root at its folder, or allow data.download=true")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(path) as tmp:
                torch.hub.download_url_to_file(CIFAR10N_URL, str(tmp), progress=False)
        except Exception as exc:  # urllib raises URLError/HTTPError/OSError when offline
            raise UsageError(f"CIFAR-10N annotations not found at {path} and the download from {CIFAR10N_URL} "
                             f"failed ({type(exc).__name__}): put {CIFAR10N_FILE} there or point data.root at it") from None
    return {k: np.asarray(v, dtype=np.int64) for k, v in torch.load(path, weights_only=False).items()}


def cifar10n_kind(key: str, value: str) -> tuple[str, ...]:
    kind = value[len(PREFIX):]
    if kind not in CIFAR10N:
        raise invalid(key, value, choices=[*(PREFIX + k for k in CIFAR10N), "a file"])
    return CIFAR10N[kind]


def _file(key: str, value: str, suffixes: tuple[str, ...]) -> Path:
    path = Path(value).expanduser()
    if path.suffix not in suffixes or not path.is_file():
        raise invalid(key, value, f"an existing {' or '.join(suffixes)} file or {PREFIX}<{'|'.join(CIFAR10N)}>")
    return path


def load_matrix(value: str, m: int, root: str, download: bool = False) -> np.ndarray:
    """noise.matrix as an (m, m) row-stochastic array: one line naming what is wrong with it."""
    key = "noise.matrix"
    if is_cifar10n(value):
        columns = cifar10n_kind(key, value)
        d = cifar10n(root, download)
        votes = Votes(np.stack([d[c] for c in columns], 1), np.full(len(d["clean_label"]), len(columns)))
        return votes.matrix(d["clean_label"], m)
    path = _file(key, value, (".npy", ".csv"))
    try:
        matrix = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=",", ndmin=2)
        matrix = np.asarray(matrix, dtype=np.float64)
    except (ValueError, OSError) as exc:
        raise invalid(key, value, f"a numeric matrix ({str(exc).splitlines()[0][:100]})") from None
    if matrix.shape != (m, m):
        raise invalid(key, value, f"({m}, {m}), a row and a column per class of the dataset (it has shape {matrix.shape})")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        r, c = np.argwhere(~(matrix >= 0))[0]
        raise invalid(key, value, f"finite and >= 0 in every entry (it has entry [{r}, {c}] = {matrix[r, c]})")
    sums = matrix.sum(1)
    if (np.abs(sums - 1) > ROW_SUM_TOLERANCE).any():
        r = int(np.argmax(np.abs(sums - 1)))
        raise invalid(key, value, f"row-stochastic, every row summing to 1 (it has row {r} summing to {sums[r]:.10g})")
    return matrix / sums[:, None]


def load_votes(value: str, n: int, m: int, root: str, download: bool = False) -> Votes:
    """noise.labels for a training split of n images and m classes (indices: original training order)."""
    key = "noise.labels"
    if is_cifar10n(value):
        columns = cifar10n_kind(key, value)
        d = cifar10n(root, download)
        labels = np.stack([d[c] for c in columns], 1)
        votes = Votes(labels, np.full(len(labels), labels.shape[1]))
    else:
        path = _file(key, value, (".npy", ".csv"))
        votes = _from_npy(key, value, path) if path.suffix == ".npy" else _from_csv(key, value, path, n)
    if len(votes.counts) != n:
        raise invalid(key, value, f"one row per training image, in their original order (it holds annotations for "
                                  f"{len(votes.counts)} images, but the training split has {n})")
    real = np.arange(votes.labels.shape[1]) < votes.counts[:, None]
    bad = real & ((votes.labels < 0) | (votes.labels >= m))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise invalid(key, value, f"labels in [0, {m}) (it gives image {i} the label {votes.labels[i, j]})")
    return votes


def _from_npy(key: str, value: str, path: Path) -> Votes:
    labels = np.load(path)
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or labels.shape[1] == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise invalid(key, value, f"an (n, r) integer array, r >= 1 annotations per image (it is a {labels.dtype} "
                                  f"array of shape {labels.shape})")
    return Votes(labels.astype(np.int64), np.full(len(labels), labels.shape[1]))


def _from_csv(key: str, value: str, path: Path, n: int) -> Votes:
    """`index,label` rows (a header line is skipped), in any order, any number per image."""
    table = pd.read_csv(path, header=None, comment="#", dtype=str)
    if table.shape[1] != 2 or table.empty:
        raise invalid(key, value, f"two columns, index,label (it has {table.shape[1]})")
    if not table.iloc[0].str.strip().str.lstrip("-").str.isdigit().all():
        table = table.iloc[1:]  # a header
    try:
        index, label = (table[c].astype(np.int64).to_numpy() for c in table.columns)
    except ValueError:
        raise invalid(key, value, "rows of two integers, index,label") from None
    if ((index < 0) | (index >= n)).any():
        bad = index[(index < 0) | (index >= n)][0]
        raise invalid(key, value, f"indices in [0, {n}), the training split (it names image {bad})")
    order = np.argsort(index, kind="stable")
    index, label = index[order], label[order]
    counts = np.bincount(index, minlength=n)
    position = np.arange(len(index)) - np.concatenate([[0], np.cumsum(counts)])[index]
    labels = np.full((n, max(int(counts.max()), 1)), -1, np.int64)
    labels[index, position] = label
    return Votes(labels, counts)

