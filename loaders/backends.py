"""The training-set loader behind `data.backend`: tensor, ffcv, torch, or auto.

auto = tensor when the clean images fit in half the device's free memory (a fractional GPU trial: of its
share), else ffcv, and always ffcv for real ImageNet, which is read from JPEG .betons of its class folders
and never held in memory (on_disk).
torch is the baseline a user would write, kept for comparison.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from loaders import datasets, folder
from loaders.datasets import ImageSet
from loaders.noise import NoiseModel
from loaders.tensor import TensorLoader

BACKENDS = ("auto", "tensor", "ffcv", "torch")


def free_memory(device: torch.device) -> int:
    """Bytes free on the device (available RAM for the CPU); on CUDA, within this process's memory fraction
    (a trial with a fractional GPU is capped at its share: study.trainable.claim_gpu)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        share = int(torch.cuda.get_per_process_memory_fraction(device) * total) - torch.cuda.memory_reserved(device)
        return max(0, min(free, share))
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose(backend: str, image_bytes: int, n_virtual: int, members: int, device: torch.device) -> str:
    """auto: tensor when the table's images and one epoch's order, sources and member labels (int64 each)
    fit in half the free device memory."""
    if backend != "auto":
        return backend
    need = image_bytes + 8 * (2 + members) * n_virtual
    return "tensor" if need <= free_memory(device) // 2 else "ffcv"


def prepare(name: str, full: ImageSet, data_cfg: dict[str, Any]) -> None:
    """In the launcher, before any trial: write and check a .beton once, so a corrupt file is one line
    and exit 2 rather than failed trials, and trials never race to write it."""
    from loaders import beton

    beton.ensure(name, full, data_cfg.get("cache"), data_cfg.get("rebuild", False), writers(data_cfg))


def writers(data_cfg: dict[str, Any]) -> int:
    """Processes that write a .beton: data.workers, else every core."""
    return data_cfg.get("workers") or os.cpu_count() or 1


def import_ffcv():
    """loaders.ffcv_loader, imported only when used (importing ffcv sets torch's thread count to 1: restored)."""
    threads = torch.get_num_threads()
    from loaders import ffcv_loader

    torch.set_num_threads(threads)
    return ffcv_loader


def loader_workers(data_cfg: dict[str, Any]) -> int:
    """data.workers, else the trial's CPU threads (torch: 0 = load in the main process)."""
    workers = data_cfg.get("workers")
    return torch.get_num_threads() if workers is None else workers


def make(data_cfg: dict[str, Any], name: str, full: ImageSet, rows: torch.Tensor, noises: Sequence[NoiseModel],
         batch_size: int, seed: int, device: torch.device, relabel: bool = True):
    """The training loader, yielding (images, labels (K, B)) for K member noise models. Rows of `full`
    (named `name`, the key of its .beton) form the image table that the noise models index: the clean
    examples, then any noise pool. relabel=False: ffcv without its relabel op (bench.loaders measures
    the op's cost)."""
    workers = loader_workers(data_cfg)
    backend = choose(data_cfg.get("backend", "auto"), rows.numel() * full.images[0].nbytes, noises[0].n_virtual,
                     len(noises), device)
    if backend == "tensor":
        return TensorLoader(full.subset(rows), noises, batch_size, seed, device)
    if backend == "torch":
        from loaders.torch_loader import TorchLoader

        return TorchLoader(full.subset(rows), noises, batch_size, seed, device, workers)
    loader = import_ffcv()
    from loaders import beton

    path = beton.ensure(name, full, data_cfg.get("cache"), data_cfg.get("rebuild", False), max(workers, 1))
    return loader.VirtualLoader(path, rows.numpy(), noises, batch_size, seed, device, max(workers, 1), full.mean,
                                full.std, relabel=relabel)


def on_disk(data_cfg: dict[str, Any]) -> bool:
    """A class-folder tree read from JPEG .betons, never held in memory (the in-memory loaders take small
    folders only): real ImageNet with data.backend ffcv or auto; data.dataset=folder with ffcv, or with auto
    when its training split is over datasets.FOLDER_MAX_IMAGES."""
    backend, name = data_cfg.get("backend", "auto"), data_cfg["dataset"]
    if name == "folder":
        return backend == "ffcv" or (backend == "auto" and len(datasets.tree(data_cfg).train) > datasets.FOLDER_MAX_IMAGES)
    return name == "imagenet" and backend in ("ffcv", "auto") and datasets.present("imagenet", Path(data_cfg["root"]))


def folder_split(data_cfg: dict[str, Any], train: bool) -> tuple[Path, torch.Tensor]:
    """A tree's training or test split folder as a JPEG .beton, written once, and its labels."""
    from loaders import beton

    if data_cfg["dataset"] == "imagenet":  # listed by ImageFolder: no header read of 1.28M files per trial
        from torchvision.datasets import ImageFolder

        folder = Path(data_cfg["root"]) / "imagenet" / ("train" if train else "val")
        samples = ImageFolder(str(folder)).samples
    else:  # the tensor backend's listing: both backends index one set of samples
        tree = datasets.tree(data_cfg)
        folder, samples = tree.split_dir(train), tree.split(train)
    path = beton.folder_beton(folder, samples, beton.cache_dir(data_cfg.get("cache")),
                              data_cfg.get("max_resolution", 256), data_cfg.get("jpeg_quality", 90),
                              data_cfg.get("rebuild", False), writers(data_cfg))
    beton.check(path)
    return path, beton.labels(path)


def folder_loader(data_cfg: dict[str, Any], path: Path, rows: torch.Tensor, noises: Sequence[NoiseModel],
                  batch_size: int, seed: int, device: torch.device):
    """The FFCV loader over rows of a folder .beton, decoded and centre-cropped to data.image_size; normalised
    with ImageNet's constants, or a folder's own training-split stats (computed once, cached)."""
    mean, std = datasets.STATS["imagenet"]
    if data_cfg["dataset"] == "folder":
        mean, std = folder.stats(datasets.tree(data_cfg), data_cfg.get("image_size", 224), datasets.cache_dir(data_cfg.get("cache")))
    return import_ffcv().VirtualLoader(path, rows.numpy(), noises, batch_size, seed, device,
                                       max(loader_workers(data_cfg), 1), mean, std,
                                       jpeg_size=data_cfg.get("image_size", 224))
