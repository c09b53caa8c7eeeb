"""One training run built from a plain config dict (what a Tune trial receives). No Ray, no Hydra.

Config layout (every key is set by the launcher from the Hydra config):
  data:  dataset, root (absolute), download, n_clean (None = all), n_test (None = all), subset_seed,
         stand_in, image_size, backend, cache, rebuild, workers (the last four: loaders.backends)
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
from loaders.tensor import TensorLoader, batches
from study import losses, models
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
    train, model = config["train"], config["model"]
    check_noise(config)
    backends.check(config["data"])
    if config["noise"].get("source", "same") != "same" and config["data"].get("backend") in ("ffcv", "torch"):
        raise UsageError(f"noise.source={config['noise']['source']!r} runs on data.backend=tensor or auto only "
                         f"(the ffcv and torch backends read the clean training set alone)")
    if model["arch"] not in models.ARCHS:
        raise UsageError(f"model.arch={model['arch']!r} is unknown: choose one of {', '.join(models.ARCHS)}")
    if not (isinstance(train["lr"], (int, float)) and train["lr"] > 0):
        raise UsageError(f"train.lr={train['lr']!r} is invalid: it must be a number > 0")
    if not (isinstance(train["batch_size"], int) and train["batch_size"] > 0):
        raise UsageError(f"train.batch_size={train['batch_size']!r} is invalid: it must be an integer > 0")
    if not (isinstance(train["epochs"], int) and train["epochs"] > 0):
        raise UsageError(f"train.epochs={train['epochs']!r} is invalid: it must be an integer > 0")
    if train["loss"] not in losses.LOSSES:
        raise UsageError(f"train.loss={train['loss']!r} is unknown: choose one of {', '.join(losses.LOSSES)}")
    if train["device"] not in ("auto", "cpu", "cuda"):
        raise UsageError(f"train.device={train['device']!r} is unknown: choose auto, cpu or cuda")


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


def noise_pool(spec: NoiseSpec, full: datasets.ImageSet, clean_index: torch.Tensor,
               data: dict[str, Any]) -> datasets.ImageSet | None:
    """Images appended after the clean ones for the noisy copies (see loaders.noise.NoiseModel)."""
    n_noisy = spec.n_virtual(clean_index.numel()) - clean_index.numel()
    if spec.source == "novel":
        return full.subset(datasets.novel_index(len(full), clean_index, n_noisy, spec.seed))
    if spec.source == "cifar100":
        other = load_split("cifar100", data["root"], True, data.get("stand_in", False), data.get("image_size", 224))
        return datasets.ImageSet(other.images, torch.full_like(other.labels, -1), other.num_classes, other.mean, other.std)
    return None


class Trial:
    """Data, noise, model and optimizer of one run; `run` trains it and reports each epoch."""

    def __init__(self, config: dict[str, Any]) -> None:
        check(config)
        data, train = config["data"], config["train"]
        self.config = config
        self.device = pick_device(train["device"])
        torch.manual_seed(train["seed"])
        split = (data["dataset"], data["root"])
        extra = (data.get("stand_in", False), data.get("image_size", 224))
        full, test = load_split(*split, True, *extra), load_split(*split, False, *extra)
        clean_index = datasets.stratified_subset(full.labels, data["n_clean"], data["subset_seed"])
        self.train_set = full.subset(clean_index)
        self.test_set = test.subset(datasets.stratified_subset(test.labels, data["n_test"], data["subset_seed"]))
        spec = noise_spec(config)
        # H_alpha trains on the clean examples only: the noise is in the loss, not in the labels.
        h_alpha = train["loss"] == "h_alpha"
        label_spec = dataclasses.replace(spec, alpha=0.0, delta=0.0) if h_alpha else spec
        pool = noise_pool(label_spec, full, clean_index, data)
        self.noise = NoiseModel(label_spec, self.train_set.labels, full.num_classes,
                                pool_labels=None if pool is None else pool.labels)
        noise_dist = torch.from_numpy(distribution(spec, full.num_classes)).to(self.device)  # structured too
        self.loss_fn = losses.build(train["loss"], spec.alpha, noise_dist)
        if label_spec.source == "same":
            self.loader = backends.make(data, full, clean_index, self.noise, train["batch_size"], train["seed"],
                                        self.device)
        else:  # pooled images sit beside the clean ones in the tensor loader's table; white noise is drawn there
            table = self.train_set if pool is None else self.train_set.extend(pool)
            self.loader = TensorLoader(table, self.noise, train["batch_size"], train["seed"], self.device)
        m = config["model"]
        self.model = models.build(m["arch"], tuple(full.images.shape[1:]), full.num_classes, m["mlp_hidden"],
                                  tuple(m["conv_channels"]), m["fc_hidden"]).to(self.device)
        self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=train["lr"])
        self.epoch = 0

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]

    def confusion(self) -> np.ndarray:
        """The model's (m, m) test confusion counts: row = true class, column = predicted class."""
        test = batches(self.test_set, EVAL_BATCH, self.device)
        return confusion_matrix(self.model, test, self.device, self.noise.m).numpy()

    def run(self, on_epoch: Callable[[EpochReport], None]) -> EpochReport | None:
        def report(r: EpochReport) -> None:
            self.epoch = r.epoch
            on_epoch(r)

        return fit(self.model, self.optimizer, self.loader, lambda: batches(self.test_set, EVAL_BATCH, self.device),
                   self.config["train"]["epochs"], self.device, self.loss_fn, report,
                   start_epoch=self.epoch, set_epoch=self.loader.set_epoch)
