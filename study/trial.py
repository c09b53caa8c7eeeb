"""One Tune trial built from plain config dicts: a group of members trained together. No Ray, no Hydra.

A member's config holds the sections of study.config.TRIAL_SECTIONS (data, noise, model, train), every key
set and already checked by the launcher (study.preflight), its paths absolute: a trial trusts it. The noise
section becomes a loaders.noise.NoiseSpec once, in loaders.data.build, with its distribution.

The members of a group are identical except in MEMBER_KEYS: they see the same images in the same order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from errors import UsageError
from loaders import data
from study import losses, models
from study.train import EpochReport, Fused, Single, confusion_matrices, fit

# What members of one group may differ in: learning rate, weight init, and which noisy label each copy
# carries. Noise seeds that also pick images (novel, white) must be shared: see study.groups.
MEMBER_KEYS = ("train.lr", "train.seed", "noise.seed")
COMPILE_AUTO = "reduce-overhead"  # fastest measured for a fused conv4 group on an H200 (bench/results/gpu_check-h200-1.json)


def shared_part(config: dict[str, Any]) -> dict[str, Any]:
    """The config without its member keys: equal for every member of a group."""
    out = {section: dict(values) for section, values in config.items()}
    for path in MEMBER_KEYS:
        section, key = path.split(".")
        out.get(section, {}).pop(key, None)
    return out


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("train.device=cuda but no CUDA device is visible: use train.device=auto or cpu")
    return torch.device(name)


def compile_mode(setting: str, device: torch.device) -> str | None:
    """train.compile: auto (COMPILE_AUTO on CUDA, eager elsewhere), none, or a torch.compile mode."""
    if setting == "auto":
        return COMPILE_AUTO if device.type == "cuda" else None
    return None if setting == "none" else setting


class Trial:
    """Data, noise, models and optimizers of a group; `run` trains it and reports each epoch per member."""

    def __init__(self, configs: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        self.configs = [configs] if isinstance(configs, dict) else list(configs)
        first = shared_part(self.configs[0])
        if any(shared_part(c) != first for c in self.configs[1:]):
            raise ValueError("the members of a group may differ only in " + ", ".join(MEMBER_KEYS))
        d, train = self.configs[0]["data"], self.configs[0]["train"]
        self.device = pick_device(train["device"])
        h_alpha = train["loss"] == "h_alpha"  # trains on the clean examples: the noise is in the loss
        self.data = data.build(d, [c["noise"] for c in self.configs], self.device, train["batch_size"],
                               d["order_seed"], clean_only=h_alpha)
        dists = torch.from_numpy(np.stack(self.data.distributions)).to(self.device)  # structured too
        self.to_target = losses.targets(train["loss"], self.configs[0]["noise"]["alpha"], dists)
        nets = [self.model(c) for c in self.configs]
        lrs = [c["train"]["lr"] for c in self.configs]
        self.net = (Single(nets[0], lrs[0], self.device) if len(nets) == 1 else
                    Fused(nets, lrs, self.device, compile_mode(train["compile"], self.device)))
        self.epoch = 0

    def model(self, config: dict[str, Any]) -> torch.nn.Module:
        """A member's fresh model, its weights drawn from its own train.seed."""
        torch.manual_seed(config["train"]["seed"])
        m = config["model"]
        return models.build(m["arch"], self.data.shape, self.data.num_classes, m["mlp_hidden"],
                            tuple(m["conv_channels"]), m["fc_hidden"]).to(self.device)

    @property
    def loader(self):
        return self.data.loader

    @property
    def noise(self):
        """The first member's noise model (the image table and its sources are every member's)."""
        return self.data.noises[0]

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.epoch = state["epoch"]

    def metrics(self, reports: list[EpochReport]) -> dict[str, Any]:
        """An epoch as both runners record it: the best member's metrics at the top level (what Tune's table,
        ASHA and Optuna read), every member's under members/<k>/, and after the last epoch of exp=confusion
        the summed test confusion matrix."""
        best = max(reports, key=lambda r: r.test_acc)
        out = {**dataclasses.asdict(best), "members": {str(k): dataclasses.asdict(r) for k, r in enumerate(reports)}}
        train = self.configs[0]["train"]
        if train["report_confusion"] and best.epoch == train["epochs"]:
            out["confusion"] = self.confusion().sum(0).tolist()
        return out

    def checkpoint_due(self, epoch: int) -> bool:
        """A checkpoint every train.checkpoint_every epochs (0: never) and after the last."""
        train = self.configs[0]["train"]
        every = train["checkpoint_every"]
        return bool(every) and (epoch % every == 0 or epoch == train["epochs"])

    def confusion(self) -> np.ndarray:
        """Each member's (m, m) test confusion counts: (K, m, m), row = true class, column = predicted."""
        return confusion_matrices(self.net, self.data.test_batches(), self.data.num_classes).numpy()

    def run(self, on_epoch: Callable[[list[EpochReport]], None]) -> list[EpochReport]:
        def report(reports: list[EpochReport]) -> None:
            self.epoch = reports[0].epoch
            on_epoch(reports)

        return fit(self.net, self.loader, self.data.test_batches, self.configs[0]["train"]["epochs"],
                   self.to_target, report, start_epoch=self.epoch, set_epoch=self.loader.set_epoch,
                   val=self.data.val_batches)
