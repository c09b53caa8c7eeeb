"""One training run built from a plain config dict (what a Tune trial receives). No Ray, no Hydra.

Config layout (every key is set by the launcher from the Hydra config):
  data:  dataset, root (absolute), download, n_clean (None = all), n_test (None = all), subset_seed,
         backend, cache, rebuild, workers (optional; loaders.backends)
  noise: alpha, seed
  model: arch, mlp_hidden, conv_channels, fc_hidden
  train: lr, batch_size, epochs, seed, loss, device
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from loaders import backends, datasets
from loaders.errors import UsageError
from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import batches
from study import models
from study.train import EpochReport, fit

LOSSES = ("ce",)
EVAL_BATCH = 1024


def check(config: dict[str, Any]) -> None:
    """Reject bad values with one clear line each, before anything runs or is written."""
    train, model = config["train"], config["model"]
    NoiseSpec(**config["noise"])  # validates alpha and seed
    backends.check(config["data"])
    if model["arch"] not in models.ARCHS:
        raise UsageError(f"model.arch={model['arch']!r} is unknown: choose one of {', '.join(models.ARCHS)}")
    if not (isinstance(train["lr"], (int, float)) and train["lr"] > 0):
        raise UsageError(f"train.lr={train['lr']!r} is invalid: it must be a number > 0")
    if not (isinstance(train["batch_size"], int) and train["batch_size"] > 0):
        raise UsageError(f"train.batch_size={train['batch_size']!r} is invalid: it must be an integer > 0")
    if not (isinstance(train["epochs"], int) and train["epochs"] > 0):
        raise UsageError(f"train.epochs={train['epochs']!r} is invalid: it must be an integer > 0")
    if train["loss"] not in LOSSES:
        raise UsageError(f"train.loss={train['loss']!r} is unknown: choose one of {', '.join(LOSSES)}")
    if train["device"] not in ("auto", "cpu", "cuda"):
        raise UsageError(f"train.device={train['device']!r} is unknown: choose auto, cpu or cuda")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device=cuda but no CUDA device is visible: use train.device=auto or cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=4)
def load_split(name: str, root: str, train: bool) -> datasets.ImageSet:
    """Cached per process, so trials that share a Tune actor read the files once."""
    return datasets.load(name, Path(root), train)


class Trial:
    """Data, noise, model and optimizer of one run; `run` trains it and reports each epoch."""

    def __init__(self, config: dict[str, Any]) -> None:
        check(config)
        data, train = config["data"], config["train"]
        self.config = config
        self.device = pick_device(train["device"])
        torch.manual_seed(train["seed"])
        full = load_split(data["dataset"], data["root"], True)
        test = load_split(data["dataset"], data["root"], False)
        rows = datasets.stratified_subset(full.labels, data["n_clean"], data["subset_seed"])
        self.train_set = full.subset(rows)
        self.test_set = test.subset(datasets.stratified_subset(test.labels, data["n_test"], data["subset_seed"]))
        self.noise = NoiseModel(NoiseSpec(**config["noise"]), self.train_set.labels, full.num_classes)
        self.loader = backends.make(data, full, rows, self.noise, train["batch_size"], train["seed"], self.device)
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

    def run(self, on_epoch: Callable[[EpochReport], None]) -> EpochReport | None:
        def report(r: EpochReport) -> None:
            self.epoch = r.epoch
            on_epoch(r)

        return fit(self.model, self.optimizer, self.loader, lambda: batches(self.test_set, EVAL_BATCH, self.device),
                   self.config["train"]["epochs"], self.device, F.cross_entropy, report,
                   start_epoch=self.epoch, set_epoch=self.loader.set_epoch)
