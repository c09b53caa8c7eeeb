"""Datasets as whole uint8 tensors, read through torchvision (or numpy archives).

The data root is, in order: the config key ``data.root``, the environment variable
``STUDY_DATA_ROOT``, else a per-user cache dir. Online users get torchvision's download; offline with
no data, the user gets one line naming the root searched and how to fix it.

Layouts under the root, first match wins:
  mnist     MNIST/raw/*-ubyte (torchvision)
  cifar10   cifar10.npz (x_train, y_train, x_test, y_test; orig_index_* restore the original
            order), else cifar-10-batches-py/ (torchvision, downloaded when online)
  cifar100  cifar100.npz (same arrays), else cifar-100-python/ (torchvision, downloaded when online)
  imagenet  imagenet/train/<class>/*, imagenet/val/<class>/*: a class-folder tree (loaders.folder),
            resized and centre-cropped to data.image_size. The tensor path holds a
            split in memory, so it takes small folders only (FOLDER_MAX_IMAGES); with data.backend
            ffcv or auto, ImageNet is read from JPEG .betons instead (loaders.backends.on_disk).
  folder    not under the root: data.path holds train/<class>/* and val/<class>/* (loaders.folder).
When cifar10/cifar100/imagenet are absent and data.stand_in is true (preset=smoke), a small generated
stand-in with the same image shape and class count is used instead (the launcher says so).
"""

from __future__ import annotations

import os
import shutil
import zlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from errors import UsageError, invalid
from loaders import folder

DATASETS = ("mnist", "cifar10", "cifar100", "imagenet", "folder")
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100, "imagenet": 1000}
# Per-channel mean and std of each training split in [0, 1] units (the usual constants; cifar10's
# match cifar10.npz to 4 decimals, see ../shared/datasets/SOURCES.md).
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
TORCHVISION = {"mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
TITLES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet", "folder": "Image folders"}
FOLDER_MAX_IMAGES = 20_000  # 20k 224x224 RGB images are 3 GB of uint8
# Stand-in sizes (train, test): enough for smoke subsets, small enough to generate in a second.
STAND_IN_SIZE = {"cifar10": (5000, 2000), "cifar100": (5000, 2000), "imagenet": (3000, 2000)}
# The real splits (train, test): what a plan is checked against before anything runs.
SPLIT_SIZE = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
              "imagenet": (1_281_167, 50_000)}


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

    def extend(self, other: "ImageSet") -> "ImageSet":
        """This set with other's images appended (the noise pools); keeps this set's stats."""
        return ImageSet(torch.cat([self.images, other.images]), torch.cat([self.labels, other.labels]),
                        self.num_classes, self.mean, self.std)


def user_dir() -> Path:
    """The per-user folder of this project's downloads and artifacts (ffcv .betons: beton.cache_dir)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser().resolve() / "label-noise-study"


def resolve_root(root: str | os.PathLike | None, storage: Path | None = None) -> Path:
    """data.root, else $STUDY_DATA_ROOT, else datasets/ under the storage root (default: the user cache dir);
    always absolute."""
    if root in (None, ""):
        root = os.environ.get("STUDY_DATA_ROOT") or (storage or user_dir()) / "datasets"
    return Path(root).expanduser().resolve()


def cache_dir(cache: str | os.PathLike | None) -> Path:
    """data.cache (the launcher sets it under storage.root), else ffcv/ in the user cache dir: .betons and folder stats."""
    return Path(cache).expanduser().resolve() if cache not in (None, "") else user_dir() / "ffcv"


def tree(data: dict) -> "folder.Tree":
    """The checked class-folder tree of data.dataset=folder (data.path) or imagenet (<root>/imagenet)."""
    if data["dataset"] == "imagenet":
        return folder.scan(str(Path(data["root"]) / "imagenet"))
    return folder.scan(str(data["path"]))


def num_classes(data: dict) -> int:
    """The class count of the data section's dataset (a folder tree's: its class folders)."""
    return len(tree(data).classes) if data["dataset"] == "folder" else NUM_CLASSES[data["dataset"]]


def default_confusion_path(dataset: str, storage: Path | None = None) -> Path:
    """Where exp=confusion leaves its summed test confusion matrix and exp=structured looks for it, under the
    storage root (default: the user cache dir)."""
    return (storage or user_dir()) / "confusion" / f"{dataset}.npy"


def _mnist_files(root: Path) -> list[Path]:
    raw = root / "MNIST" / "raw"
    return [raw / f for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]


def _tv_folder(name: str, root: Path) -> Path:
    """torchvision's extracted folder of a CIFAR dataset."""
    return root / {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]


def present(name: str, root: Path) -> bool:
    """Whether the dataset's files are under root (in any layout of the module docstring)."""
    if name == "mnist":
        return all(p.exists() for p in _mnist_files(root))
    if name == "imagenet":
        return (root / "imagenet" / "train").is_dir() and (root / "imagenet" / "val").is_dir()
    if name == "folder":  # not under the root: data.path, checked by loaders.folder.scan
        return True
    return (root / f"{name}.npz").is_file() or _tv_folder(name, root).is_dir()


def _download(name: str, root: Path) -> None:
    """torchvision's download into a temporary dir, moved into root only when complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-download-"))
    try:
        cls = getattr(torchvision.datasets, TORCHVISION[name])
        cls(tmp, train=True, download=True)
        cls(tmp, train=False, download=True)
        folder = "MNIST" if name == "mnist" else _tv_folder(name, tmp).name
        (root / folder).mkdir(parents=True, exist_ok=True)
        shutil.copytree(tmp / folder, root / folder, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_available(name: str, root: Path, download: bool, stand_in: bool = False) -> bool:
    """Make sure the dataset is on disk under root, downloading it when allowed.

    Returns True when it is absent and the generated stand-in will be used instead (stand_in=True,
    never for MNIST). A download goes to a temporary dir first and is moved into root only when
    complete, so a failed or interrupted download leaves nothing behind.
    """
    if name not in DATASETS:
        raise invalid("data.dataset", name, choices=DATASETS)
    if present(name, root):
        return False
    where = {"mnist": f"MNIST in torchvision's layout under {root}/MNIST/raw",
             "cifar10": f"{root}/cifar10.npz or {root}/cifar-10-batches-py",
             "cifar100": f"{root}/cifar100.npz or {root}/cifar-100-python",
             "imagenet": f"class folders under {root}/imagenet/train and {root}/imagenet/val"}[name]
    fix = f"put {where}, or point data.root= (or STUDY_DATA_ROOT) at a folder that holds it"
    # ImageNet cannot be downloaded (its licence): naming data.download=false would blame a setting the user set
    failure = "data.download=false" if name in TORCHVISION else "it is never downloaded"
    if download and name in TORCHVISION:
        try:
            _download(name, root)
            return False
        except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError when offline
            detail = str(exc).splitlines()[0][:120] if str(exc) else ""
            failure = f"the download failed ({type(exc).__name__}: {detail})"
    if stand_in and name != "mnist":
        return True
    stand_in_hint = "; or use preset=smoke (data.stand_in=true) for a generated stand-in" if name != "mnist" else ""
    raise UsageError(f"{TITLES[name]} not found under {root} and {failure}: {fix}{stand_in_hint}")


def load(name: str, root: Path, train: bool, stand_in: bool = False, image_size: int = 224, path: str | None = None,
         cache: str | None = None) -> ImageSet:
    """One split of a dataset as tensors (call ensure_available first).

    stand_in: use the generated stand-in when the files are absent; image_size: imagenet and folder;
    path: folder's data.path; cache: data.cache, where a folder's training-split stats are kept.
    """
    if name == "folder":
        return _folder_set(tree({"dataset": name, "path": path}), train, image_size, cache_dir(cache))
    mean, std = STATS[name]
    if not present(name, root):
        if not stand_in or name == "mnist":
            ensure_available(name, root, download=False)  # raises the one-line error
        return generated_stand_in(name, train, image_size)
    if name == "mnist":
        ds = torchvision.datasets.MNIST(root, train=train, download=False)
        return ImageSet(ds.data.unsqueeze(1).contiguous(), ds.targets.long(), 10, mean, std)  # (N, 1, 28, 28)
    if name == "imagenet":
        return _folder_set(tree({"dataset": name, "root": root}), train, image_size)
    split = "train" if train else "test"
    npz = root / f"{name}.npz"
    if npz.is_file():
        with np.load(npz) as d:
            x, y = d[f"x_{split}"], d[f"y_{split}"]
            if f"orig_index_{split}" in d:  # cifar10.npz is sorted by class: restore the original order
                x, y = _reorder(x, d[f"orig_index_{split}"]), _reorder(y, d[f"orig_index_{split}"])
    else:
        ds = getattr(torchvision.datasets, TORCHVISION[name])(root, train=train, download=False)
        x, y = ds.data, np.asarray(ds.targets)
    images = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return ImageSet(images, torch.from_numpy(np.asarray(y, dtype=np.int64)), NUM_CLASSES[name], mean, std)


def _reorder(a: np.ndarray, orig_index: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    out[orig_index] = a
    return out


def _folder_set(found: "folder.Tree", train: bool, size: int, cache: Path | None = None) -> ImageSet:
    """A split of a class-folder tree in memory (small trees only); ImageNet's usual stats, else the
    training split's own, cached in `cache`."""
    split = found.split(train)
    if len(split) > FOLDER_MAX_IMAGES:
        raise UsageError(f"a split of {found.path} holds {len(split)} images; data.backend=tensor or torch keeps a split in memory and "
                         f"takes at most {FOLDER_MAX_IMAGES}: use data.backend=ffcv or auto")
    imagenet = cache is None
    if imagenet and len(found.classes) != NUM_CLASSES["imagenet"]:
        raise UsageError(f"{found.path} has {len(found.classes)} class folders; imagenet needs {NUM_CLASSES['imagenet']}")
    images, labels = folder.read(found, train, size, keep_size=not imagenet and found.shape is not None)
    if imagenet:
        mean, std = STATS["imagenet"]
    else:
        mean, std = folder.stats(found, size, cache, images if train else None)
    return ImageSet(images, labels, len(found.classes), mean, std)


def generated_stand_in(name: str, train: bool, image_size: int = 224) -> ImageSet:
    """A small deterministic stand-in for an absent dataset: the real one's image shape, class count
    and pixel statistics, class-balanced, each class a smooth random template plus pixel noise (so a
    model can learn it). Meant for smoke runs of the plumbing only."""
    m = NUM_CLASSES[name]
    mean, std = STATS[name]
    size = 32 if name.startswith("cifar") else image_size
    count = STAND_IN_SIZE[name][0 if train else 1]
    templates_rng = np.random.default_rng(zlib.crc32(name.encode()))  # shared by both splits
    rng = np.random.default_rng([zlib.crc32(name.encode()), int(train)])
    coarse = torch.from_numpy(templates_rng.normal(size=(m, 3, 4, 4))).float()
    templates = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    templates = templates / templates.std()
    labels = torch.from_numpy(rng.permutation(np.arange(count) % m))
    pixels = torch.from_numpy(rng.normal(size=(count, 3, size, size))).float()
    z = (0.6 * templates[labels] + 0.8 * pixels)  # unit variance
    x = torch.tensor(mean).view(1, 3, 1, 1) + torch.tensor(std).view(1, 3, 1, 1) * z
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels.long(), m, mean, std)


def split_sizes(name: str, root: Path, stand_in: bool, path: str | None = None) -> tuple[int, int] | None:
    """(train, test) sizes of the splits a trial will load, without loading them: the generated stand-in's
    when the files are absent and data.stand_in is set, else the real dataset's; None for an ImageNet folder
    tree on disk (its size is known only by listing it). A root one may not read: PermissionError."""
    if name == "folder":
        found = tree({"dataset": name, "path": path})
        return len(found.train), len(found.test)
    if name == "imagenet" and present(name, root):
        return None
    if stand_in and name != "mnist" and not present(name, root):
        return STAND_IN_SIZE[name]
    return SPLIT_SIZE[name]


def check_subset_size(size: int | None, n: int, key: str = "subset size", where: str = "") -> None:
    """A subset of `size` examples (None: all) can be drawn from a split of n: else one line naming the key."""
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and 0 < size <= n):
        raise invalid(key, size, f"an integer in [1, {n}]{where}")


def stratified_subset(labels: torch.Tensor, size: int | None, seed: int, key: str = "subset size") -> torch.Tensor:
    """Indices of a class-balanced random subset of `size` examples (all indices when size is None)."""
    n = int(labels.numel())
    check_subset_size(size, n, key)
    if size is None:
        return torch.arange(n)
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


def check_novel(n_rest: int, n_clean: int, count: int, alpha: float | None = None, n_val: int = 0) -> None:
    """noise.source=novel draws `count` images from the n_rest training images outside the n_clean clean ones
    (and the n_val held out for validation)."""
    if count > n_rest:
        head = f"noise.alpha={alpha!r} is invalid: " if alpha is not None else ""
        held = f" and the {n_val} validation ones" if n_val else ""
        raise UsageError(f"{head}noise.source=novel needs {count} unused training images (n_clean x alpha) but only "
                         f"{n_rest} lie outside the {n_clean} clean ones{held}: lower noise.alpha to at most "
                         f"{n_rest / max(n_clean, 1):g} or data.n_clean")


def novel_index(n_total: int, clean_index: torch.Tensor, count: int, seed: int,
                val_index: torch.Tensor | None = None) -> torch.Tensor:
    """`count` distinct training indices outside the clean subset and the validation split, in a seeded random
    order: the images of noise.source=novel (Fig. 7), one per noisy copy, never repeated."""
    held = np.zeros(0, np.int64) if val_index is None else val_index.numpy()
    rest = np.setdiff1d(np.arange(n_total), np.concatenate([clean_index.numpy(), held]))
    check_novel(rest.size, clean_index.numel(), count, n_val=held.size)
    return torch.from_numpy(np.random.default_rng([seed, 7]).permutation(rest)[:count])
