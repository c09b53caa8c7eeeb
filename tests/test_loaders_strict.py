"""Loaders exactly: the JPEG (class-folder) .beton is written once and pairs each image with its own label;
every backend's order changes between epochs and is the same for the same order seed."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from loaders import backends, beton, data, datasets
from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import affine

CPU = torch.device("cpu")
LEVELS = {"ant": 30, "bee": 130, "cat": 230}  # red channel: the class; green channel: the image within it


def solid_folders(folder: Path, per_class: int = 4) -> None:
    for c, red in LEVELS.items():
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.empty((40, 48, 3), dtype=np.uint8)
            pixels[...] = (red, 20 + 50 * i, 90)
            Image.fromarray(pixels).save(folder / c / f"{i}.png")


def test_jpeg_beton_is_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "imgs"
    solid_folders(folder)
    path = beton.folder_beton(folder, tmp_path / "cache", 32, 90, workers=1)
    before = path.stat()
    monkeypatch.setattr(beton, "_write", lambda *a, **k: pytest.fail("the .beton was written again"))
    assert beton.folder_beton(folder, tmp_path / "cache", 32, 90, workers=1) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert sorted(os.listdir(tmp_path / "cache")) == [path.name]  # no temp or second file


def test_jpeg_path_pairs_each_image_with_its_own_labels(tmp_path: Path) -> None:
    """Solid-colour images: the decoded colour says which (class, image) a sample is; with noise the
    (image, label) multiset over an epoch equals the noise model's (source row, label) multiset."""
    from loaders.ffcv_loader import VirtualLoader

    folder = tmp_path / "imgs"
    solid_folders(folder)
    path = beton.folder_beton(folder, tmp_path / "cache", 32, 95, workers=1)
    clean = beton.labels(path)
    assert clean.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    mean, std = (0.5,) * 3, (0.25,) * 3
    scale, shift = affine(mean, std, CPU)

    def identify(x: torch.Tensor) -> list[int]:
        """Table row (class * 4 + image) of each decoded image, from its mean colour."""
        pixels = ((x - shift) / scale).mean((2, 3))  # (B, 3) in 0..255
        red = [min(LEVELS.values(), key=lambda v: abs(v - r)) for r in pixels[:, 0].tolist()]
        image = [round((g - 20) / 50) for g in pixels[:, 1].tolist()]
        assert (pixels[:, 0] - torch.tensor(red, dtype=pixels.dtype)).abs().max() < 8
        return [sorted(LEVELS.values()).index(r) * 4 + i for r, i in zip(red, image)]

    for alpha, seed in ((0, 0), (2, 9), (3, 4)):
        noise = NoiseModel(NoiseSpec(alpha=alpha, seed=seed), clean, 3)
        loader = VirtualLoader(path, None, [noise], 8, 5, CPU, 1, mean, std, jpeg_size=24)
        seen = Counter()
        for x, y in loader:
            assert x.shape[1:] == (3, 24, 24)
            seen.update(zip(identify(x), y[0].tolist()))
        source, label = noise(torch.arange(noise.n_virtual))
        assert seen == Counter(zip(source.tolist(), label.tolist()))
        if alpha == 0:  # every image carries its own class
            assert all(label == row // 4 for row, label in seen)


@pytest.fixture(scope="module")
def small(data_root: Path) -> datasets.ImageSet:
    full = data.load_split("mnist", str(data_root), True)
    return full.subset(datasets.stratified_subset(full.labels, 300, 0))


def sequence(loader) -> list[tuple[int, int]]:
    """The epoch as (image hash, label) in the order served."""
    out = []
    for x, y in loader:
        out += zip((hash(img.numpy().tobytes()) for img in x), y[0].tolist())
    return out


@pytest.mark.parametrize("backend", ["tensor", "torch", "ffcv"])
def test_order_changes_per_epoch_and_repeats_per_seed(small: datasets.ImageSet, tmp_path_factory, backend: str) -> None:
    cache = tmp_path_factory.mktemp("beton")
    rows = torch.arange(len(small))
    spec = NoiseSpec(alpha=1.0, seed=3)

    def make(order_seed: int):
        noise = NoiseModel(spec, small.labels, 10)
        cfg = {"dataset": "mnist", "backend": backend, "cache": str(cache), "workers": 1}
        return backends.make(cfg, "mnist-small300", small, rows, [noise], 64, order_seed, CPU)

    a, b, c = make(7), make(7), make(8)
    a0 = sequence(a)
    a.set_epoch(1)
    a1 = sequence(a)
    assert len(a0) == 600 and Counter(a0) == Counter(a1)  # the same epoch content
    assert a0 != a1  # in another order
    assert sequence(b) == a0  # a fresh loader with the same seed: the same order
    b.set_epoch(1)
    assert sequence(b) == a1
    a.set_epoch(0)
    assert sequence(a) == a0  # an epoch's order depends on (seed, epoch) only
    assert sequence(c) != a0 and Counter(sequence(c)) == Counter(a0)  # another order seed
