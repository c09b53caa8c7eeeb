"""Fused groups: K members trained as one equal K unfused trials; labels made per epoch equal the noise model's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import TensorLoader
from study.groups import partition, replicate
from study.train import Fused
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


def test_fused_group_tracks_its_unfused_twins_for_two_epochs(data_root: Path) -> None:
    torch.set_num_threads(2)
    configs = members(data_root, noise={"alpha": 1.0}, train={"epochs": 2},
                      model={"arch": "conv2", "conv_channels": [16, 32]})
    fused: list = []
    Trial(configs).run(fused.append)
    for k, config in enumerate(configs):
        twin: list = []
        Trial(config).run(twin.append)
        assert abs(fused[-1][k].test_acc - twin[-1][0].test_acc) <= 0.002 + 1e-9, (k, fused[-1][k], twin[-1][0])
        assert fused[-1][k].train_loss == pytest.approx(twin[-1][0].train_loss, rel=1e-3)
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
