"""The training-set loader behind `data.backend`: tensor, ffcv, torch, or auto.

auto = tensor when the clean images fit in half the device's free memory, else ffcv: on the same
machine the in-memory tensor path is the fastest (bench/results), and ffcv is the path for data too big
to hold (ImageNet). torch is the baseline a user would write, kept for comparison.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from loaders import datasets
from loaders.datasets import ImageSet
from loaders.errors import UsageError
from loaders.noise import NoiseModel
from loaders.tensor import TensorLoader

BACKENDS = ("auto", "tensor", "ffcv", "torch")


def check(data: dict[str, Any]) -> None:
    """One clear line for a bad data.backend, data.workers or data.rebuild."""
    backend, workers, rebuild = data.get("backend", "auto"), data.get("workers"), data.get("rebuild", False)
    if backend not in BACKENDS:
        raise UsageError(f"data.backend={backend!r} is unknown: choose one of {', '.join(BACKENDS)}")
    if workers is not None and not (isinstance(workers, int) and workers >= 0):
        raise UsageError(f"data.workers={workers!r} is invalid: it must be null or an integer >= 0")
    if not isinstance(rebuild, bool):
        raise UsageError(f"data.rebuild={rebuild!r} is invalid: it must be true or false")


def free_memory(device: torch.device) -> int:
    """Bytes free on the device (available RAM for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def choose(backend: str, data: ImageSet, noise: NoiseModel, device: torch.device) -> str:
    if backend != "auto":
        return backend
    need = data.images.numel() * data.images.element_size() + 8 * noise.n_virtual  # images + one epoch's order
    return "tensor" if need <= free_memory(device) // 2 else "ffcv"


def prepare(data_cfg: dict[str, Any]) -> None:
    """In the launcher, before any trial: write and check the .beton once, so a corrupt file is one line
    and exit 2 rather than failed trials, and trials never race to write it."""
    if data_cfg.get("backend") != "ffcv":
        return
    from loaders import beton

    full = datasets.load(data_cfg["dataset"], Path(data_cfg["root"]), train=True)
    workers = data_cfg.get("workers") or os.cpu_count() or 1
    beton.ensure(data_cfg["dataset"], full, data_cfg.get("cache"), data_cfg.get("rebuild", False), workers)
    data_cfg["rebuild"] = False  # rebuilt once here; the trials read that file


def make(data_cfg: dict[str, Any], full: ImageSet, rows: torch.Tensor, noise: NoiseModel, batch_size: int,
         seed: int, device: torch.device):
    """The training loader: rows of the full split form the clean set that `noise` dilutes."""
    check(data_cfg)
    train_set = full.subset(rows)
    workers = data_cfg.get("workers")
    workers = torch.get_num_threads() if workers is None else workers
    backend = choose(data_cfg.get("backend", "auto"), train_set, noise, device)
    if backend == "tensor":
        return TensorLoader(train_set, noise, batch_size, seed, device)
    if backend == "torch":
        from loaders.torch_loader import TorchLoader

        return TorchLoader(train_set, noise, batch_size, seed, device, workers)
    threads = torch.get_num_threads()
    from loaders import beton  # ffcv imported only when used
    from loaders.ffcv_loader import VirtualLoader

    torch.set_num_threads(threads)  # importing ffcv sets torch's thread count to 1

    path = beton.ensure(data_cfg["dataset"], full, data_cfg.get("cache"), data_cfg.get("rebuild", False), max(workers, 1))
    return VirtualLoader(path, rows.numpy(), noise, batch_size, seed, device, max(workers, 1), full.mean, full.std)
