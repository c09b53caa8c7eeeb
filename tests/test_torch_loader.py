"""loaders.torch_loader in this process (workers=0), where the other tests run it in DataLoader workers: each
item's image (a clean one, or the white noise of its own index) and every member's label, the epoch's order
from (seed, epoch), its batches and its length."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from loaders.noise import NoiseModel, NoiseSpec, WhiteNoise
from loaders.tensor import affine, normalise
from loaders.torch_loader import TorchLoader, VirtualDataset
from tests.test_tensor import CPU, index_of, numbered, shifted


def test_items_are_the_noise_models_images_and_labels() -> None:
    """Items of a white-noise set: copy 0 holds its clean image, the others the white noise drawn from their own
    index, each normalised; the labels are each member's, in member order."""
    data = shifted(numbered(300))
    noises = [NoiseModel(NoiseSpec(alpha=2, seed=s, source="white"), data.labels, 10) for s in (4, 9)]
    items = VirtualDataset(data, noises)
    assert len(items) == 900
    white = WhiteNoise(4, (1, 1, 2), (0.3,), (0.2,))
    scale, shift = (t[0] for t in affine((0.3,), (0.2,), CPU))
    for v in (0, 299, 300, 301, 899):
        x, y = items[v]
        at = torch.tensor([v])
        image = data.images[v] if v < 300 else white.paste(data.images[:1], at, torch.tensor([True]))[0]
        assert torch.equal(x, normalise(image, scale, shift)), v
        assert torch.equal(y, torch.cat([noise(at)[1] for noise in noises])), v
    assert not torch.equal(items[300][0], items[301][0])  # each copy its own noise


def test_an_epoch_in_the_order_of_its_seed_and_epoch() -> None:
    """Batches of 64 over 1,000 copies (the last one short), in the order (seed, epoch) fixes: the same images and
    labels as the noise models give for that order, and another order next epoch."""
    data = shifted(numbered(250))
    noises = [NoiseModel(NoiseSpec(alpha=3, seed=s), data.labels, 10) for s in (0, 5)]
    loader = TorchLoader(data, noises, batch_size=64, seed=3, device=CPU, workers=0)
    assert len(loader) == 16  # ceil(1,000 / 64)
    epochs = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        got = list(loader)
        assert [len(x) for x, _ in got] == [64] * 15 + [40]
        x, y = torch.cat([x for x, _ in got]), torch.cat([y for _, y in got], dim=1)
        # the order torch's own shuffling gives the virtual indices under the generator (seed, epoch) fixes
        v = torch.cat(list(DataLoader(range(1000), 64, shuffle=True,
                                      generator=torch.Generator().manual_seed(3 * 1_000_003 + epoch))))
        source, first = noises[0](v)
        assert torch.equal(index_of(x * 0.2 + 0.3), source) and torch.equal(y, torch.stack([first, noises[1](v)[1]]))
        epochs.append(v)
    assert not torch.equal(*epochs)
