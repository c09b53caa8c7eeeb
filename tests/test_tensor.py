"""loaders.tensor over epochs that cross its chunks: the labels of an epoch longer than one noise-model call
(LABEL_CHUNK, 2**20 indices) and the images of one longer than a gather (GATHER_IMAGES), white noise pasted
by each copy's own index, equal what the noise model gives for the whole epoch at once."""

from __future__ import annotations

import pytest
import torch

from loaders import tensor
from loaders.datasets import ImageSet
from loaders.noise import WHITE, NoiseModel, NoiseSpec, WhiteNoise
from loaders.tensor import TensorLoader, affine, batches

CPU = torch.device("cpu")


def numbered(n: int, m: int = 10) -> ImageSet:
    """n images of 1 x 1 x 2 pixels holding their own index (base 256), labels index % m, mean 0 and std 1."""
    i = torch.arange(n)
    images = torch.stack([i // 256, i % 256], -1).view(n, 1, 1, 2).to(torch.uint8)
    return ImageSet(images, i % m, m, (0.0,), (1.0,))


def shifted(data: ImageSet) -> ImageSet:
    """The same images with mean 0.3 and std 0.2 (white noise needs moments a clipped normal can have)."""
    return ImageSet(data.images, data.labels, data.num_classes, (0.3,), (0.2,))


def index_of(x: torch.Tensor) -> torch.Tensor:
    """The index a numbered image holds, from its normalised pixels (x / 255)."""
    pixels = (x * 255).round().long().view(len(x), 2)
    return pixels[:, 0] * 256 + pixels[:, 1]


def test_an_epoch_longer_than_a_label_chunk() -> None:
    """60,000 clean images at alpha = 17: 1,080,000 copies, past one 2**20-index call of the noise models;
    every batch holds each member's labels and the shared source images of the epoch's order."""
    data = numbered(60_000)
    noises = [NoiseModel(NoiseSpec(alpha=17, seed=s), data.labels, 10) for s in (0, 5)]
    loader = TensorLoader(data, noises, batch_size=50_000, seed=3, device=CPU)
    assert noises[0].n_virtual == 1_080_000 > tensor.LABEL_CHUNK and len(loader) == 22  # ceil(1,080,000 / 50,000)
    loader.set_epoch(1)
    v = loader.order()
    got = list(loader)
    assert [len(x) for x, _ in got] == [50_000] * 21 + [30_000]
    labels = torch.cat([y for _, y in got], dim=1)
    (source, first), second = noises[0](v), noises[1](v)[1]
    assert torch.equal(labels, torch.stack([first, second]))
    assert torch.equal(torch.cat([index_of(x) for x, _ in got]), source)
    assert not torch.equal(labels[0], labels[1])


def test_white_noise_is_pasted_by_each_copy_s_index_across_gathers() -> None:
    """2,000 clean images and 18,000 white-noise copies, batches of 64: three gathers of 8,192, 8,192 and 3,616
    images; each copy's image is the white noise of its own virtual index, each clean one its image."""
    data = shifted(numbered(2000))
    noise = NoiseModel(NoiseSpec(alpha=9, seed=7, source="white"), data.labels, 10)
    loader = TensorLoader(data, [noise], batch_size=64, seed=0, device=CPU)
    assert max(1, tensor.GATHER_IMAGES // 64) * 64 == 8192 < noise.n_virtual == 20_000
    v = loader.order()
    x = torch.cat([x for x, _ in loader])
    rows = noise(v)[0]
    white = WhiteNoise(7, (1, 1, 2), (0.3,), (0.2,))
    want = white.paste(data.images[rows.clamp(min=0)], v, rows == WHITE)
    scale, shift = affine((0.3,), (0.2,), CPU)
    assert (rows == WHITE).sum() == 18_000 and torch.equal(x, tensor.normalise(want, scale, shift))
    assert torch.equal(x[rows >= 0], tensor.normalise(data.images[rows[rows >= 0]], scale, shift))


def test_order_per_seed_and_epoch() -> None:
    data = numbered(100)
    loader = TensorLoader(data, [NoiseModel(NoiseSpec(alpha=1.5, seed=0), data.labels, 10)], 32, seed=2, device=CPU)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        orders.append(loader.order())
    g = torch.Generator().manual_seed(2 * 1_000_003 + 1)  # the seed and epoch a study's order depends on
    assert torch.equal(orders[1], torch.randperm(250, generator=g))
    assert torch.equal(orders[0], orders[2]) and not torch.equal(orders[0], orders[1])
    assert sorted(orders[0].tolist()) == list(range(250)) and len(loader) == 8


def test_affine_and_test_batches_by_hand() -> None:
    scale, shift = affine((0.5, 0.25), (0.25, 0.5), CPU)
    assert scale.view(-1).tolist() == pytest.approx([1 / (255 * 0.25), 1 / (255 * 0.5)], rel=1e-7)
    assert shift.view(-1).tolist() == [-2.0, -0.5]
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 2, 1, 1)
    split = ImageSet(images, torch.tensor([4, 5, 6]), 10, (0.5, 0.25), (0.25, 0.5))
    got = list(batches(split, 2, CPU))
    assert [y.tolist() for _, y in got] == [[4, 5], [6]]
    x = torch.cat([x for x, _ in got])
    want = torch.tensor([[(0 - 0.5) / 0.25, (0 - 0.25) / 0.5], [(0.2 - 0.5) / 0.25, (0.2 - 0.25) / 0.5],
                         [(1 - 0.5) / 0.25, (1 - 0.25) / 0.5]])
    torch.testing.assert_close(x.view(3, 2), want, rtol=0, atol=1e-6)
    assert x.dtype == torch.float32


def test_each_batch_pairs_its_images_with_their_own_labels_within_and_across_gathers() -> None:
    """3,000 clean images at alpha = 5, batches of 100: gathers of 8,100, 8,100 and 1,800 images, each cut into
    batches; batch b holds the images and every member's labels of order[100 b : 100 b + 100], in the loader's
    dtype. A new loader visits epoch 0's order."""
    data = numbered(3000)
    noises = [NoiseModel(NoiseSpec(alpha=5, seed=s), data.labels, 10) for s in (1, 2)]
    loader = TensorLoader(data, noises, batch_size=100, seed=4, device=CPU, dtype=torch.float64)
    v = loader.order()
    loader.set_epoch(0)
    assert torch.equal(v, loader.order())
    assert max(1, tensor.GATHER_IMAGES // 100) * 100 == 8100 and noises[0].n_virtual == 18_000
    (source, first), second = noises[0](v), noises[1](v)[1]
    got = list(loader)
    assert len(got) == 180
    for b, (x, y) in enumerate(got):
        rows = slice(100 * b, 100 * b + 100)
        assert x.dtype == torch.float64 and torch.equal(index_of(x), source[rows])
        assert torch.equal(y, torch.stack([first[rows], second[rows]]))
