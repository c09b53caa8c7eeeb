"""loaders.noise by exact values, fast (no FFCV, no numba, no dataset read, no training).

Covers: NoiseSpec's cross-key rules (each message word for word, each combination's edge) and the seed's range
edges through check_fields; n_virtual's rounding; uniform_distribution, _uniform_target and structured_distribution
(§3.2's delta construction, by hand for m = 5, its two messages and the feasibility edge delta = alpha/m);
copy_distribution's clip and row normalisation; wrong_class_order for confusing (a uint8 matrix, so the descending
sort must be taken in float), reverse and random (numpy's Generator seeded [seed, STREAM_ORDER]) and its shape
message; load_confusion's three branches and distribution's matrix / uniform / structured branches; thresholds'
exact uint32 edges (uniform rationals, a nearly uniform matrix, the forced 2**32 last edge, its ValueError);
_mul32 / _fmix32 / hash32 against a pure-Python MurmurHash3 fmix32 written here (int and tensor inputs, v past
2**32 for the high word's own round); spread's (start, a, b) (the gcd redraw, integer alpha, n <= 1); _source for
each kind; NoiseModel's attributes, its missing-pool messages, to(), and its labels for every source, both draws,
a label drawn exactly on a threshold, and noise.labels' annotation picks; _clipped_normal_moments against
Gauss-Legendre quadrature plus erfc tails to 1e-12; WhiteNoise's fixed point, its pixels recomputed by hand (one at
v = KEY_SALT, where both pixel hashes are 0), its convergence on MNIST's moments (~2,100 rounds: 200 did not reach
them), its two refusals (a std no [0, 1] pixel can have, one too near that bound to reach), its work on the indices'
device, and paste.

Stand-ins: MetaLabels, a Tensor subclass whose .device says "meta", so NoiseModel's moves of rows / table / votes
to the labels' device are seen on a CPU-only host (WhiteNoise gets real meta-device indices); a recorder put in
place of loaders.annotations.load_matrix (monkeypatch) to note the arguments distribution hands it; BoundedRng, put
behind numpy.random.default_rng (autouse monkeypatch) to fail any generator drawn from more than 1,000 times, so a
redraw loop that never ends (spread's gcd loop mutated) fails instead of hanging. Everything else is the real code
on tiny inputs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from errors import UsageError
from loaders import annotations
from loaders.noise import (NoiseModel, NoiseSpec, WhiteNoise, _clipped_normal_moments, _fmix32, _mul32, _source,
                           _uniform_target, copy_distribution, distribution, hash32, load_confusion, spread,
                           structured_distribution, thresholds, uniform_distribution, wrong_class_order)

TWO32 = 2**32
LABEL, IMAGE, ORDER, SPREAD = 0x1B873593, 0x4CF5AD43, 0x2C1B3C6D, 0x3A8F05C5  # the module's hash streams
PIXEL = (0x297A2D39, 0x165667B1)
SHIFT4 = np.roll(np.eye(4), 1, axis=1)  # one-hot per-copy matrix: class c -> (c + 1) % 4 whatever the hash


def fmix32(x: int) -> int:
    """MurmurHash3's 32-bit finaliser, written out from its reference C."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) % TWO32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) % TWO32
    return x ^ (x >> 16)


def ref_hash(seed: int, v: int, stream: int) -> int:
    """hash32 by hand: low word through two keyed rounds; a nonzero high word gets a round of its own."""
    key = fmix32((seed ^ stream) % TWO32)
    low, high = v % TWO32, v >> 32
    h = fmix32(fmix32(low ^ key) ^ high ^ fmix32(key ^ 0x27D4EB2F))
    return h if high == 0 else fmix32(h ^ fmix32(high ^ key ^ 0x165667B1))


class BoundedRng:
    """numpy's Generator that refuses its 1,001st integers() call: a redraw loop that never ends fails a test."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.draws = rng, 0

    def integers(self, *args: object, **kwargs: object) -> np.ndarray | int:
        self.draws += 1
        if self.draws > 1000:
            raise RuntimeError("more than 1,000 draws from one generator: a loop that never ends")
        return self.rng.integers(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        return getattr(self.rng, name)


@pytest.fixture(autouse=True)
def bounded_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    real = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda *args, **kwargs: BoundedRng(real(*args, **kwargs)))


def uniform_label(seed: int, v: int, m: int, stream: int = LABEL) -> int:
    return ref_hash(seed, v, stream) * m >> 32  # the uniform table's label is exactly (h * m) >> 32


# --- NoiseSpec -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,message", [
    ({"delta": 0.5, "matrix": "m.npy"},
     "noise.delta=0.5 and noise.matrix=m.npy are two ways to give the noisy labels: set only one of them"),
    ({"matrix": "m.npy", "labels": "v.npy"},
     "noise.matrix=m.npy and noise.labels=v.npy are two ways to give the noisy labels: set only one of them"),
    ({"delta": 0.25, "matrix": "a", "labels": "b"},
     "noise.delta=0.25 and noise.matrix=a and noise.labels=b are two ways to give the noisy labels: "
     "set only one of them"),
    ({"matrix": "m.npy", "source": "cifar100"},
     "noise.matrix=m.npy needs images with a true class: with noise.source=cifar100 drop it, "
     "or use source=same or novel"),
    ({"labels": "v.npy", "source": "white"},
     "noise.labels=v.npy needs images with a true class: with noise.source=white drop it, or use source=same or novel"),
    ({"draw": "image", "source": "white"},
     "noise.draw=image ties a label to an image, but with noise.source=white every noisy copy is a new synthesised "
     "image: use noise.draw=copy, or source=same, novel or cifar100"),
    ({"seed": -1}, "noise.seed=-1 is invalid: it must be an integer in [0, 2**32)"),
    ({"seed": TWO32}, "noise.seed=4294967296 is invalid: it must be an integer in [0, 2**32)"),
])
def test_spec_rules_reject_with_their_exact_message(fields: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        NoiseSpec(**fields)
    assert str(err.value) == message


@pytest.mark.parametrize("fields", [{"seed": TWO32 - 1}, {"delta": 0.0, "source": "white"},
                                    {"draw": "image", "source": "cifar100"}, {"draw": "image", "source": "novel"},
                                    {"delta": 0.5, "source": "novel"}, {"labels": "v.npy", "source": "same"},
                                    {"matrix": "m.npy", "draw": "image"}])
def test_spec_edges_that_are_allowed(fields: dict) -> None:
    NoiseSpec(**fields)  # delta 0 counts as not given; draw=image is refused only with white


@pytest.mark.parametrize("alpha,n,expected", [(0, 7, 7), (0.5, 3, 5), (2.5, 1, 3), (0.25, 10, 12), (3, 4, 16)])
def test_n_virtual_rounds_alpha_n_half_to_even(alpha: float, n: int, expected: int) -> None:
    assert NoiseSpec(alpha=alpha).n_virtual(n) == expected  # round(1.5) = 2, round(2.5) = 2


# --- distributions -----------------------------------------------------------------------------------------------

def test_uniform_distribution_and_uniform_target_by_hand() -> None:
    assert uniform_distribution(4).tolist() == [[0.25] * 4] * 4
    # alpha = 3, m = 4: u = 3 / 16 = 0.1875 off the diagonal, 0.1875 + 1/4 on it
    assert _uniform_target(4, 3.0).tolist() == [[0.4375 if i == j else 0.1875 for j in range(4)] for i in range(4)]


def test_structured_distribution_by_hand_for_five_classes() -> None:
    # m = 5, alpha = 10, delta = 0.5: eps = 1/11, u = 2/11, p_c = 3/11, w_k = 2/11 + (0.5/11)(5 - 2k)/3
    order = np.array([[1, 2, 3, 4], [4, 3, 2, 0], [0, 1, 3, 4], [2, 0, 4, 1], [3, 2, 1, 0]])
    target = structured_distribution(5, 10.0, 0.5, order)
    wrong = [2.5 / 11, (2 + 1 / 6) / 11, (2 - 1 / 6) / 11, 1.5 / 11]
    expected = np.full((5, 5), np.nan)
    for c in range(5):
        expected[c, c] = 3 / 11
        expected[c, order[c]] = wrong
    np.testing.assert_allclose(target, expected, rtol=0, atol=1e-15)


def test_structured_distribution_delta_zero_needs_no_third_class() -> None:
    # delta = 0 returns the uniform target before the class-count check: two classes are fine
    assert structured_distribution(2, 1.0, 0.0, np.array([[1], [0]])).tolist() == [[0.75, 0.25], [0.25, 0.75]]


def test_structured_distribution_three_classes_and_the_feasibility_edge() -> None:
    # m = 3, alpha = 3, delta = 1 = alpha/m exactly: eps = 1/4, u = 1/4, w_1 = 1/2, w_2 = 0
    target = structured_distribution(3, 3.0, 1.0, np.array([[2, 1], [0, 2], [1, 0]]))
    np.testing.assert_allclose(target, [[0.5, 0, 0.5], [0.5, 0.5, 0], [0, 0.5, 0.5]], rtol=0, atol=1e-15)


def test_structured_distribution_messages_word_for_word() -> None:
    with pytest.raises(UsageError) as err:
        structured_distribution(2, 5.0, 0.5, np.array([[1], [0]]))
    assert str(err.value) == "noise.delta=0.5 needs at least 3 classes (got 2): use noise.delta=0"
    with pytest.raises(UsageError) as err:
        structured_distribution(4, 3.0, 0.8, np.zeros((4, 3), dtype=int))
    assert str(err.value) == ("noise.delta=0.8 with noise.alpha=3.0 and 4 classes would give the least likely wrong "
                              "class a negative probability: delta must be in [0, alpha/m = 0.75]")


def test_copy_distribution_clips_negatives_and_normalises_each_row() -> None:
    assert copy_distribution(np.eye(3), 0).tolist() == [[1 / 3] * 3] * 3  # alpha 0: uniform, whatever the target
    # alpha = 2: D = (3 T - I) / 2, rows already summing to 1
    assert copy_distribution(np.array([[0.5, 0.5], [0.25, 0.75]]), 2.0).tolist() == [[0.25, 0.75], [0.375, 0.625]]
    # alpha = 1: 2T - I = [[-0.2, 1.2], [0.6, 0.4]] -> clipped at 0 -> rows normalised
    np.testing.assert_allclose(copy_distribution(np.array([[0.4, 0.6], [0.3, 0.7]]), 1.0), [[0, 1], [0.6, 0.4]],
                               rtol=0, atol=1e-15)
    # alpha = 1: 2T - I = [[0, 1.5], [0.5, 0]]: each row divided by its own sum (1.5, 0.5), not a column's
    assert copy_distribution(np.array([[0.5, 0.75], [0.25, 0.5]]), 1.0).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_wrong_class_order_confusing_reverse_random() -> None:
    # uint8 counts: the descending sort must negate them as floats (a uint8 -3 wraps to 253)
    confusion = np.array([[9, 3, 7, 3], [0, 9, 1, 2], [5, 5, 9, 5], [1, 0, 2, 9]], dtype=np.uint8)
    confusing = wrong_class_order("confusing", 4, 0, confusion)
    assert confusing.tolist() == [[2, 1, 3], [3, 2, 0], [0, 1, 3], [2, 0, 1]]  # ties by class index
    assert wrong_class_order("reverse", 4, 0, confusion.tolist()).tolist() == [[3, 1, 2], [0, 2, 3], [3, 1, 0],
                                                                              [1, 0, 2]]
    rng = np.random.default_rng([5, ORDER])  # random: one permutation per class, seeded [seed, STREAM_ORDER]
    expected = [rng.permutation([j for j in range(4) if j != c]).tolist() for c in range(4)]
    assert wrong_class_order("random", 4, 5, None).tolist() == expected == [[3, 1, 2], [2, 3, 0], [1, 3, 0], [0, 1, 2]]


def test_wrong_class_order_shape_message() -> None:
    with pytest.raises(UsageError) as err:
        wrong_class_order("confusing", 4, 0, np.zeros((3, 3)))
    assert str(err.value) == "the confusion matrix has shape (3, 3): the dataset has 4 classes, so it must be (4, 4)"


@pytest.mark.parametrize("where", [None, "", "missing.npy", "."])
def test_load_confusion_refuses_what_is_not_a_file(where: str | None, tmp_path: Path) -> None:
    path = where if where in (None, "") else str(tmp_path / where)
    with pytest.raises(UsageError) as err:
        load_confusion(NoiseSpec(order="reverse", confusion=path))
    assert str(err.value) == (f"noise.order=reverse needs a confusion matrix at noise.confusion={path}, which does not "
                              "exist: make it with `python -m study.launch exp=confusion`")


def test_load_confusion_reads_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "c.npy", np.arange(9).reshape(3, 3))
    assert load_confusion(NoiseSpec(confusion=str(tmp_path / "c.npy"))).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_distribution_hands_noise_matrix_to_load_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(annotations, "load_matrix", lambda *args: calls.append(args) or np.eye(3))
    assert distribution(NoiseSpec(matrix="m.npy"), 3, "/data", True).tolist() == np.eye(3).tolist()
    distribution(NoiseSpec(matrix="cifar10n:worst"), 10)
    assert calls == [("m.npy", 3, "/data", True), ("cifar10n:worst", 10, "", False)]


def test_distribution_uniform_and_structured(tmp_path: Path) -> None:
    # delta 0: uniform over all m, even with an order whose confusion file is missing
    assert distribution(NoiseSpec(alpha=4, order="confusing"), 4).tolist() == [[0.25] * 4] * 4
    # m = 4, alpha = 4, delta = 1 = alpha/m: D[c, c] = 1/4, D[c, k-th wrong] = 1/4 + (4 - 2k) / 8
    rows = [0.5, 0.25, 0.0]
    random = wrong_class_order("random", 4, 7, None)
    expected = np.full((4, 4), 0.25)
    for c in range(4):
        expected[c, random[c]] = rows
    got = distribution(NoiseSpec(alpha=4, delta=1.0, order="random", seed=7), 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    confusion = np.array([[9, 1, 2, 3], [3, 9, 2, 1], [1, 3, 9, 2], [2, 1, 3, 9]])
    np.save(tmp_path / "c.npy", confusion)
    expected = np.full((4, 4), 0.25)
    for c, order in enumerate([[3, 2, 1], [0, 2, 3], [1, 3, 0], [2, 0, 1]]):  # confusion row, descending
        expected[c, order] = rows
    got = distribution(NoiseSpec(alpha=4, delta=1.0, order="confusing", confusion=str(tmp_path / "c.npy")), 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


# --- thresholds and the hash ------------------------------------------------------------------------------------

def test_thresholds_exact_uint32_edges() -> None:
    # uniform: ceil(k 2**32 / m) exactly
    assert thresholds(uniform_distribution(3)).tolist() == [[0, 1431655766, 2863311531, TWO32]] * 3
    table = thresholds([[0.5, 0.25, 0.25], [0, 0, 1], [0.125, 0.375, 0.5]])
    assert table.dtype == np.int64
    assert table.tolist() == [[0, 2**31, 3 * 2**30, TWO32], [0, 0, 0, TWO32], [0, 2**29, 2**31, TWO32]]
    assert thresholds([[1.0]]).tolist() == [[0, TWO32]]


def test_thresholds_sum_a_float32_matrix_in_float64() -> None:
    # 0.1f = 13421773 / 2**27 and 0.3f = 10066330 / 2**25: their sum, 1717986976 / 2**32, needs 26 bits (float32: 24)
    dist = np.array([[0.1, 0.3, 0.6]] * 3, dtype=np.float32)
    assert thresholds(dist).tolist() == [[0, 429496736, 1717986976, TWO32]] * 3


def test_thresholds_nearly_uniform_gets_the_exact_rationals() -> None:
    # within allclose of 1/m: the exact uniform table, not ceil((0.5 + 1e-9) 2**32) = 2**31 + 5
    assert thresholds([[0.5 + 1e-9, 0.5 - 1e-9], [0.5, 0.5]]).tolist() == [[0, 2**31, TWO32]] * 2


def test_thresholds_last_edge_is_forced_to_two32() -> None:
    # row 0 sums to 1 + 2e-9 (allclose to 1): its cdf end ceil((1 + 2e-9) 2**32) = 2**32 + 9 is set back to 2**32
    assert thresholds([[0.25, 0.75 + 2e-9], [1.0, 0.0]]).tolist() == [[0, 2**30, TWO32], [0, TWO32, TWO32]]


@pytest.mark.parametrize("dist", [np.full((2, 3), 1 / 3), [0.5, 0.5], [[1.5, -0.5], [0.5, 0.5]],
                                  [[0.5, 0.4], [0.5, 0.5]], [[0.5, 0.5], [0.6, 0.6]]])
def test_thresholds_refuse_what_is_not_row_stochastic(dist: np.ndarray) -> None:
    with pytest.raises(ValueError) as err:
        thresholds(dist)
    assert str(err.value) == "a noise distribution must be an (m, m) row-stochastic matrix"


WORDS = [0, 1, 2, 0xFFFF, 0x10000, 0x12345678, 0x7FFFFFFF, 0x80000000, 0xDEADBEEF, 0xFFFFFFFF]


def test_mul32_and_fmix32_match_murmur3_on_ints_and_tensors() -> None:
    for c in (0x85EBCA6B, 0xC2B2AE35, 0xFFFFFFFF, 0x10001, 3):
        assert [_mul32(x, c) for x in WORDS] == [x * c % TWO32 for x in WORDS]
        assert _mul32(torch.tensor(WORDS), c).tolist() == [x * c % TWO32 for x in WORDS]
    assert [_fmix32(x) for x in WORDS] == [fmix32(x) for x in WORDS]
    assert _fmix32(torch.tensor(WORDS)).tolist() == [fmix32(x) for x in WORDS]
    assert fmix32(0) == 0 and _fmix32(0) == 0  # the finaliser fixes 0


def test_hash32_matches_the_hand_hash_on_both_sides_of_two32() -> None:
    v = [0, 1, 77, 0xFFFFFFFF, TWO32, TWO32 + 1, 3 * TWO32 + 77, 2**40 + 5, 2**62 + 12345, 2**63 - 1]
    for seed, stream in ((0, LABEL), (TWO32 - 1, IMAGE), (0x1B873593, LABEL), (12345, PIXEL[1])):
        assert hash32(seed, torch.tensor(v), stream).tolist() == [ref_hash(seed, x, stream) for x in v]


# --- sources -------------------------------------------------------------------------------------------------

def test_spread_redraws_until_coprime_and_leaves_integer_alpha_alone() -> None:
    rng = np.random.default_rng([8, SPREAD])  # n = 8 draws a = 4, then 6 (gcd 2), then 3; then b
    assert [int(rng.integers(1, 8)) for _ in range(3)] == [4, 6, 3] and int(rng.integers(0, 8)) == 6
    assert spread(8, 20) == (16, 3, 6)  # start = 8 + (12 // 8) * 8: the last, partial round
    assert spread(8, 12) == (8, 3, 6)
    assert spread(12, 18) == (12, 7, 11)  # 4 shares a factor with 12, then 7
    assert spread(8, 24) == (24, 1, 0)  # integer alpha: start = n_virtual
    assert spread(8, 8) == (8, 1, 0) and spread(1, 3) == (3, 1, 0) and spread(0, 0) == (0, 1, 0)


def test_spread_is_the_first_coprime_draw_for_every_small_n() -> None:
    for n in range(2, 40):
        rng = np.random.default_rng([n, SPREAD])
        a = int(rng.integers(1, n))
        while math.gcd(a, n) != 1:  # the docstring's rule: redraw a in [1, n) until coprime with n
            a = int(rng.integers(1, n))
        assert spread(n, 2 * n + 1) == (2 * n, a, int(rng.integers(0, n)))
    assert spread(2, 3)[:2] == (2, 1)  # two images: a = 1 is the only coprime choice


def test_source_of_each_kind_by_hand() -> None:
    v = torch.arange(15)
    # same, n = 5, partial round from 12: (2 i + 1) % 5 for i = v % 5 = 2, 3, 4
    same = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 0, 2, 4]
    assert _source(v, 5, 1, 0, 12, 2, 1).tolist() == same
    assert [_source(x, 5, 1, 0, 12, 2, 1) for x in range(15)] == same
    assert _source(v, 5, 3, 1, 15, 1, 0).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 5, 6, 7, 5]  # cifar100
    assert _source(v, 5, 1, 2, 15, 1, 0).tolist() == [0, 1, 2, 3, 4] + [-1] * 10  # white
    assert _source(v, 5, 1, 3, 15, 1, 0).tolist() == list(range(15))  # novel: v itself


# --- NoiseModel ----------------------------------------------------------------------------------------------

class MetaLabels(torch.Tensor):
    """Clean labels that say they live on the meta device: NoiseModel must move what it builds there."""

    @property
    def device(self) -> torch.device:
        return torch.device("meta")


def test_model_attributes_and_tables() -> None:
    clean = torch.tensor([0, 1, 2, 3, 0, 1], dtype=torch.int32)
    pool = torch.tensor([2, -1, 0], dtype=torch.int32)
    model = NoiseModel(NoiseSpec(alpha=2.5, source="cifar100"), clean, 4, dist=SHIFT4, pool_labels=pool)
    assert (model.n, model.m, model.n_virtual, model.n_pool) == (6, 4, 21, 3)
    assert model.spread == (18, 5, 2)  # spread(6, 21): start 6 + 2 * 6
    assert model.rows.dtype == torch.int64 and model.rows.tolist() == [0, 1, 2, 3, 0, 1, 2, 4, 0]  # -1: row m
    shift = [[0, 0, TWO32, TWO32, TWO32], [0, 0, 0, TWO32, TWO32], [0, 0, 0, 0, TWO32], [0, TWO32, TWO32, TWO32, TWO32]]
    uniform = [0, 2**30, 2**31, 3 * 2**30, TWO32]
    assert model.table_np.tolist() == shift + [uniform] and model.table.tolist() == shift + [uniform]
    assert model.votes is None and model.kind == 1 and not model.tied
    plain = NoiseModel(NoiseSpec(alpha=4, delta=1.0, order="random", seed=3), torch.arange(4), 4)
    per_copy = distribution(NoiseSpec(alpha=4, delta=1.0, order="random", seed=3), 4)
    assert plain.table_np.tolist() == thresholds(per_copy).tolist() + [uniform] and plain.n_pool == 0


def test_model_moves_rows_table_and_votes_to_the_labels_device() -> None:
    votes = (torch.zeros(3, 2, dtype=torch.int32), torch.ones(3, dtype=torch.int32))
    model = NoiseModel(NoiseSpec(alpha=1), torch.tensor([0, 1, 2]).as_subclass(MetaLabels), 3, votes=votes)
    assert [t.is_meta for t in (model.rows, model.table, *model.votes)] == [True] * 4  # is_meta: the real device
    assert [t.dtype for t in model.votes] == [torch.int64] * 2
    back = NoiseModel(NoiseSpec(alpha=1), torch.tensor([0, 1, 2]), 3, votes=votes)
    assert back.to("meta") is back
    assert [t.device.type for t in (back.rows, back.table, *back.votes)] == ["meta"] * 4
    plain = NoiseModel(NoiseSpec(alpha=1), torch.tensor([0, 1, 2]), 3).to(torch.device("meta"))
    assert plain.votes is None and plain.rows.device.type == plain.table.device.type == "meta"


@pytest.mark.parametrize("source,alpha,pool,message", [
    ("novel", 2, 7, "noise.source=novel needs 8 extra images for its noisy copies but was given 7"),
    ("cifar100", 0.25, 0, "noise.source=cifar100 needs 1 extra images for its noisy copies but was given 0"),
])
def test_model_refuses_a_short_pool(source: str, alpha: float, pool: int, message: str) -> None:
    with pytest.raises(UsageError) as err:
        NoiseModel(NoiseSpec(alpha=alpha, source=source), torch.arange(4) % 4, 4, pool_labels=torch.zeros(pool))
    assert str(err.value) == message


@pytest.mark.parametrize("source,alpha,pool", [("novel", 2, 8), ("cifar100", 0.25, 1), ("cifar100", 0, 0),
                                               ("novel", 0, 0), ("same", 3, 0), ("white", 3, 0)])
def test_model_accepts_a_pool_just_large_enough(source: str, alpha: float, pool: int) -> None:
    model = NoiseModel(NoiseSpec(alpha=alpha, source=source), torch.arange(4), 4, pool_labels=torch.zeros(pool))
    assert model.n_pool == pool


def test_model_labels_source_same_follow_the_image_row() -> None:
    clean = torch.tensor([0, 1, 2, 3, 0, 1])
    model = NoiseModel(NoiseSpec(alpha=2.5, seed=9), clean, 4, dist=SHIFT4)
    v = torch.arange(21)
    source, labels = model(v)
    images = [x % 6 for x in range(18)] + [2, 1, 0]  # the partial round: (5 i + 2) % 6 for i = 0, 1, 2
    assert source.tolist() == images
    assert labels.tolist() == clean.tolist() + [(int(clean[i]) + 1) % 4 for i in images[6:]]
    grid_source, grid = model(v.view(3, 7))  # any shape of v: labels come back in that shape
    assert grid_source.tolist() == source.view(3, 7).tolist() and grid.tolist() == labels.view(3, 7).tolist()


@pytest.mark.parametrize("seed", [0, 77])
def test_model_labels_white_use_the_uniform_row(seed: int) -> None:
    model = NoiseModel(NoiseSpec(alpha=3, seed=seed, source="white"), torch.tensor([3, 2, 1, 0]), 4, dist=SHIFT4)
    source, labels = model(torch.arange(16))
    assert source.tolist() == [0, 1, 2, 3] + [-1] * 12
    assert labels.tolist() == [3, 2, 1, 0] + [uniform_label(seed, x, 4) for x in range(4, 16)]


def test_model_labels_cifar100_pool_rows_and_a_single_pool_image() -> None:
    pool = torch.tensor([2, -1, 0])
    model = NoiseModel(NoiseSpec(alpha=2, seed=4, source="cifar100"), torch.tensor([1, 1, 1, 1]), 4, dist=SHIFT4,
                       pool_labels=pool)
    source, labels = model(torch.arange(12))
    assert source.tolist() == [0, 1, 2, 3, 4, 5, 6, 4, 5, 6, 4, 5]
    by_image = {4: lambda x: 3, 5: lambda x: uniform_label(4, x, 4), 6: lambda x: 1}  # pool classes 2, none, 0
    assert labels.tolist() == [1] * 4 + [by_image[s](x) for x, s in zip(range(4, 12), source[4:].tolist())]
    one = NoiseModel(NoiseSpec(alpha=1, source="cifar100"), torch.arange(3), 4, pool_labels=torch.tensor([-1]))
    assert one.source(torch.arange(6)).tolist() == [0, 1, 2, 3, 3, 3]  # a pool of one image, every copy on it


def test_model_labels_novel_use_the_pool_image_s_class() -> None:
    pool = torch.tensor([3, 0, 1, 2, 0, 0])
    model = NoiseModel(NoiseSpec(alpha=2, source="novel"), torch.tensor([2, 0, 1]), 4, dist=SHIFT4, pool_labels=pool)
    source, labels = model(torch.arange(9))
    assert source.tolist() == list(range(9))
    assert labels.tolist() == [2, 0, 1, 0, 1, 2, 3, 1, 1]


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_model_tied_draw_hashes_the_source_image(seed: int) -> None:
    model = NoiseModel(NoiseSpec(alpha=3, seed=seed, draw="image"), torch.tensor([0, 1, 2]), 5)
    assert model.tied and model.kind == 0
    source, labels = model(torch.arange(12))
    assert labels.tolist() == [0, 1, 2] + [uniform_label(seed, x % 3, 5, IMAGE) for x in range(3, 12)]
    copy = NoiseModel(NoiseSpec(alpha=3, seed=seed), torch.tensor([0, 1, 2]), 5)
    assert copy(torch.arange(12))[1].tolist() == [0, 1, 2] + [uniform_label(seed, x, 5) for x in range(3, 12)]


def test_model_label_drawn_exactly_on_a_threshold_takes_the_upper_class() -> None:
    h = ref_hash(0, 5, LABEL)
    p = h / TWO32  # exact: T[c, 1] = ceil(p 2**32) = h, so h itself falls in class 1
    model = NoiseModel(NoiseSpec(alpha=1), torch.tensor([0, 0, 0]), 2, dist=np.array([[p, 1 - p], [p, 1 - p]]))
    assert int(model.table[0, 1]) == h
    assert model(torch.tensor([5, 4]))[1].tolist() == [1, int(ref_hash(0, 4, LABEL) >= h)]


@pytest.mark.parametrize("draw", ["copy", "image"])
def test_model_votes_pick_an_annotation_of_the_source(draw: str) -> None:
    labels = torch.tensor([[7, 8, 9, -1], [5, -1, -1, -1], [1, 2, 3, 4]], dtype=torch.int32)
    counts = torch.tensor([3, 1, 4], dtype=torch.int32)
    model = NoiseModel(NoiseSpec(alpha=4, seed=11, labels="x", draw=draw), torch.tensor([0, 1, 2]), 10,
                       votes=(labels, counts))
    source, got = model(torch.arange(15))
    expected = [0, 1, 2]
    for x in range(3, 15):
        i = x % 3
        h = ref_hash(11, i, IMAGE) if draw == "image" else ref_hash(11, x, LABEL)
        expected.append(int(labels[i, h * int(counts[i]) >> 32]))
    assert source.tolist() == [x % 3 for x in range(15)] and got.tolist() == expected


# --- white noise ---------------------------------------------------------------------------------------------

def reference_moments(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and std of clip(N(mu, sigma^2), 0, 1): Gauss-Legendre on [0, 1] plus the mass past 1 (at 1)."""
    x, w = np.polynomial.legendre.leggauss(80)
    x, w = (x + 1) / 2, w / 2
    density = np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    above = 0.5 * math.erfc((1 - mu) / (sigma * math.sqrt(2)))
    m1, m2 = float((w * x * density).sum()) + above, float((w * x * x * density).sum()) + above
    return m1, math.sqrt(max(m2 - m1 * m1, 0.0))


@pytest.mark.parametrize("mu,sigma", [(0.3, 0.4), (0.7, 0.25), (0.45, 0.15), (-0.1, 0.6), (1.2, 0.5), (0.6, 1.5)])
def test_clipped_normal_moments_to_1e12(mu: float, sigma: float) -> None:
    mean, std = _clipped_normal_moments(mu, sigma)
    want_mean, want_std = reference_moments(mu, sigma)
    assert abs(mean - want_mean) < 1e-12 and abs(std - want_std) < 1e-12


def test_clipped_normal_moments_all_mass_at_an_end() -> None:
    assert _clipped_normal_moments(-50.0, 1.0) == (0.0, 0.0)  # everything clipped to 0
    assert _clipped_normal_moments(60.0, 1.0) == (1.0, 0.0)  # everything clipped to 1


def test_white_noise_preclip_parameters_hit_the_target_moments() -> None:
    white = WhiteNoise(0, (2, 3, 3), (0.2, 0.5), (0.3, 0.2))
    assert white.seed == 0 and white.shape == (2, 3, 3) and white.pixels == 18
    assert white.mu.shape == white.sigma.shape == (2, 1, 1) and white.mu.dtype == torch.float32
    for c, (mean, std) in enumerate(((0.2, 0.3), (0.5, 0.2))):
        mu, sigma = float(white.mu[c]), float(white.sigma[c])
        got_mean, got_std = _clipped_normal_moments(mu, sigma)
        assert abs(got_mean - mean) < 1e-6 and abs(got_std - std) < 1e-6  # float32 storage of mu, sigma
    assert float(white.mu[0]) < 0 and float(white.sigma[0]) > 0.6  # clipped at 0: mean lowered, much wider
    assert abs(float(white.mu[1]) - 0.5) < 1e-7 and 0.2 < float(white.sigma[1]) < 0.21  # symmetric: centre kept


def test_white_noise_mnist_fixed_point_converges() -> None:
    """MNIST's mostly black pixels need ~2,100 rounds of the fixed point (200 left the mean at 0.13175)."""
    white = WhiteNoise(0, (1, 1, 1), (0.1307,), (0.3081,))
    mean, std = _clipped_normal_moments(float(white.mu[0]), float(white.sigma[0]))
    assert abs(mean - 0.1307) < 1e-6 and abs(std - 0.3081) < 1e-6


@pytest.mark.parametrize("std", [0.5, 0.6])
def test_white_noise_refuses_a_std_no_pixel_in_0_1_can_have(std: float) -> None:
    """A [0, 1] pixel of mean 0.5 has std at most 0.5, and only when every pixel is 0 or 1."""
    with pytest.raises(UsageError) as error:
        WhiteNoise(0, (1, 1, 1), (0.5,), (std,))
    assert str(error.value) == (f"white noise: std {std} is impossible for pixels in [0, 1] with mean 0.5: it must be "
                                "below sqrt(mean (1 - mean)) = 0.5")


def test_white_noise_refuses_a_std_its_fixed_point_cannot_reach() -> None:
    """std 0.4999 is possible (bound 0.5) but needs a pre-clip sigma in the thousands: 10,000 rounds do not get there."""
    with pytest.raises(UsageError) as error:
        WhiteNoise(0, (1, 1, 1), (0.5,), (0.4999,))
    assert str(error.value) == ("white noise: no clipped normal reaches mean 0.5 and std 0.4999 in 10,000 rounds: the "
                                "std is within 0.0001 of its bound 0.5 (pixels nearly all 0 or 1)")


def hand_pixels(white: WhiteNoise, v: list[int]) -> np.ndarray:
    """WhiteNoise's images by hand: Box-Muller on the two pixel hashes of counter v * pixels + p, in float32."""
    mu, sigma = white.mu.view(-1).numpy(), white.sigma.view(-1).numpy()
    per_channel = white.pixels // white.shape[0]
    out = np.empty((len(v), white.pixels), np.uint8)
    for k, image in enumerate(v):
        for p in range(white.pixels):
            counter = image * white.pixels + p
            u1 = (ref_hash(white.seed, counter, PIXEL[0]) + 0.5) / TWO32
            u2 = ref_hash(white.seed, counter, PIXEL[1]) / TWO32
            z = np.float32(math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))
            c = p // per_channel
            x = np.float32(mu[c]) + np.float32(sigma[c]) * z
            out[k, p] = np.round(np.clip(x, np.float32(0), np.float32(1)) * np.float32(255))
    return out.reshape(len(v), *white.shape)


@pytest.mark.parametrize("seed", [0, 5])
def test_white_noise_pixels_by_hand(seed: int) -> None:
    white = WhiteNoise(seed, (2, 2, 3), (0.45, 0.6), (0.25, 0.3))
    v = [0, 3, TWO32 // 12 + 1]  # the last image's counters pass 2**32: the hash's high word
    got = white(torch.tensor(v))
    assert got.dtype == torch.uint8 and got.shape == (3, 2, 2, 3)
    expected = hand_pixels(white, v)
    assert got.tolist() == expected.tolist()
    pasted = white.paste(torch.zeros(3, 2, 2, 3, dtype=torch.uint8), torch.tensor(v), torch.tensor([False, True, True]))
    assert pasted[0].eq(0).all() and pasted[1:].tolist() == expected[1:].tolist()


def test_white_noise_pixel_whose_hashes_are_zero() -> None:
    # below 2**32, h = fmix(fmix(v ^ key) ^ fmix(key ^ KEY_SALT)) is 0 exactly when v ^ key = key ^ KEY_SALT, i.e. at
    # v = KEY_SALT for every key: u1 = 0.5 / 2**32 (log finite), u2 = 0, z = sqrt(66 ln 2) = 6.7636
    v = 0x27D4EB2F
    assert ref_hash(0, v, PIXEL[0]) == ref_hash(0, v, PIXEL[1]) == 0
    white = WhiteNoise(0, (1, 1, 1), (0.5,), (0.03,))
    assert abs(float(white.mu) - 0.5) < 1e-9 and abs(float(white.sigma) - 0.03) < 1e-9  # no clipping to speak of
    got = white(torch.tensor([v]))
    assert got.tolist() == hand_pixels(white, [v]).tolist() == [[[[179]]]]  # 255 (0.5 + 0.03 * 6.7636) = 179.2


def test_white_noise_is_built_on_the_indices_device() -> None:
    white = WhiteNoise(0, (2, 2, 3), (0.4, 0.5), (0.2, 0.2))
    x = white(torch.tensor([1, 2], device="meta"))  # the meta device: shapes only, but any CPU tensor mixed in fails
    assert x.is_meta and x.shape == (2, 2, 2, 3) and x.dtype == torch.uint8
