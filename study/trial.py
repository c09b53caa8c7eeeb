"""One training run built from a plain config dict (what a Tune trial receives). No Ray, no Hydra.

Config layout (every key is set by the launcher from the Hydra config):
  data:  dataset, root (absolute), download, n_clean (None = all), n_test (None = all), subset_seed,
         stand_in, image_size, backend, cache, rebuild, workers, max_resolution, jpeg_quality
         (from backend on: loaders.backends)
  noise: alpha, seed, delta, order, source, confusion (None = the default artifact path)
  model: arch, mlp_hidden, conv_channels, fc_hidden
  train: lr, batch_size, epochs, seed, loss (ce | h_alpha), device, report_confusion
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loaders import backends, datasets
from loaders.errors import UsageError
from loaders.noise import NoiseModel, NoiseSpec, distribution
from loaders.tensor import batches
from study import losses, models, schema
from study.train import EpochReport, confusion_matrix, fit

EVAL_BATCH = 1024


def noise_spec(config: dict[str, Any]) -> NoiseSpec:
    """The noise section as a spec; noise.confusion defaults to where exp=confusion writes its artifact."""
    noise = dict(config["noise"])
    noise["confusion"] = noise.get("confusion") or str(datasets.default_confusion_path(config["data"]["dataset"]))
    return NoiseSpec(**noise)


def check_noise(config: dict[str, Any]) -> None:
    """The noise spec, its (alpha, delta) feasibility, its confusion artifact and its image source."""
    spec, dataset = noise_spec(config), config["data"]["dataset"]
    if dataset not in datasets.DATASETS:
        raise UsageError(f"data.dataset={dataset!r} is unknown: choose one of {', '.join(datasets.DATASETS)}")
    if spec.delta > 0 and spec.order != "random" and not Path(spec.confusion).is_file():
        make = "python -m study.launch exp=confusion" + (f" data.dataset={dataset}" if dataset != "mnist" else "")
        if Path(spec.confusion) != datasets.default_confusion_path(dataset):
            make += f" noise.confusion={spec.confusion}"
        raise UsageError(f"noise.order={spec.order} needs the confusion matrix {spec.confusion}, which does not "
                         f"exist: make it with `{make}`")
    distribution(spec, datasets.NUM_CLASSES[dataset])  # rejects an infeasible (alpha, delta)
    if spec.source == "cifar100" and dataset != "cifar10":
        raise UsageError(f"noise.source=cifar100 is for data.dataset=cifar10 (same image shape), not {dataset}")


def check(config: dict[str, Any]) -> None:
    """Reject bad values with one clear line each, before anything runs or is written."""
    schema.check(config)  # every key's type and range, or its choices
    check_noise(config)  # the keys together: confusion artifact, feasible (alpha, delta), image source


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device=cuda but no CUDA device is visible: use train.device=auto or cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=4)
def load_split(name: str, root: str, train: bool, stand_in: bool = False, image_size: int = 224) -> datasets.ImageSet:
    """Cached per process, so trials that share a Tune actor read the files once."""
    return datasets.load(name, Path(root), train, stand_in, image_size)


@functools.lru_cache(maxsize=2)
def table_source(data: tuple[tuple[str, Any], ...], source: str) -> tuple[str, datasets.ImageSet]:
    """The set (and its name, the key of its .beton) whose rows form a trial's image table: the training
    split, with CIFAR-100's training images appended for noise.source=cifar100 (they have no class: -1)."""
    d = dict(data)
    extra = (d.get("stand_in", False), d.get("image_size", 224))
    full = load_split(d["dataset"], d["root"], True, *extra)
    if source != "cifar100":
        return d["dataset"], full
    other = load_split("cifar100", d["root"], True, *extra)
    pool = datasets.ImageSet(other.images, torch.full_like(other.labels, -1), other.num_classes, other.mean, other.std)
    return f"{d['dataset']}+cifar100", full.extend(pool)


def table_rows(spec: NoiseSpec, n_full: int, n_source: int, clean_index: torch.Tensor) -> torch.Tensor:
    """Rows of table_source's set that form the image table (see loaders.noise.NoiseModel): the clean
    examples, then one unused training image per noisy copy (novel) or all of CIFAR-100 (cifar100)."""
    n_noisy = spec.n_virtual(clean_index.numel()) - clean_index.numel()
    if spec.source == "novel":
        return torch.cat([clean_index, datasets.novel_index(n_full, clean_index, n_noisy, spec.seed)])
    if spec.source == "cifar100":
        return torch.cat([clean_index, torch.arange(n_full, n_source)])
    return clean_index


def data_key(data: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The data keys that decide which images table_source loads (hashable, for its cache)."""
    return tuple((k, data.get(k)) for k in ("dataset", "root", "stand_in", "image_size"))


class Trial:
    """Data, noise, model and optimizer of one run; `run` trains it and reports each epoch."""

    def __init__(self, config: dict[str, Any]) -> None:
        check(config)
        data, train = config["data"], config["train"]
        self.config = config
        self.device = pick_device(train["device"])
        torch.manual_seed(train["seed"])
        spec = noise_spec(config)
        # H_alpha trains on the clean examples only: the noise is in the loss, not in the labels.
        h_alpha = train["loss"] == "h_alpha"
        label_spec = dataclasses.replace(spec, alpha=0.0, delta=0.0) if h_alpha else spec
        if backends.on_disk(data):
            shape, num_classes = self.from_folders(data, label_spec, train["batch_size"], train["seed"])
        else:
            shape, num_classes = self.in_memory(data, label_spec, train["batch_size"], train["seed"])
        noise_dist = torch.from_numpy(distribution(spec, num_classes)).to(self.device)  # structured too
        self.loss_fn = losses.build(train["loss"], spec.alpha, noise_dist)
        m = config["model"]
        self.model = models.build(m["arch"], shape, num_classes, m["mlp_hidden"],
                                  tuple(m["conv_channels"]), m["fc_hidden"]).to(self.device)
        self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=train["lr"])
        self.epoch = 0

    def in_memory(self, data: dict[str, Any], spec: NoiseSpec, batch_size: int, seed: int) -> tuple[tuple[int, ...], int]:
        """Both splits loaded as tensors; the training loader from data.backend. Returns (image shape, classes)."""
        split = (data["dataset"], data["root"])
        extra = (data.get("stand_in", False), data.get("image_size", 224))
        full, test = load_split(*split, True, *extra), load_split(*split, False, *extra)
        clean_index = datasets.stratified_subset(full.labels, data["n_clean"], data["subset_seed"])
        test_set = test.subset(datasets.stratified_subset(test.labels, data["n_test"], data["subset_seed"]))
        self.test_batches = lambda: batches(test_set, EVAL_BATCH, self.device)
        name, source = table_source(data_key(data), spec.source)
        rows = table_rows(spec, len(full), len(source), clean_index)
        n = clean_index.numel()
        self.noise = NoiseModel(spec, full.labels[clean_index], full.num_classes, pool_labels=source.labels[rows[n:]])
        self.loader = backends.make(data, name, source, rows, self.noise, batch_size, seed, self.device)
        return tuple(full.images.shape[1:]), full.num_classes

    def from_folders(self, data: dict[str, Any], spec: NoiseSpec, batch_size: int, seed: int) -> tuple[tuple[int, ...], int]:
        """Real ImageNet: both splits read through FFCV from JPEG .betons, only their labels in memory."""
        (train_path, labels), (test_path, test_labels) = backends.folder_split(data, "train"), backends.folder_split(data, "val")
        m = datasets.NUM_CLASSES["imagenet"]
        clean_index = datasets.stratified_subset(labels, data["n_clean"], data["subset_seed"])
        rows = table_rows(spec, len(labels), len(labels), clean_index)
        self.noise = NoiseModel(spec, labels[clean_index], m, pool_labels=labels[rows[clean_index.numel():]])
        self.loader = backends.folder_loader(data, train_path, rows, self.noise, batch_size, seed, self.device)
        test_rows = datasets.stratified_subset(test_labels, data["n_test"], data["subset_seed"])
        clean_test = NoiseModel(NoiseSpec(), test_labels[test_rows], m)  # alpha = 0: every label clean
        self.test_batches = backends.folder_loader(data, test_path, test_rows, clean_test, EVAL_BATCH, 0, self.device).__iter__
        return (3, data.get("image_size", 224), data.get("image_size", 224)), m

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]

    def confusion(self) -> np.ndarray:
        """The model's (m, m) test confusion counts: row = true class, column = predicted class."""
        return confusion_matrix(self.model, self.test_batches(), self.device, self.noise.m).numpy()

    def run(self, on_epoch: Callable[[EpochReport], None]) -> EpochReport | None:
        def report(r: EpochReport) -> None:
            self.epoch = r.epoch
            on_epoch(r)

        return fit(self.model, self.optimizer, self.loader, self.test_batches,
                   self.config["train"]["epochs"], self.device, self.loss_fn, report,
                   start_epoch=self.epoch, set_epoch=self.loader.set_epoch)
