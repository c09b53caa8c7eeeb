"""data.dataset=folder: your own images, as class folders under data.path.

    <data.path>/train/<class>/*   the training split (any file Pillow reads)
    <data.path>/val/<class>/*     the test split (or test/<class>/*)

Classes are the training split's folder names, sorted, and samples in ImageFolder's order, hidden folders and
files left out (data.backend=ffcv writes this listing to its .betons, so every backend sees one). Images are kept
at their size when all share one, else resized (shorter side) and centre-cropped to data.image_size, as
ImageNet is. Per-channel mean and std are computed once on the training split and cached as JSON beside
its .beton. ImageNet is this with path <root>/imagenet, 1,000 classes and its usual constants.

A bad tree stops with one line: no train/ or val/, one class only, a class of train/ missing from val/
(or the reverse), a class folder with no file, an image Pillow cannot read.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from errors import UsageError, invalid
from rundir import atomic_path

TEST_SPLITS = ("val", "test")  # the first that exists is the test split
STATS_FORMAT = "v1"


@dataclass(frozen=True)
class Tree:
    """A checked class-folder tree: its splits' (file, class index) samples, class names and image shape
    when every image shares one size ((3, H, W)), else None (resized to data.image_size)."""

    path: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    shape: tuple[int, int, int] | None

    @property
    def key(self) -> str:
        """The tree's name in cache files: its folder's name and a hash of its path."""
        return f"{self.path.name}-{hashlib.sha1(str(self.path).encode()).hexdigest()[:10]}"

    def split_dir(self, train: bool) -> Path:
        return self.path / "train" if train else test_dir(self.path)

    def image_shape(self, image_size: int) -> tuple[int, int, int]:
        return self.shape or (3, image_size, image_size)

    def split(self, train: bool) -> tuple[tuple[str, int], ...]:
        return self.train if train else self.test


def _samples(split: Path, classes: list[str]) -> tuple[list[tuple[str, int]], set[tuple[int, int]]]:
    """Every file of split/<class>/ with its class index, in ImageFolder's order (folders as os.walk lists them,
    sorted, then their files sorted), and the image sizes seen (header only)."""
    samples, sizes = [], set()
    for c, name in enumerate(classes):
        files = [Path(folder) / file for folder, _, names in sorted(os.walk(split / name, followlinks=True))
                 for file in sorted(names) if not file.startswith(".")]
        if not files:
            raise UsageError(f"class folder {split / name} holds no image: every class needs images in every split")
        for file in files:
            try:
                with Image.open(file) as image:
                    sizes.add(image.size)
            except (UnidentifiedImageError, OSError) as exc:
                raise UsageError(f"{file} is not an image Pillow can read ({type(exc).__name__}): remove or "
                                 "replace it") from None
            samples.append((str(file), c))
    return samples, sizes


def test_dir(root: Path) -> Path | None:
    """The tree's test split folder: the first of TEST_SPLITS that exists."""
    return next((root / s for s in TEST_SPLITS if (root / s).is_dir()), None)


def _class_names(split: Path) -> list[str]:
    return sorted(p.name for p in split.iterdir() if p.is_dir() and not p.name.startswith("."))


@functools.lru_cache(maxsize=4)
def scan(path: str) -> Tree:
    """The checked tree under path (listed and every image header read once per process)."""
    root = Path(path).expanduser().resolve()
    train = root / "train"
    test = test_dir(root)
    if not train.is_dir() or test is None:
        raise invalid("data.path", path, "a folder holding train/<class>/ and val/<class>/ (or test/<class>/) image folders")
    classes = _class_names(train)
    if len(classes) < 2:
        raise UsageError(f"{train} has {len(classes)} class folder{'s' * (len(classes) != 1)}"
                         f"{' (' + classes[0] + ')' if classes else ''}: a classification needs at least 2")
    test_classes = _class_names(test)
    for name in classes:
        if name not in test_classes:
            raise UsageError(f"class {name!r} of {train} is missing from {test}: every class needs test images")
    for name in test_classes:
        if name not in classes:
            raise UsageError(f"class {name!r} of {test} has no training folder in {train}")
    train_samples, sizes = _samples(train, classes)
    test_samples, test_sizes = _samples(test, classes)
    sizes |= test_sizes
    shape = (3, next(iter(sizes))[1], next(iter(sizes))[0]) if len(sizes) == 1 else None
    return Tree(root, tuple(classes), tuple(train_samples), tuple(test_samples), shape)


def read(tree: Tree, train: bool, image_size: int, keep_size: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's images (N, 3, H, W) uint8 RGB (see `image`), and its labels."""
    samples = tree.split(train)
    images = torch.stack([image(file, image_size, keep_size) for file, _ in samples])
    return images, torch.tensor([c for _, c in samples], dtype=torch.int64)


def image(file: str, image_size: int, keep_size: bool) -> torch.Tensor:
    """One image as (3, H, W) uint8 RGB: as it is (keep_size: the tree's images share one size), else
    resized (shorter side) and centre-cropped to image_size, as ImageNet is."""
    from torchvision.transforms import v2

    with Image.open(file) as img:
        rgb = v2.functional.pil_to_tensor(img.convert("RGB"))
    if keep_size:
        return rgb
    return v2.functional.center_crop(v2.functional.resize(rgb, image_size, antialias=True), image_size)


def stats_path(tree: Tree, image_size: int, cache: Path) -> Path:
    """Where the training split's mean and std are cached: beside its .beton in the cache dir."""
    size = "x".join(map(str, tree.image_shape(image_size)))
    return cache / f"{tree.key}-train-{size}-stats-{STATS_FORMAT}.json"


def stats(tree: Tree, image_size: int, cache: Path, images: torch.Tensor | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the training split in [0, 1] units: read from the cache, else computed
    (from `images` when given, else by reading the split) and cached."""
    path = stats_path(tree, image_size, cache)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["images"] == len(tree.train):  # images added since: computed again
            return tuple(saved["mean"]), tuple(saved["std"])
    total, squares, count = 0, 0, 0  # float64 sums, per channel, from the first batch on
    batches = [images] if images is not None else (image(f, image_size, tree.shape is not None)[None] for f, _ in tree.train)
    for batch in batches:  # one image at a time when read from disk: a large folder never sits in memory
        x = batch.double().div(255).transpose(0, 1).reshape(3, -1)
        total, squares, count = total + x.sum(1), squares + (x * x).sum(1), count + x.shape[1]
    mean = total / count
    std = (squares / count - mean * mean).clamp(min=1e-6).sqrt()  # a flat channel: no division by 0
    mean, std = mean.tolist(), std.tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"mean": mean, "std": std, "images": len(tree.train), "folder": str(tree.path)}))
    return tuple(mean), tuple(std)

