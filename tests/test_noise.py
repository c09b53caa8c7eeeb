"""The uniform noise model: label statistics match the paper's formula; labels are fixed for ever."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from errors import UsageError
from loaders.noise import STREAM_LABEL, NoiseModel, NoiseSpec, hash32, thresholds, uniform_distribution

M = 10


def model(alpha: float, seed: int = 0, n: int = 1000) -> NoiseModel:
    return NoiseModel(NoiseSpec(alpha=alpha, seed=seed), torch.arange(n) % M, M)


def test_golden_hash_and_labels() -> None:
    # Labels are "fixed for ever": any change to the hash would silently change every study.
    v = torch.tensor([0, 1, 2, 12345, 2**32 + 7, 2**40 + 3])
    # Below 2**32 these are the values of d0564c1; past it, the high word's own round (issue 11) changed them.
    assert hash32(0, v, STREAM_LABEL).tolist() == [679018651, 2509836182, 62892599, 3404663642, 857079601, 3878981311]
    assert hash32(1, v, STREAM_LABEL).tolist() == [4292734178, 1827892555, 1105380091, 1068408844, 1559760993, 2547854533]
    labels = NoiseModel(NoiseSpec(alpha=3, seed=0), torch.arange(10), M)(torch.arange(40))[1]
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 9, 2, 6, 0, 5, 2, 5, 5, 1,
                               4, 7, 1, 5, 7, 4, 6, 0, 7, 2, 9, 9, 9, 0, 2, 8, 7, 6, 0, 9]


@pytest.mark.parametrize("alpha", [0, 0.5, 1, 2.25, 5, 20])
def test_diluted_size_and_clean_copy(alpha: float) -> None:
    noise = model(alpha)
    assert noise.n_virtual == 1000 + round(alpha * 1000)
    source, labels = noise(torch.arange(noise.n_virtual))
    whole = 1000 * (1 + int(alpha))  # the complete rounds of copies: image v % n
    assert torch.equal(source[:whole], torch.arange(whole) % 1000)
    # Every image is used floor or ceil(1 + alpha) times: the partial round's extra copies are distinct.
    assert set(torch.bincount(source, minlength=1000).tolist()) <= {1 + int(alpha), 2 + int(alpha)}
    assert torch.equal(labels[:1000], torch.arange(1000) % M)  # copy 0 keeps its clean label
    # Clean fraction (copy 0) is n / (n (1 + alpha)) = 1 / (1 + alpha), up to rounding of alpha * n.
    assert abs(1000 / noise.n_virtual - 1 / (1 + alpha)) < 1e-3


def test_correct_label_fraction_matches_paper() -> None:
    # At alpha = 100 on 10 classes, 11 of 101 labels are correct (§3.1).
    noise = model(100, n=2000)
    source, labels = noise(torch.arange(noise.n_virtual))
    correct = (labels == source % M).double().mean().item()
    expected = 11 / 101
    sigma = np.sqrt(expected * (1 - expected) / noise.n_virtual)
    assert abs(correct - expected) < 5 * sigma


@pytest.mark.parametrize("seed", [0, 7, 2**31 + 5])
def test_noisy_labels_uniform_chi_square(seed: int) -> None:
    noise = model(50, seed=seed, n=1000)
    _, labels = noise(torch.arange(1000, noise.n_virtual))  # noisy copies only
    for true_class in (0, 3, 9):  # uniform given every true class, not just overall
        mine = labels[(torch.arange(1000, noise.n_virtual) % 1000) % M == true_class]
        counts = torch.bincount(mine, minlength=M).double().numpy()
        expected = counts.sum() / M
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 27.88  # chi-square, 9 dof, p = 0.001


def test_labels_identical_across_runs_and_batchings() -> None:
    v = torch.randperm(model(20).n_virtual)
    whole = model(20, seed=3)(v)[1]
    again = model(20, seed=3)(v)[1]
    chunked = torch.cat([model(20, seed=3)(chunk)[1] for chunk in v.split(37)])
    assert torch.equal(whole, again) and torch.equal(whole, chunked)
    assert not torch.equal(whole, model(20, seed=4)(v)[1])  # the seed matters


def test_uniform_table_is_exact_multiply_shift() -> None:
    table = torch.from_numpy(thresholds(uniform_distribution(M)))
    h = hash32(0, torch.arange(200_000), STREAM_LABEL)
    by_table = (h.unsqueeze(-1) >= table[0, 1:-1]).sum(-1)
    assert torch.equal(by_table, (h * M) >> 32)


@pytest.mark.parametrize("alpha", [-1, float("nan"), float("inf")])
def test_bad_alpha_rejected(alpha: float) -> None:
    with pytest.raises(UsageError, match=r"noise.alpha.*>= 0"):
        NoiseSpec(alpha=alpha)


@pytest.mark.parametrize("shift", [2**32, 2**33, 2**40])
def test_labels_independent_across_the_high_word(shift: int) -> None:
    """Labels of v and v + shift (another high word, same low word): a chi-square test of independence on
    their joint 10 x 10 table over 3M pairs. With the high word only xor-ed in, 2**33 gave chi2 = 234."""
    v = torch.randint(0, 2**32, (3_000_000,), generator=torch.Generator().manual_seed(0))
    a, b = ((hash32(0, u, STREAM_LABEL) * M) >> 32 for u in (v, v + shift))
    table = torch.bincount(a * M + b, minlength=M * M).double().view(M, M).numpy()
    expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
    assert ((table - expected) ** 2 / expected).sum() < 131.0  # 81 dof: p = 2e-4


def test_fractional_alpha_spreads_its_extra_copies() -> None:
    """alpha = 0.5: the 500 extra copies go to 500 distinct images spread over the set (issue 11), not to
    images 0..499, and the choice depends on n alone, so fused members (other noise seeds) share it."""
    extra = model(0.5).source(torch.arange(1000, 1500))
    assert len(set(extra.tolist())) == 500 and extra.max() >= 900 and extra.min() <= 100
    assert sum(i < 500 for i in extra.tolist()) < 400  # not simply the first half
    assert torch.equal(extra, model(0.5, seed=9).source(torch.arange(1000, 1500)))
