"""Datasets as whole uint8 tensors, read through torchvision.

The data root is, in order: the config key ``data.root``, the environment variable
``STUDY_DATA_ROOT``, else a per-user cache dir. Online users get torchvision's download; offline with
no data, the user gets one line naming the root searched and how to fix it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from loaders.errors import UsageError

DATASETS = ("mnist",)


@dataclass
class ImageSet:
    """A split held in memory: images (N, C, H, W) uint8, labels (N,) int64, and the train-set stats."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1] units, of the training split
    std: tuple[float, ...]

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, index: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.num_classes, self.mean, self.std)


def resolve_root(root: str | os.PathLike | None) -> Path:
    """data.root, else $STUDY_DATA_ROOT, else the user cache dir; always absolute."""
    if root in (None, ""):
        root = os.environ.get("STUDY_DATA_ROOT") or Path(
            os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "label-noise-study" / "datasets"
    return Path(root).expanduser().resolve()


def _mnist_files(root: Path) -> list[Path]:
    raw = root / "MNIST" / "raw"
    return [raw / f for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]


def ensure_available(name: str, root: Path, download: bool) -> None:
    """Make sure the dataset is on disk under root, downloading it when allowed.

    A download goes to a temporary dir first and is moved into root only when complete, so a failed
    or interrupted download leaves nothing behind.
    """
    if name not in DATASETS:
        raise UsageError(f"data.dataset={name!r} is unknown: choose one of {', '.join(DATASETS)}")
    missing = [p for p in _mnist_files(root) if not p.exists()]
    if not missing:
        return
    fix = (f"put MNIST in torchvision's layout under {root}/MNIST/raw, or point data.root= "
           f"(or STUDY_DATA_ROOT) at a folder that holds it")
    if not download:
        raise UsageError(f"MNIST not found under {root} (missing {missing[0].name}) and data.download=false: {fix}")
    tmp = Path(tempfile.mkdtemp(prefix="mnist-download-"))
    try:
        torchvision.datasets.MNIST(tmp, train=True, download=True)
        torchvision.datasets.MNIST(tmp, train=False, download=True)
        (root / "MNIST").mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp / "MNIST", root / "MNIST", dirs_exist_ok=True)
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError when offline
        raise UsageError(f"MNIST not found under {root} and the download failed "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}): {fix}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load(name: str, root: Path, train: bool) -> ImageSet:
    """One split of a dataset as tensors (call ensure_available first)."""
    ds = torchvision.datasets.MNIST(root, train=train, download=False)
    images = ds.data.unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
    return ImageSet(images, ds.targets.long(), 10, mean=(0.1307,), std=(0.3081,))


def stratified_subset(labels: torch.Tensor, size: int | None, seed: int) -> torch.Tensor:
    """Indices of a class-balanced random subset of `size` examples (all indices when size is None)."""
    n = int(labels.numel())
    if size is None:
        return torch.arange(n)
    if not (isinstance(size, int) and 0 < size <= n):
        raise UsageError(f"subset size {size!r} is invalid: it must be an integer in [1, {n}]")
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    classes = np.unique(labels_np)
    # Round-robin over shuffled per-class lists (classes in random order within a round): each
    # class gets size/m examples, +-1.
    per_class = [rng.permutation(np.flatnonzero(labels_np == c)) for c in classes]
    rank = np.concatenate([np.arange(len(p)) + rng.random() for p in per_class])
    order = np.argsort(rank, kind="stable")
    pooled = np.concatenate(per_class)[order][:size]
    return torch.from_numpy(np.sort(pooled))
