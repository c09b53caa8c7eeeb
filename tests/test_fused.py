"""Fused groups: K members trained as one equal K unfused trials; labels made per epoch equal the noise model's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import TensorLoader
from study.groups import partition, replicate
from study.train import Fused, Single
from study.trial import Trial
from tests.conftest import trial_config

MEMBERS = [(0.1, 0, 0), (0.05, 1, 0), (0.1, 2, 7)]  # (lr, train.seed, noise.seed): lr, init and labels all vary


def members(data_root: Path, **sections: dict) -> list[dict]:
    configs = []
    for lr, seed, noise_seed in MEMBERS:
        config = trial_config(data_root, **sections)
        config["train"] = {**config["train"], "lr": lr, "seed": seed}
        config["noise"] = {**config["noise"], "seed": noise_seed}
        configs.append(config)
    return configs


def test_first_step_of_a_fused_group_equals_its_unfused_twins(data_root: Path) -> None:
    torch.set_num_threads(2)
    configs = members(data_root, noise={"alpha": 2.0}, data={"n_clean": 500, "n_test": 200})
    group = Trial(configs)
    assert isinstance(group.net, Fused)
    x, y = next(iter(group.loader))
    group.net.step(x, group.to_target(y))
    after = []
    for k, config in enumerate(configs):
        twin = Trial(config)
        tx, ty = next(iter(twin.loader))
        assert torch.equal(tx, x) and torch.equal(ty[0], y[k])  # the same batch, member k's labels
        twin.net.step(tx, twin.to_target(ty))
        mine, theirs = group.net.weights(k), twin.net.weights(0)
        for name, p in theirs.items():
            torch.testing.assert_close(mine[name], p, rtol=1e-5, atol=1e-7)
        after.append(theirs["0.weight"])
    # Members really differ: another lr (0 vs 1) and another seed (0 vs 2) give other weights.
    assert not torch.allclose(after[0], after[1]) and not torch.allclose(after[0], after[2])


class InFloat64:
    """A loader's (or a clean split's) batches with their images in float64."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return ((x.double(), y) for x, y in self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)


def in_float64(trial: Trial) -> Trial:
    """The trial in float64: its members' nets built again as Trial builds them (each from its own train.seed, a
    Fused group of K > 1), the same weights as the trial's float32 ones, and every batch in float64."""
    nets = [trial.model(c).double() for c in trial.configs]
    lrs = [c["train"]["lr"] for c in trial.configs]
    net = Single(nets[0], lrs[0], trial.device) if len(nets) == 1 else Fused(nets, lrs, trial.device)
    for k in range(len(nets)):
        for name, p in trial.net.weights(k).items():
            assert torch.equal(net.weights(k)[name].float(), p)
    test = trial.data.test_batches
    trial.net, trial.data = net, dataclasses.replace(trial.data, loader=InFloat64(trial.loader),
                                                     test_batches=lambda: InFloat64(test()))
    return trial


@pytest.mark.slow
def test_fused_group_tracks_its_unfused_twins_for_two_epochs(data_root: Path) -> None:
    """Two epochs (64 steps) of a fused group equal its members trained alone: the same test predictions, and
    weights equal to 1e-12. In float64: in float32 the fused step sums in another order than the unfused one
    (vmap's batched kernels), a ~1e-7 difference at the first step (test_first_step_of_...) that compounds
    once it flips a ReLU or a max-pool choice, and the runs part by ~0.5 points of test accuracy after 2 epochs
    on some CPUs; in float64 that rounding stays below 1e-15 over the 64 steps, so any real difference (a
    member's lr, labels, init or optimizer state mixed up) shows."""
    torch.set_num_threads(2)
    configs = members(data_root, noise={"alpha": 1.0}, train={"epochs": 2},
                      model={"arch": "conv2", "conv_channels": [16, 32]})
    group = in_float64(Trial(configs))
    fused: list = []
    group.run(fused.append)
    assert len(fused) == 2 and isinstance(group.net, Fused)
    for k, config in enumerate(configs):
        twin = in_float64(Trial(config))
        alone: list = []
        twin.run(alone.append)
        for epoch in range(2):
            mine, theirs = fused[epoch][k], alone[epoch][0]
            assert (mine.epoch, mine.test_acc, mine.test_top5) == (theirs.epoch, theirs.test_acc, theirs.test_top5)
            assert mine.train_loss == pytest.approx(theirs.train_loss, rel=5e-7)  # fit sums losses in float32: 2 ulp
        for name, p in twin.net.weights(0).items():
            torch.testing.assert_close(group.net.weights(k)[name], p, rtol=1e-12, atol=1e-12)
    accuracies = [r.test_acc for r in fused[-1]]
    assert len(set(accuracies)) == len(accuracies) and min(accuracies) > 0.5  # they learned, differently


def test_labels_made_per_epoch_equal_the_noise_model_per_batch() -> None:
    clean = torch.randint(0, 10, (3000,), generator=torch.Generator().manual_seed(0))
    images = torch.randint(0, 256, (3000, 1, 4, 4), dtype=torch.uint8)
    from loaders.datasets import ImageSet

    data = ImageSet(images, clean, 10, (0.5,), (0.25,))
    noises = [NoiseModel(NoiseSpec(alpha=3.5, seed=s), clean, 10) for s in (0, 1, 2**32 - 1)]
    loader = TensorLoader(data, noises, batch_size=100, seed=4, device=torch.device("cpu"))
    loader.set_epoch(2)
    v = loader.order()
    batches = list(loader)
    assert sum(y.shape[1] for _, y in batches) == noises[0].n_virtual == 13_500
    for i, (x, y) in enumerate(batches):
        chunk = v[i * 100:(i + 1) * 100]
        for k, noise in enumerate(noises):
            source, labels = noise(chunk)
            assert torch.equal(y[k], labels)
        torch.testing.assert_close(x, (images[source].float() / 255 - 0.5) / 0.25)  # the shared source images
    assert not torch.equal(batches[0][1][0], batches[0][1][1])  # other seeds, other labels


def test_groups_share_images_and_order_and_respect_the_cap(data_root: Path) -> None:
    base = trial_config(data_root)
    base["train"] = {**base["train"], "fuse": "auto"}
    configs = []
    for alpha in (0.0, 5.0):
        for lr in (0.01, 0.05, 0.1, 0.5):
            config = {**base, "noise": {**base["noise"], "alpha": alpha, "source": "same"},
                      "train": {**base["train"], "lr": lr}}
            configs.append(config)
    configs = replicate(configs, 2)
    assert len(configs) == 16 and len({(c["train"]["seed"], c["noise"]["seed"]) for c in configs}) == 2
    groups = partition(configs, on_gpu=True)
    # per alpha and replicate: the 4 lrs (a replicate's own order and subset keep it out of the other's group)
    assert sorted(len(g) for g in groups) == [4, 4, 4, 4]
    assert all(len({(c["noise"]["alpha"], c["data"]["order_seed"], c["data"]["subset_seed"]) for c in g}) == 1
               for g in groups)
    capped = partition([{**c, "train": {**c["train"], "fuse": 3}} for c in configs], on_gpu=True)
    assert sorted(len(g) for g in capped) == [2] * 8  # balanced: 4 -> 2 + 2, per alpha and replicate
    alone = partition([{**c, "train": {**c["train"], "fuse": "none"}} for c in configs], on_gpu=True)
    assert len(alone) == 16
    resnets = partition([{**c, "model": {**c["model"], "arch": "resnet18"}} for c in configs], on_gpu=True)
    assert len(resnets) == 16  # BatchNorm: never fused
    novel = [{**c, "noise": {**c["noise"], "source": "novel"}} for c in configs]
    assert all(len({c["noise"]["seed"] for c in g}) == 1 for g in partition(novel, on_gpu=True))  # seed picks images


def test_replicates_vary_every_seed_unless_pinned(data_root: Path) -> None:
    base = trial_config(data_root, data={"order_seed": 3, "subset_seed": 5}, noise={"seed": 2**32 - 1500},
                        train={"seed": 7})
    r0, r1, r2 = replicate([base], 3)
    assert r0 == base  # replicate 0 is the config itself
    for r, config in ((1, r1), (2, r2)):
        assert (config["train"]["seed"], config["data"]["order_seed"], config["data"]["subset_seed"]) == \
            (7 + 1000 * r, 3 + 1000 * r, 5 + 1000 * r)
        assert config["noise"]["seed"] == (2**32 - 1500 + 1000 * r) % 2**32  # wraps inside [0, 2**32)
    _, pinned = replicate([base], 2, pinned=("data.subset_seed", "noise.seed"))
    assert (pinned["data"]["subset_seed"], pinned["noise"]["seed"]) == (5, 2**32 - 1500)
    assert (pinned["train"]["seed"], pinned["data"]["order_seed"]) == (1007, 1003)
