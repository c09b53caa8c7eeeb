"""FFCV .beton files: written once into a cache dir, keyed by dataset and field options, atomically.

Two writers: an in-memory ImageSet (MNIST, CIFAR) as raw uint8 arrays, and the listed (file, class) samples of
a folder of class subfolders as JPEGs (RGBImageField). Either file has fields `image` and `label` (the clean
label).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ffcv.fields import IntField, NDArrayField, RGBImageField
from ffcv.reader import Reader
from ffcv.types import ALLOC_TABLE_TYPE, CURRENT_VERSION, HeaderType
from ffcv.writer import DatasetWriter
from PIL import Image

from errors import UsageError
from loaders.datasets import ImageSet, cache_dir
from rundir import atomic_path

FORMAT = "v1"  # bump when what a key describes changes, so old cache files are never read
FOLDER_FORMAT = "v2"  # v2: the samples listed by the caller (loaders.folder's listing), not ImageFolder's own


class _Pairs:
    """(image, label) pairs of an ImageSet, as FFCV's writer indexes them."""

    def __init__(self, data: ImageSet) -> None:
        self.images, self.labels = data.images.numpy(), data.labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])


class _Files:
    """(RGB image, label) of listed (file, class) samples, as FFCV's writer indexes them."""

    def __init__(self, samples: Sequence[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        file, label = self.samples[i]
        with Image.open(file) as image:
            return image.convert("RGB"), label


def _write(path: Path, fields: dict, dataset, workers: int) -> None:
    """Write to a temp file beside path, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {path}", flush=True)
    with atomic_path(path) as tmp:
        DatasetWriter(str(tmp), fields, num_workers=workers).from_indexed_dataset(dataset)  # tqdm progress bar


def imageset_beton(name: str, split: str, data: ImageSet, cache: Path, rebuild: bool = False,
                   workers: int = 2) -> Path:
    """The .beton of one split of an in-memory dataset (raw uint8 CHW arrays), written if missing."""
    shape = tuple(data.images.shape[1:])
    path = cache / f"{name}-{split}-n{len(data)}-ndarray-uint8-{'x'.join(map(str, shape))}-{FORMAT}.beton"
    if rebuild or not path.exists():
        fields = {"image": NDArrayField(np.dtype("uint8"), shape), "label": IntField()}
        _write(path, fields, _Pairs(data), workers)
    return path


def folder_beton(folder: Path, samples: Sequence[tuple[str, int]], cache: Path, max_resolution: int,
                 jpeg_quality: int, rebuild: bool = False, workers: int = 2) -> Path:
    """The .beton of a split folder's (file, class) samples, in their order, as JPEGs."""
    folder = Path(folder).resolve()
    where = hashlib.sha1(str(folder).encode()).hexdigest()[:10]  # two folders of one name stay apart
    path = cache / f"{folder.name}-{where}-jpg-r{max_resolution}-q{jpeg_quality}-{FOLDER_FORMAT}.beton"
    if rebuild or not path.exists():
        fields = {"image": RGBImageField(write_mode="jpg", max_resolution=max_resolution, jpeg_quality=jpeg_quality),
                  "label": IntField()}
        _write(path, fields, _Files(samples), workers)
    return path


def check(path: Path) -> None:
    """One clear line when a .beton is truncated or corrupt (FFCV itself would fail obscurely or read garbage)."""
    bad = UsageError(f"{path} is truncated or corrupt: delete it or pass data.rebuild=true to write it again")
    size = path.stat().st_size
    if size < HeaderType.itemsize:
        raise bad
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    table_at = int(header["alloc_table_ptr"])
    if header["version"] != CURRENT_VERSION or not 0 < table_at <= size or (size - table_at) % ALLOC_TABLE_TYPE.itemsize:
        raise bad
    try:
        reader = Reader(str(path))
    except Exception:  # FFCV raises assorted errors (AssertionError, ValueError, KeyError) on bad bytes
        raise bad from None
    table = reader.alloc_table
    if len(reader.metadata) != reader.num_samples or (len(table) and (table["ptr"] + table["size"]).max() > table_at):
        raise bad


def labels(path: Path) -> torch.Tensor:
    """The clean labels a .beton holds, from its metadata alone (no image is read)."""
    reader = Reader(str(path))
    return torch.from_numpy(reader.metadata[f"f{list(reader.handlers).index('label')}"].astype(np.int64))


def ensure(name: str, full: ImageSet, cache: str | os.PathLike | None, rebuild: bool, workers: int) -> Path:
    """The checked .beton of a dataset's training split, written first when missing (or rebuild)."""
    path = imageset_beton(name, "train", full, cache_dir(cache), rebuild, workers)
    check(path)
    return path
