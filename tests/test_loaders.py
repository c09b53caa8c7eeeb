"""The loaders: the FFCV backend's numba labels == torch labels, one epoch identical across backends, the FFCV
internals we rely on, the class-folder JPEG path (its .beton written once, each image with its own label), every
backend's order per epoch and seed, the corrupt-file error, and a Tune study on data.backend=ffcv."""

from __future__ import annotations

import os
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
from ffcv.pipeline.compiler import Compiler
from PIL import Image

from errors import UsageError
from loaders import backends, beton, data, datasets
from loaders.data import table_rows
from loaders.ffcv_loader import VirtualLoader
from loaders.ffcv_ops import Relabel
from loaders.noise import SOURCES, NoiseModel, NoiseSpec, uniform_distribution
from loaders.tensor import affine
from study import config
from study.trial import Trial
from tests.conftest import image_folders, trial_config
from tests.helpers import fails, launch

CPU = torch.device("cpu")
SMOKE_ARGS = ("exp=uniform_mnist", "preset=smoke", "data.download=false")


@pytest.fixture(scope="module")
def mnist(data_root: Path) -> datasets.ImageSet:
    return datasets.load("mnist", data_root, train=True)


def epoch(loader) -> Counter:
    """Multiset of (image bytes hash, label) over one epoch."""
    pairs = Counter()
    for x, y in loader:
        pairs.update(zip((hash(img.numpy().tobytes()) for img in x), y[0].tolist()))  # one member
    return pairs


def ffcv_loader(mnist, rows, noise, cache, **kw) -> VirtualLoader:
    path = beton.ensure("mnist", mnist, cache, rebuild=False, workers=2)
    return VirtualLoader(path, rows.numpy(), [noise], 128, 3, CPU, 2, mnist.mean, mnist.std, **kw)


def test_ffcv_version_is_the_pinned_one() -> None:
    assert version("ffcv") == "1.0.2"  # VirtualLoader relies on this version's internals


def test_ffcv_leaves_numbas_byte_array_type_writable(mnist, cache: Path) -> None:
    """FFCV's OS-cache manager marks numba's interned uint8[::1] type read-only for the whole process: every writable
    byte array then types as read-only, and each dispatcher compiled with it fails in its finalizer (the fast
    suite's unraisable KeyErrors, issue 23). loaders.ffcv_loader gives the cache a read-only type of its own."""
    import numba as nb

    first = nb.njit(lambda a: a[0])
    first(np.zeros(3, np.uint8))  # a dispatcher keyed by numba's interned writable uint8[::1]
    rows = datasets.stratified_subset(mnist.labels, 100, 0)
    assert len(epoch(ffcv_loader(mnist, rows, NoiseModel(NoiseSpec(1, 0), mnist.labels[rows], 10), cache))) > 0
    assert len(list(first.overloads.values())) == 1  # KeyError had the loader changed that type in place
    assert nb.typeof(np.zeros(3, np.uint8)).mutable


@pytest.mark.parametrize("seed", [0, 12345, 2**32 - 1])
@pytest.mark.parametrize("dist", ["uniform", "random"])
@pytest.mark.parametrize("source", SOURCES)
def test_numba_labels_equal_torch_labels(seed: int, dist: str, source: str) -> None:
    rng = np.random.default_rng(seed)
    m, n = 10, 1000
    matrix = uniform_distribution(m) if dist == "uniform" else rng.dirichlet(np.ones(m), size=m)
    clean = torch.from_numpy(rng.integers(0, m, n))
    pool = torch.from_numpy(rng.integers(-1 if source == "cifar100" else 0, m, 5 * n))  # cifar100: no class
    noise, other = (NoiseModel(NoiseSpec(alpha=5, seed=s, source=source), clean, m, matrix, pool_labels=pool)
                    for s in (seed, seed ^ 0x5BD1E995))  # a group of two members: their labels side by side
    v = np.arange(6 * n, dtype=np.int64)
    if source != "novel":  # beyond n_virtual, as a stress test of the hash (novel's table ends at n_virtual)
        v = np.concatenate([v, rng.integers(0, 2**62, 50_000), 2**32 + np.arange(-100, 100), 2**33 + np.arange(100)])
    source, want = noise(torch.from_numpy(v))
    relabel = Compiler.compile(Relabel([noise, other]).generate_code())  # as FFCV's pipeline compiles and calls it
    decoded = noise.rows[source.clamp(min=0)].numpy().reshape(-1, 1).copy()  # what SourceRows' decoder yields
    labels = relabel(decoded, np.empty((len(v), 2), np.int64), v)
    assert np.array_equal(labels[:, 0], want.numpy())
    assert np.array_equal(labels[:, 1], other(torch.from_numpy(v))[1].numpy())


def test_virtual_order_and_source_rows_give_each_copy_its_own_index(mnist, tmp_path: Path) -> None:
    """The FFCV internals VirtualLoader uses: with labels = row ids and no relabel, one epoch visits every
    row exactly 1+alpha times, always with that row's image; per copy only the 8-byte order is held."""
    n = 50
    small = datasets.ImageSet(mnist.images[:n], torch.arange(n), n, mnist.mean, mnist.std)
    path = beton.imageset_beton("rowids", "train", small, tmp_path, workers=1)
    noise = NoiseModel(NoiseSpec(alpha=3, seed=0), small.labels, n)
    loader = VirtualLoader(path, None, [noise], 32, 0, CPU, 1, (0.0,), (1 / 255,), relabel=False)
    ffcv = loader.loader
    assert len(ffcv.reader.metadata) == n and len(ffcv.indices) == n  # nothing per copy ...
    assert ffcv.first_traversal_order is ffcv.traversal_order.buffer and len(ffcv) == -(-4 * n // 32)  # ... but this
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        seen = Counter()
        for x, y in loader:
            assert torch.equal(x.to(torch.uint8), small.images[y[0]])
            seen.update(y[0].tolist())
        assert seen == Counter({row: 4 for row in range(n)})


def pooled(mnist: datasets.ImageSet, spec: NoiseSpec, clean: torch.Tensor) -> tuple[str, datasets.ImageSet, torch.Tensor]:
    """(name, set, table rows) as study.trial builds them; cifar100 is played by MNIST images with no class."""
    if spec.source != "cifar100":
        return "mnist", mnist, table_rows(spec, len(mnist), len(mnist), clean)
    other = mnist.subset(torch.arange(0, 60000, 97))
    full = mnist.extend(datasets.ImageSet(other.images, torch.full_like(other.labels, -1), 10, mnist.mean, mnist.std))
    return "mnist+pool", full, table_rows(spec, len(mnist), len(full), clean)


@pytest.mark.parametrize("alpha,seed,source", [(0, 0, "same"), (2, 1, "same"), (1.5, 7, "same"),
                                               (5, 2**31 + 3, "same"), (3, 4, "novel"), (2.5, 5, "white"),
                                               (4, 6, "cifar100")])
def test_one_epoch_is_identical_across_backends(mnist, cache: Path, alpha: float, seed: int, source: str) -> None:
    spec = NoiseSpec(alpha=alpha, seed=seed, source=source)
    clean = datasets.stratified_subset(mnist.labels, 300, seed)
    name, full, rows = pooled(mnist, spec, clean)
    noise = lambda: NoiseModel(spec, mnist.labels[clean], 10, pool_labels=full.labels[rows[300:]])  # noqa: E731
    data = {"dataset": "mnist", "cache": str(cache), "workers": 2}
    runs = {b: epoch(backends.make({**data, "backend": b}, name, full, rows, [noise()], 128, 3, CPU))
            for b in ("tensor", "torch", "ffcv")}
    assert sum(runs["tensor"].values()) == spec.n_virtual(300)
    assert runs["ffcv"] == runs["tensor"] == runs["torch"]


def test_ffcv_clean_fraction_and_label_histogram(mnist, cache: Path) -> None:
    n, alpha = 500, 10
    rows = datasets.stratified_subset(mnist.labels, n, 0)
    clean = mnist.labels[rows]
    scale, shift = affine(mnist.mean, mnist.std, CPU)
    truth = {hash(img.numpy().tobytes()): int(c) for img, c in zip(mnist.images[rows].float() * scale + shift, clean)}
    # Noisy labels never equal to the true class, so exactly the clean copies keep it.
    off_diagonal = (np.ones((10, 10)) - np.eye(10)) / 9
    pairs = epoch(ffcv_loader(mnist, rows, NoiseModel(NoiseSpec(alpha, 4), clean, 10, off_diagonal), cache))
    kept = sum(count for (img, label), count in pairs.items() if truth[img] == label)
    assert kept / sum(pairs.values()) == pytest.approx(1 / (1 + alpha), abs=0.5 / (n * (1 + alpha)))
    # Uniform noise: histogram = clean labels + alpha * n / 10 per class, chi-square with 9 dof, p ~ 1e-5.
    pairs = epoch(ffcv_loader(mnist, rows, NoiseModel(NoiseSpec(alpha, 4), clean, 10), cache))
    observed = np.bincount([label for (_, label), c in pairs.items() for _ in range(c)], minlength=10)
    expected = np.bincount(clean.numpy(), minlength=10) + alpha * n / 10
    assert ((observed - expected) ** 2 / expected).sum() < 37.3


def listed(folder: Path) -> list[tuple[str, int]]:
    """A split folder's (file, class) samples as ImageFolder lists them (as backends.folder_split does ImageNet's)."""
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(folder)).samples


def test_class_folder_jpeg_path(tmp_path: Path) -> None:
    folder, rng = tmp_path / "imgs", np.random.default_rng(0)
    for c in ("ant", "bee", "cat"):
        (folder / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    path = beton.folder_beton(folder, listed(folder), tmp_path / "cache", max_resolution=32, jpeg_quality=90,
                              workers=1)
    assert beton.folder_beton(folder, listed(folder), tmp_path / "cache", 32, 90) == path  # cached: not rewritten
    beton.check(path)
    from ffcv.reader import Reader

    clean = torch.from_numpy(Reader(str(path)).metadata["f1"].astype(np.int64))
    assert clean.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    noise = NoiseModel(NoiseSpec(alpha=2, seed=9), clean, 3)
    loader = VirtualLoader(path, None, [noise], 8, 0, CPU, 1, (0.5,) * 3, (0.25,) * 3, jpeg_size=24)
    labels = []
    for x, y in loader:
        assert x.shape[1:] == (3, 24, 24) and x.dtype == torch.float32
        labels += y[0].tolist()
    assert sorted(labels) == sorted(noise(torch.arange(36))[1].tolist())
    with pytest.raises(UsageError, match="jpeg_quality=0"):  # checked once, with the config: beton trusts it
        config.check_value("data.jpeg_quality", 0)


def test_bad_backend_is_one_line() -> None:
    with pytest.raises(UsageError, match=r"data.backend='gpu' is unknown: choose one of auto, tensor, ffcv, torch"):
        config.check_value("data.backend", "gpu")
    with pytest.raises(UsageError, match="data.workers=-1"):
        config.check_value("data.workers", -1)


def test_corrupt_beton_is_one_line_and_exit_2(mnist, cache: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = beton.ensure("mnist", mnist, cache, rebuild=False, workers=2)
    bad_cache = tmp_path / "cache"
    bad_cache.mkdir()
    bad = bad_cache / good.name
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UsageError) as err:
        beton.check(bad)
    assert str(err.value) == f"{bad} is truncated or corrupt: delete it or pass data.rebuild=true to write it again"
    capsys.readouterr()  # the good .beton's progress bar
    assert fails([*SMOKE_ARGS, "data.backend=ffcv", f"data.cache={bad_cache}"], capsys, tmp_path / "run") == f"error: {err.value}"


@pytest.mark.slow
def test_tune_smoke_study_on_ffcv(cache: Path, tmp_path: Path, data_root: Path) -> None:
    run = tmp_path / "run"
    result = launch(*SMOKE_ARGS, "data.backend=ffcv", f"data.cache={cache}", "grid.noise.alpha=[0,2]", "grid.model.arch=[mlp1]",
                    "grid.train.lr=[0.5]", "data.n_clean=500", "train.epochs=1", f"run_dir={run}")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = (run / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and all(",ok," in row for row in trials[1:])


def test_full_imagenet_is_read_from_folder_betons_never_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real ImageNet with data.backend=ffcv: both splits come from JPEG .betons of the class folders
    (labels from their metadata), so the in-memory folder reader is never called."""
    image_folders(tmp_path, {"train": 2, "val": 1}, hw=(20, 28))
    monkeypatch.setattr(datasets, "_folder_set", lambda *a: pytest.fail("ImageNet was loaded into memory"))
    data = {"dataset": "imagenet", "backend": "ffcv", "cache": str(tmp_path / "cache"), "workers": 2,
            "image_size": 16, "max_resolution": 24, "n_clean": 1000, "n_test": None}
    config = trial_config(tmp_path, data=data, noise={"alpha": 1.0, "seed": 3, "source": "white"},
                          model={"arch": "conv2", "conv_channels": [8, 8]}, train={"epochs": 1, "batch_size": 100})
    trial = Trial(config)
    assert backends.on_disk(config["data"]) and len(trial.loader) == 20
    seen = []
    for x, y in trial.loader:
        assert x.shape[1:] == (3, 16, 16)
        seen += y[0].tolist()
    assert sorted(seen) == sorted(trial.noise(torch.arange(2000))[1].tolist())
    assert sum(y.numel() for _, y in trial.data.test_batches()) == 1000
    reports = []
    trial.run(lambda rs: reports.append(rs[0]))
    assert len(reports) == 1 and 0 <= reports[0].test_acc <= 1


LEVELS = {"ant": 30, "bee": 130, "cat": 230}  # red channel: the class; green channel: the image within it


def solid_folders(folder: Path, per_class: int = 4) -> None:
    for c, red in LEVELS.items():
        (folder / c).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.empty((40, 48, 3), dtype=np.uint8)
            pixels[...] = (red, 20 + 50 * i, 90)
            Image.fromarray(pixels).save(folder / c / f"{i}.png")


def test_jpeg_beton_is_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "imgs"
    solid_folders(folder)
    path = beton.folder_beton(folder, listed(folder), tmp_path / "cache", 32, 90, workers=1)
    before = path.stat()
    monkeypatch.setattr(beton, "_write", lambda *a, **k: pytest.fail("the .beton was written again"))
    assert beton.folder_beton(folder, listed(folder), tmp_path / "cache", 32, 90, workers=1) == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert sorted(os.listdir(tmp_path / "cache")) == [path.name]  # no temp or second file


def test_jpeg_path_pairs_each_image_with_its_own_labels(tmp_path: Path) -> None:
    """Solid-colour images: the decoded colour says which (class, image) a sample is; with noise the
    (image, label) multiset over an epoch equals the noise model's (source row, label) multiset."""
    from loaders.ffcv_loader import VirtualLoader

    folder = tmp_path / "imgs"
    solid_folders(folder)
    path = beton.folder_beton(folder, listed(folder), tmp_path / "cache", 32, 95, workers=1)
    clean = beton.labels(path)
    assert clean.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    mean, std = (0.5,) * 3, (0.25,) * 3
    scale, shift = affine(mean, std, CPU)

    def identify(x: torch.Tensor) -> list[int]:
        """Table row (class * 4 + image) of each decoded image, from its mean colour."""
        pixels = ((x - shift) / scale).mean((2, 3))  # (B, 3) in 0..255
        red = [min(LEVELS.values(), key=lambda v: abs(v - r)) for r in pixels[:, 0].tolist()]
        image = [round((g - 20) / 50) for g in pixels[:, 1].tolist()]
        assert (pixels[:, 0] - torch.tensor(red, dtype=pixels.dtype)).abs().max() < 8
        return [sorted(LEVELS.values()).index(r) * 4 + i for r, i in zip(red, image)]

    for alpha, seed in ((0, 0), (2, 9), (3, 4)):
        noise = NoiseModel(NoiseSpec(alpha=alpha, seed=seed), clean, 3)
        loader = VirtualLoader(path, None, [noise], 8, 5, CPU, 1, mean, std, jpeg_size=24)
        seen = Counter()
        for x, y in loader:
            assert x.shape[1:] == (3, 24, 24)
            seen.update(zip(identify(x), y[0].tolist()))
        source, label = noise(torch.arange(noise.n_virtual))
        assert seen == Counter(zip(source.tolist(), label.tolist()))
        if alpha == 0:  # every image carries its own class
            assert all(label == row // 4 for row, label in seen)


@pytest.fixture(scope="module")
def small(data_root: Path) -> datasets.ImageSet:
    full = data.load_split("mnist", str(data_root), True)
    return full.subset(datasets.stratified_subset(full.labels, 300, 0))


def sequence(loader) -> list[tuple[int, int]]:
    """The epoch as (image hash, label) in the order served."""
    out = []
    for x, y in loader:
        out += zip((hash(img.numpy().tobytes()) for img in x), y[0].tolist())
    return out


@pytest.mark.parametrize("backend", ["tensor", "torch", "ffcv"])
def test_order_changes_per_epoch_and_repeats_per_seed(small: datasets.ImageSet, tmp_path_factory, backend: str) -> None:
    cache = tmp_path_factory.mktemp("beton")
    rows = torch.arange(len(small))
    spec = NoiseSpec(alpha=1.0, seed=3)

    def make(order_seed: int):
        noise = NoiseModel(spec, small.labels, 10)
        cfg = {"dataset": "mnist", "backend": backend, "cache": str(cache), "workers": 1}
        return backends.make(cfg, "mnist-small300", small, rows, [noise], 64, order_seed, CPU)

    a, b, c = make(7), make(7), make(8)
    a0 = sequence(a)
    a.set_epoch(1)
    a1 = sequence(a)
    assert len(a0) == 600 and Counter(a0) == Counter(a1)  # the same epoch content
    assert a0 != a1  # in another order
    assert sequence(b) == a0  # a fresh loader with the same seed: the same order
    b.set_epoch(1)
    assert sequence(b) == a1
    a.set_epoch(0)
    assert sequence(a) == a0  # an epoch's order depends on (seed, epoch) only
    assert sequence(c) != a0 and Counter(sequence(c)) == Counter(a0)  # another order seed
