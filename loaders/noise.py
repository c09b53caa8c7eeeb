"""The noise model: virtual index v of the diluted dataset -> (source image, label).

The diluted set has ``n_virtual = n + round(alpha * n)`` examples; ``v < n`` is clean example ``v``
with its clean label. Every ``v >= n`` is a noisy copy: its label is drawn from the noise
distribution of its image's true class, with the uniform variate taken from a counter-based hash of
``(seed, v)``. Nothing of size ``alpha * n`` is ever stored: a label is recomputed from ``v`` whenever
it is needed, by any backend, on any device. With ``noise.draw=image`` the variate is the hash of
``(seed, source image)`` instead, so every noisy copy of one image carries the one label drawn for it.

The source index points into the loader's image table: the n clean images, then (for some
``noise.source``) extra images appended after them (see NoiseModel). ``-1`` means "a white-noise
image synthesised from v" (WhiteNoise), so white noise needs no storage either.

Only integer arithmetic is used (32-bit values held in int64, products kept below 2**63), so the
torch path (CPU or CUDA) and the numba path used inside FFCV give bit-identical labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from errors import PATH, UsageError, at_least, check_fields, choice, optional_text, param, within

MASK32 = 0xFFFFFFFF
TWO32 = 1 << 32
# Distinct hash streams so that later draws (e.g. a source image) never reuse the label variate.
STREAM_LABEL = 0x1B873593
STREAM_ORDER = 0x2C1B3C6D
STREAM_SPREAD = 0x3A8F05C5  # the permutation that spreads a fractional alpha's extra copies
STREAM_PIXEL = (0x297A2D39, 0x165667B1)  # the two uniforms of one Box-Muller normal
STREAM_IMAGE = 0x4CF5AD43  # noise.draw=image: one label per image, apart from any copy's own draw

ORDERS = ("confusing", "reverse", "random")
SOURCES = ("same", "cifar100", "white", "novel")
DRAWS = ("copy", "image")  # a noisy label drawn afresh for each copy, or once per image and kept by its copies
WHITE = -1  # source index of a synthesised white-noise image
KEY_SALT = 0x27D4EB2F  # separates the key that mixes v's high word from the one that mixes its low word
HIGH_SALT = 0x165667B1  # the key of the round that mixes v's high word alone (v >= 2**32)
MATRIX = optional_text("null, a .npy/.csv path or cifar10n:random|worst|aggre")


@dataclass
class NoiseSpec:
    """What noise dilutes the training set: the `noise` section of the study's config (study.config), each key
    declared once here with its default and its rule; the rules across keys in __post_init__.

    seed fixes every noisy label (and the random order) for ever: the same (seed, v) always gives the same
    label. delta: §3.2, Fig. 4 (structured_distribution). order: confusing (most confused first, from the
    confusion matrix), reverse (least confused first) or random (seeded by `seed`). source (§3.3): same (the
    clean images, repeated), novel (training images outside the clean subset, never repeated), cifar100
    (another dataset's images, uniform labels) or white (synthesised Gaussian noise, uniform labels).
    matrix: the general case of delta/order (loaders.annotations.load_matrix). labels: noisy copy v of image i
    carries one of image i's annotations, picked by the hash of (seed, v) (loaders.annotations.load_votes).
    draw: copy (each noisy copy's label from the hash of (seed, v)) or image (from the hash of (seed, its image),
    so all of an image's noisy copies carry one label: noise tied to the image, as a human annotator's is).
    """

    alpha: float = param(0.0, at_least(0, noun="a real number"))  # noisy examples per clean example
    seed: int = param(0, within(0, TWO32, integer=True, high_open=True, shown_high="2**32"))
    delta: float = param(0.0, within(0, 1))  # 0 uniform .. 1 the top wrong class as likely as the correct one
    order: str = param("confusing", choice(ORDERS))  # which wrong classes structured noise favours
    source: str = param("same", choice(SOURCES))  # where the noisy copies' images come from
    confusion: str | None = param(None, PATH)  # (m, m) .npy for order confusing/reverse; null: <storage.root>/confusion/<dataset>.npy
    matrix: str | None = param(None, MATRIX)  # an (m, m) row-stochastic per-copy label distribution
    labels: str | None = param(None, MATRIX)  # per-image annotations: an (n, r) .npy or a CSV of index,label rows
    draw: str = param("copy", choice(DRAWS))  # a noisy label per copy, or one per image shared by its copies

    def __post_init__(self) -> None:
        check_fields(self, "noise")
        given = [f"{k}={v}" for k, v in (("noise.delta", self.delta or None), ("noise.matrix", self.matrix),
                                          ("noise.labels", self.labels)) if v is not None]
        if len(given) > 1:  # each one alone says what a noisy copy's label is drawn from
            raise UsageError(f"{' and '.join(given)} are two ways to give the noisy labels: set only one of them")
        if given and self.source in ("cifar100", "white"):  # no true class to structure the noisy labels around
            raise UsageError(f"{given[0]} needs images with a true class: with noise.source={self.source} drop it, "
                             "or use source=same or novel")
        if self.draw == "image" and self.source == "white":  # each white-noise copy is an image of its own
            raise UsageError("noise.draw=image ties a label to an image, but with noise.source=white every noisy copy "
                             "is a new synthesised image: use noise.draw=copy, or source=same, novel or cifar100")

    def n_virtual(self, n: int) -> int:
        """Size of the diluted set built on n clean examples (fractional alpha is rounded)."""
        return n + int(round(self.alpha * n))


def uniform_distribution(m: int) -> np.ndarray:
    """(m, m) row-stochastic matrix: a noisy label is uniform over all m classes, correct one included."""
    return np.full((m, m), 1.0 / m)


def structured_distribution(m: int, alpha: float, delta: float, order: np.ndarray) -> np.ndarray:
    """Target label distribution of §3.2 / Fig. 4: row c is P(label | true class c) over all 1 + alpha
    copies of an image of class c (its clean copy included).

    With eps = 1 / (1 + alpha) (the correct label's likelihood over chance) and
    u = alpha / (m (1 + alpha)) (a wrong class's probability under uniform noise):

        correct class:               p_c = eps + u = 1/(1+alpha) + alpha/(m(1+alpha))  (as for uniform noise)
        k-th wrong class in `order`: w_k = u + delta * eps * (m - 2k) / (m - 2),   k = 1 .. m-1

    so delta = 0 is uniform noise, w_1 = u + delta * eps (at delta = 1 the most likely wrong class is
    as likely as the correct one), w_k falls linearly in k, and sum_k w_k = (m - 1) u = 1 - p_c. The
    last class gets w_{m-1} = u - delta * eps >= 0, i.e. the combination is feasible iff
    delta <= alpha / m (e.g. any delta in [0, 1] at alpha >= m); otherwise UsageError.
    `order` is (m, m-1): order[c] lists the wrong classes of c, most likely first.
    """
    if delta == 0:
        return _uniform_target(m, alpha)
    if m < 3:
        raise UsageError(f"noise.delta={delta} needs at least 3 classes (got {m}): use noise.delta=0")
    if delta > alpha / m:
        raise UsageError(f"noise.delta={delta} with noise.alpha={alpha} and {m} classes would give the least "
                         f"likely wrong class a negative probability: delta must be in [0, alpha/m = {alpha / m:g}]")
    eps, target = 1.0 / (1.0 + alpha), _uniform_target(m, alpha)
    k = np.arange(1, m)
    wrong = target[0, 1] + delta * eps * (m - 2 * k) / (m - 2)
    for c in range(m):
        target[c, order[c]] = wrong
    return target


def _uniform_target(m: int, alpha: float) -> np.ndarray:
    """Uniform noise seen over all copies: the correct class p_c, every wrong class u."""
    u = alpha / (m * (1.0 + alpha))
    return np.full((m, m), u) + np.eye(m) / (1.0 + alpha)


def copy_distribution(target: np.ndarray, alpha: float) -> np.ndarray:
    """The per-copy distribution D of the noisy copies that yields `target` over all copies:
    target = e_c / (1 + alpha) + alpha / (1 + alpha) * D, so D = ((1 + alpha) target - I) / alpha.

    For uniform targets D is uniform over all m classes (correct one included); for structured ones
    D[c, c] = 1/m and D[c, k-th wrong] = 1/m + delta (m - 2k) / (alpha (m - 2)).
    """
    m = target.shape[0]
    if alpha == 0:  # no noisy copies: any D will do
        return uniform_distribution(m)
    dist = ((1.0 + alpha) * target - np.eye(m)) / alpha
    dist = np.clip(dist, 0.0, None)  # -1e-17 at the feasibility boundary delta = alpha/m
    return dist / dist.sum(1, keepdims=True)


def wrong_class_order(kind: str, m: int, seed: int, confusion: np.ndarray | None) -> np.ndarray:
    """(m, m-1): for each true class c, its wrong classes, the one noise favours most first.

    confusing: by confusion[c, j] (test images of class c predicted as j) descending, ties by class
    index; reverse: that list reversed; random: a permutation per class seeded by the noise seed.
    """
    wrong = np.array([[j for j in range(m) if j != c] for c in range(m)]).reshape(m, m - 1)
    if kind == "random":
        rng = np.random.default_rng([seed, STREAM_ORDER])
        return np.stack([rng.permutation(row) for row in wrong])
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.shape != (m, m):
        raise UsageError(f"the confusion matrix has shape {confusion.shape}: the dataset has {m} classes, "
                         f"so it must be ({m}, {m})")
    ranked = np.stack([row[np.lexsort((row, -confusion[c, row]))] for c, row in enumerate(wrong)])
    return ranked if kind == "confusing" else ranked[:, ::-1].copy()


def load_confusion(spec: NoiseSpec) -> np.ndarray:
    """The confusion matrix spec.confusion names (needed for order confusing/reverse)."""
    path = Path(spec.confusion) if spec.confusion else None
    if path is None or not path.is_file():
        raise UsageError(f"noise.order={spec.order} needs a confusion matrix at noise.confusion={spec.confusion}, "
                         f"which does not exist: make it with `python -m study.launch exp=confusion`")
    return np.load(path)


def distribution(spec: NoiseSpec, m: int, root: str = "", download: bool = False) -> np.ndarray:
    """The (m, m) per-copy label distribution of the noisy copies that `spec` describes: uniform, the
    delta-structured matrix of §3.2, or noise.matrix (root: the data root cifar10n:<kind> is read from).
    With noise.labels it is uniform here; loaders.data replaces it by the annotations' empirical matrix."""
    if spec.matrix:
        from loaders.annotations import load_matrix

        return load_matrix(spec.matrix, m, root, download)
    if spec.delta == 0:
        return uniform_distribution(m)
    confusion = None if spec.order == "random" else load_confusion(spec)
    order = wrong_class_order(spec.order, m, spec.seed, confusion)
    return copy_distribution(structured_distribution(m, spec.alpha, spec.delta, order), spec.alpha)


def thresholds(dist: np.ndarray) -> np.ndarray:
    """Integer inverse-CDF table: label k is drawn for a 32-bit variate h when T[c, k] <= h < T[c, k+1].

    T[c, 0] = 0 and T[c, m] = 2**32. For the uniform matrix T[c, k] = ceil(k * 2**32 / m), so the
    label equals (h * m) >> 32 exactly.
    """
    dist = np.asarray(dist, dtype=np.float64)
    m = dist.shape[0]
    if dist.shape != (m, m) or (dist < 0).any() or not np.allclose(dist.sum(1), 1.0):  # never from a checked config
        raise ValueError("a noise distribution must be an (m, m) row-stochastic matrix")
    cdf = np.concatenate([np.zeros((m, 1)), np.cumsum(dist, axis=1)], axis=1)
    table = np.ceil(cdf * TWO32).astype(np.int64)
    table[:, -1] = TWO32
    if m > 1 and np.allclose(dist, 1.0 / m):  # exact rationals for the uniform case
        table[:] = -((-np.arange(m + 1, dtype=np.int64) * TWO32) // m)
    return table


# _mul32 and _fmix32 use only operators, so loaders.ffcv_ops compiles these very functions for numba.
def _mul32(x: torch.Tensor | int, c: int) -> torch.Tensor | int:
    """(x * c) mod 2**32 for x in [0, 2**32): split c in 16-bit halves so no product overflows int64."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & MASK32


def _fmix32(x: torch.Tensor | int) -> torch.Tensor | int:
    """MurmurHash3's finaliser: a bijection of 32-bit values with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def spread(n: int, n_virtual: int) -> tuple[int, int, int]:
    """(start, a, b) of the last, partial round of noisy copies under a fractional alpha (source same): copies
    v >= start take image (a * (v % n) + b) % n, a seeded affine permutation of the n images (gcd(a, n) = 1),
    so the n_noisy % n extra copies go to distinct images spread over the set, not to images 0, 1, 2, ...
    Seeded by n alone (stream STREAM_SPREAD), not the noise seed: members of a fused group, which differ in
    noise.seed, share their images. Integer alpha: start = n_virtual, no copy is moved."""
    start = n + (n_virtual - n) // n * n if n else n_virtual
    if n <= 1 or start >= n_virtual:
        return n_virtual, 1, 0
    rng = np.random.default_rng([n, STREAM_SPREAD])
    a = int(rng.integers(1, n))
    while math.gcd(a, n) != 1:
        a = int(rng.integers(1, n))
    return start, a, int(rng.integers(0, n))


def _source(v: torch.Tensor | int, n: int, n_pool: int, kind: int, start: int, a: int, b: int) -> torch.Tensor | int:
    """Image-table index of virtual index v (NoiseModel's docstring), kind = SOURCES.index(source); (start, a, b)
    from `spread`.

    Operators only, like the hash, so that loaders.ffcv_ops compiles this very function for numba.
    """
    noisy = v >= n
    if kind == 0:  # same: the last, partial round of copies spread over the images
        i = v % n
        return i + (v >= start) * ((a * i + b) % n - i)
    if kind == 1:  # cifar100: the pool's images in turn
        return v + noisy * (n + (v - n) % n_pool - v)
    if kind == 2:  # white
        return v - noisy * (v - WHITE)
    return v  # novel: one pool image per noisy copy


def hash32(seed: int, v: torch.Tensor, stream: int) -> torch.Tensor:
    """Counter-based hash of (seed, stream, v) for int64 v >= 0 -> int64 values in [0, 2**32).

    Past 2**32 the high word, which the first rounds only xor in, gets a round of its own and one more
    round of the whole: without it, hashes of v and v + 2**33 were dependent (chi-square p ~ 1e-16 over
    3M pairs). Below 2**32 (high word 0) the hash is what it always was: labels there never change.
    """
    key = _fmix32((seed ^ stream) & MASK32)  # a Python int: no device tensor per batch
    high = v >> 32
    h = _fmix32(_fmix32((v & MASK32) ^ key) ^ high ^ _fmix32(key ^ KEY_SALT))
    return torch.where(high == 0, h, _fmix32(h ^ _fmix32(high ^ key ^ HIGH_SALT)))


class NoiseModel:
    """The noise function, bound to one dataset's clean labels. Vectorised, device-agnostic.

    Image table seen by the loader: rows 0..n-1 are the clean images; `pool_labels`, when given, are
    the true classes of extra images appended after them (-1: no class, e.g. CIFAR-100 images for a
    CIFAR-10 study). Source of noisy copy v >= n, per spec.source:
      same:     v % n, the clean images repeated; under a fractional alpha the last, partial round
                goes to images spread by a seeded permutation (`spread`);
      novel:    v itself: the table holds one unused training image per noisy copy (no repetition);
      cifar100: n + (v - n) % len(pool), the other dataset's images in turn;
      white:    -1 (WHITE), a white-noise image the loader synthesises from v (WhiteNoise).
    Noisy labels follow the per-copy distribution of the image's true class (`distribution(spec)`),
    or the uniform distribution over all m classes when the image has no class (cifar100, white).
    With `votes` (noise.labels: labels (n_table, r) padded with -1, counts (n_table,), one row per table
    image, each count >= 1) a noisy copy instead carries annotation (h * count) >> 32 of its source image,
    h the same hash: instance-dependent noise with nothing stored per copy.
    """

    def __init__(self, spec: NoiseSpec, clean_labels: torch.Tensor, num_classes: int,
                 dist: np.ndarray | None = None, pool_labels: torch.Tensor | None = None,
                 votes: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        self.spec = spec
        self.n = int(clean_labels.numel())
        self.m = num_classes
        self.n_virtual = spec.n_virtual(self.n)
        self.spread = spread(self.n, self.n_virtual)  # (start, a, b) of `_source` for source same
        pool = torch.zeros(0, dtype=torch.int64) if pool_labels is None else pool_labels.long().cpu()
        self.n_pool = int(pool.numel())
        needed = {"novel": self.n_virtual - self.n, "cifar100": 1 if self.n_virtual > self.n else 0}.get(spec.source, 0)
        if self.n_pool < needed:
            raise UsageError(f"noise.source={spec.source} needs {needed} extra images for its noisy copies "
                             f"but was given {self.n_pool}")
        # Noise row of every table image: its true class, or m (the uniform row) when it has none.
        self.rows = torch.cat([clean_labels.long().cpu(), torch.where(pool < 0, num_classes, pool)]).to(clean_labels.device)
        per_copy = distribution(spec, num_classes) if dist is None else dist
        self.table_np = np.concatenate([thresholds(per_copy), thresholds(uniform_distribution(num_classes))[:1]])
        self.table = torch.from_numpy(self.table_np).to(clean_labels.device)
        self.votes = None if votes is None else tuple(t.long().to(clean_labels.device) for t in votes)

    def to(self, device: torch.device | str) -> "NoiseModel":
        self.rows = self.rows.to(device)
        self.table = self.table.to(device)
        if self.votes is not None:
            self.votes = tuple(t.to(device) for t in self.votes)
        return self

    @property
    def tied(self) -> bool:
        """spec.draw=image: a noisy copy's label is its image's, drawn once (hash of the source, not of v)."""
        return self.spec.draw == "image"

    @property
    def kind(self) -> int:
        """spec.source as the integer `_source` takes."""
        return SOURCES.index(self.spec.source)

    def source(self, v: torch.Tensor) -> torch.Tensor:
        """Index into the image table of each virtual index (WHITE for a synthesised image)."""
        return _source(v, self.n, max(self.n_pool, 1), self.kind, *self.spread)

    def __call__(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Virtual indices (int64, any shape) -> (source image index, label), both int64."""
        source = self.source(v)
        row = torch.where(source == WHITE, self.m, self.rows[source.clamp(min=0)])  # v < n: its clean label
        h = hash32(self.spec.seed, *((source, STREAM_IMAGE) if self.tied else (v, STREAM_LABEL)))
        if self.votes is not None:  # one of the source image's own annotations
            image = source.clamp(min=0)
            labels, counts = self.votes
            return source, torch.where(v < self.n, row, labels[image, (h * counts[image]) >> 32])
        cuts = self.table[row]  # (..., m + 1) thresholds of each example's noise row
        noisy = (h.unsqueeze(-1) >= cuts[..., 1:-1]).sum(-1)
        return source, torch.where(v < self.n, row, noisy)


def _clipped_normal_moments(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and std of clip(N(mu, sigma^2), 0, 1)."""
    cdf = lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))  # noqa: E731
    pdf = lambda x: math.exp(-x * x / 2.0) / math.sqrt(2.0 * math.pi)  # noqa: E731
    a, b = -mu / sigma, (1.0 - mu) / sigma
    inside, edge = cdf(b) - cdf(a), pdf(a) - pdf(b)
    m1 = mu * inside + sigma * edge + (1.0 - cdf(b))
    m2 = (mu * mu + sigma * sigma) * inside + 2 * mu * sigma * edge + sigma * sigma * (a * pdf(a) - b * pdf(b)) + (1.0 - cdf(b))
    return m1, math.sqrt(max(m2 - m1 * m1, 0.0))


class WhiteNoise:
    """White-noise images for virtual indices: i.i.d. Gaussian pixels whose mean and std per channel,
    after clipping to the pixel range and rounding to uint8, match the training set's (§3.3).

    Pixel p of image v is a Box-Muller normal from the hashes of (seed, v * pixels + p) on two
    streams, so an image is recomputed, never stored, and is the same on every device and epoch.
    """

    def __init__(self, seed: int, shape: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.seed, self.shape, self.pixels = seed, shape, int(np.prod(shape))
        # Pre-clip parameters, so that the clipped pixels have the target moments (fixed point).
        mus, sigmas = [], []
        for target_mean, target_std in zip(mean, std):
            bound = math.sqrt(target_mean * (1.0 - target_mean))  # a [0, 1] pixel's largest std: all 0s and 1s
            if not target_std < bound:
                raise UsageError(f"white noise: std {target_std} is impossible for pixels in [0, 1] with mean "
                                 f"{target_mean}: it must be below sqrt(mean (1 - mean)) = {bound:.4g}")
            mu, sigma = target_mean, target_std
            for _ in range(10_000):  # MNIST's mostly black pixels take ~2,100 rounds, CIFAR's ~20
                m1, s1 = _clipped_normal_moments(mu, sigma)
                if abs(m1 - target_mean) < 1e-12 and abs(s1 - target_std) < 1e-12:
                    break
                mu, sigma = mu + target_mean - m1, sigma * target_std / s1
            else:
                raise UsageError(f"white noise: no clipped normal reaches mean {target_mean} and std {target_std} in "
                                 f"10,000 rounds: the std is within {bound - target_std:.2g} of its bound {bound:.4g} "
                                 "(pixels nearly all 0 or 1)")
            mus.append(mu), sigmas.append(sigma)
        self.mu, self.sigma = torch.tensor(mus).view(-1, 1, 1), torch.tensor(sigmas).view(-1, 1, 1)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """(len(v), C, H, W) uint8 images for the 1-d int64 virtual indices v."""
        counter = v.view(-1, 1) * self.pixels + torch.arange(self.pixels, device=v.device)
        u1 = (hash32(self.seed, counter, STREAM_PIXEL[0]).double() + 0.5) / TWO32  # in (0, 1): log is finite
        u2 = hash32(self.seed, counter, STREAM_PIXEL[1]).double() / TWO32
        z = (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).float().view(-1, *self.shape)
        x = self.mu.to(v.device) + self.sigma.to(v.device) * z
        return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)

    def paste(self, images: torch.Tensor, v: torch.Tensor, white: torch.Tensor) -> torch.Tensor:
        """A copy of the uint8 batch `images` whose rows where `white` is set are their v's white noise
        (drawn for those rows only)."""
        return images.index_put((white,), self(v[white]))
