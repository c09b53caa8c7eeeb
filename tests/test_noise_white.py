"""White-noise images (§3.3) at a small size, fast enough for `make mutants`: the clipped-normal moments
against quadrature, the per-channel stats after clipping and rounding, seeding, and paste."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loaders.noise import WhiteNoise, _clipped_normal_moments

MNIST = ((0.1307,), (0.3081,))  # heavily clipped at 0
CIFAR = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@pytest.mark.parametrize("mu,sigma", [(0.5, 0.1), (0.13, 0.31), (0.9, 0.4), (-0.2, 0.5), (1.3, 0.6), (0.5, 2.0)])
def test_clipped_normal_moments_match_quadrature(mu: float, sigma: float) -> None:
    x = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 400_001)
    density = np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    clipped = np.clip(x, 0, 1)
    m1 = np.trapezoid(clipped * density, x)
    m2 = np.trapezoid(clipped ** 2 * density, x)
    mean, std = _clipped_normal_moments(mu, sigma)
    assert mean == pytest.approx(m1, abs=1e-6) and std == pytest.approx(np.sqrt(m2 - m1 ** 2), abs=1e-6)


@pytest.mark.parametrize("stats", [MNIST, CIFAR], ids=["mnist", "cifar10"])
def test_white_noise_has_the_training_stats_per_channel(stats: tuple) -> None:
    mean, std = stats
    x = WhiteNoise(0, (len(mean), 8, 8), mean, std)(torch.arange(3000))
    assert x.dtype == torch.uint8 and x.shape == (3000, len(mean), 8, 8)
    x = x.double() / 255
    # 192,000 pixels per channel: the sampling sd of the mean is about 0.0007
    np.testing.assert_allclose(x.mean((0, 2, 3)).numpy(), mean, atol=0.003)
    np.testing.assert_allclose(x.std((0, 2, 3)).numpy(), std, atol=0.003)
    # clipped: both ends of the pixel range occur, at the rates the pre-clip normal gives
    assert 0 < float((x == 0).double().mean()) < 0.9 and float((x == 1).double().mean()) < 0.1
    # pixels are independent: neighbours within an image are uncorrelated
    flat = x.flatten(1)
    assert abs(float(np.corrcoef(flat[:, 0].numpy(), flat[:, 1].numpy())[0, 1])) < 0.06
    assert abs(float(np.corrcoef(flat[:-1, 5].numpy(), flat[1:, 5].numpy())[0, 1])) < 0.06


def test_white_noise_is_a_function_of_seed_and_index() -> None:
    white = WhiteNoise(3, (3, 4, 4), *CIFAR)
    x = white(torch.tensor([5, 9, 5, 6]))
    assert torch.equal(x[0], x[2]) and not torch.equal(x[0], x[1]) and not torch.equal(x[0], x[3])
    assert torch.equal(x[1], white(torch.tensor([9]))[0])  # the same image whatever the batch
    assert not torch.equal(x, WhiteNoise(4, (3, 4, 4), *CIFAR)(torch.tensor([5, 9, 5, 6])))
    # pixel p of image v is the counter v * pixels + p: image 1's pixels are not image 0's shifted
    flat = white(torch.tensor([0, 1])).flatten(1)
    assert not torch.equal(flat[0, 1:], flat[1, :-1])


def test_paste_replaces_the_white_rows_only() -> None:
    white = WhiteNoise(1, (1, 4, 4), *MNIST)
    images = torch.full((5, 1, 4, 4), 7, dtype=torch.uint8)
    v = torch.tensor([10, 11, 12, 13, 14])
    mask = torch.tensor([False, True, False, True, False])
    out = white.paste(images, v, mask)
    assert torch.equal(out[~mask], images[~mask]) and torch.equal(out[mask], white(v[mask]))
    assert (images == 7).all()  # a copy: the batch given is left alone
