"""Noise sources (§3.3, Fig. 6-7) and the CIFAR/ImageNet/stand-in datasets; a CIFAR-10 white-noise trial on
the real data learns above chance, its white-noise copies are noise images with uniform labels, and its clean
copies keep their images and classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from errors import UsageError
from loaders import datasets
from loaders.data import table_rows
from loaders.noise import WHITE, NoiseModel, NoiseSpec, WhiteNoise
from loaders.noise import WHITE
from loaders.tensor import TensorLoader
from study.trial import Trial
from tests.conftest import image_folders, trial_config
from tests.conftest import trial_config


CIFAR_MEAN, CIFAR_STD = datasets.STATS["cifar10"]
M = 10


def test_white_noise_matches_the_training_stats_per_channel() -> None:
    for mean, std in (datasets.STATS["cifar10"], datasets.STATS["mnist"]):
        white = WhiteNoise(0, (len(mean), 32, 32), mean, std)
        x = white(torch.arange(500)).double() / 255  # 512,000 pixels a channel: 0.004 is 9 standard errors of the mean
        channels = (0, 2, 3)
        np.testing.assert_allclose(x.mean(channels).numpy(), mean, atol=0.004)
        np.testing.assert_allclose(x.std(channels).numpy(), std, atol=0.004)


def test_white_noise_is_a_function_of_seed_and_index() -> None:
    white = WhiteNoise(3, (3, 8, 8), CIFAR_MEAN, CIFAR_STD)
    v = torch.tensor([5, 9, 5])
    x = white(v)
    assert x.dtype == torch.uint8 and x.shape == (3, 3, 8, 8)
    assert torch.equal(x[0], x[2]) and not torch.equal(x[0], x[1])
    assert torch.equal(x, white(v))
    assert not torch.equal(x, WhiteNoise(4, (3, 8, 8), CIFAR_MEAN, CIFAR_STD)(v))


def test_white_noise_loader_keeps_clean_images_and_synthesises_the_rest() -> None:
    n, alpha = 40, 3
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8)
    data = datasets.ImageSet(images, torch.arange(n) % M, M, CIFAR_MEAN, CIFAR_STD)
    noise = NoiseModel(NoiseSpec(alpha=alpha, source="white"), data.labels, M)
    source, labels = noise(torch.arange(noise.n_virtual))
    assert (source[:n] == torch.arange(n)).all() and (source[n:] == WHITE).all()
    assert torch.equal(labels[:n], data.labels)
    loader = TensorLoader(data, [noise], batch_size=noise.n_virtual, seed=0, device=torch.device("cpu"))
    x, y = next(iter(loader))
    v = loader.order()
    raw = ((x - loader.shift) / loader.scale).round().to(torch.uint8)
    assert torch.equal(raw[v < n], images[v[v < n]])
    assert torch.equal(raw[v >= n], WhiteNoise(noise.spec.seed, (3, 8, 8), CIFAR_MEAN, CIFAR_STD)(v[v >= n]))
    assert torch.equal(y[0], noise(v)[1])


def test_sources_without_a_class_get_uniform_labels() -> None:
    n, alpha = 2000, 10
    labels = torch.zeros(n, dtype=torch.int64)  # every clean image is class 0
    for source, pool in (("white", None), ("cifar100", torch.full((777,), -1))):
        model = NoiseModel(NoiseSpec(alpha=alpha, seed=1, source=source), labels, M, pool_labels=pool)
        _, noisy = model(torch.arange(n, model.n_virtual))
        freq = np.bincount(noisy.numpy(), minlength=M) / noisy.numel()
        np.testing.assert_allclose(freq, 1 / M, atol=0.005)


def test_cifar100_source_cycles_through_the_other_images() -> None:
    n, alpha, pool = 30, 10, 70
    model = NoiseModel(NoiseSpec(alpha=alpha, source="cifar100"), torch.arange(n) % M, M,
                       pool_labels=torch.full((pool,), -1))
    source, _ = model(torch.arange(model.n_virtual))
    assert (source[:n] == torch.arange(n)).all()
    noisy = source[n:]
    assert noisy.min() == n and noisy.max() == n + pool - 1
    assert (torch.bincount(noisy - n) >= (alpha * n) // pool).all()  # evenly: each used 4 or 5 times


def test_novel_images_never_repeat_and_avoid_the_clean_subset() -> None:
    labels = torch.arange(1000) % M
    clean = datasets.stratified_subset(labels, 100, seed=0)
    chosen = datasets.novel_index(1000, clean, 900, seed=3)
    assert chosen.unique().numel() == 900
    assert not np.isin(chosen.numpy(), clean.numpy()).any()
    assert torch.equal(chosen, datasets.novel_index(1000, clean, 900, seed=3))
    with pytest.raises(UsageError, match=r"noise.source=novel needs 901 .* only 900 .* at most 9"):
        datasets.novel_index(1000, clean, 901, seed=3)


def test_novel_source_gives_each_noisy_copy_its_own_unused_image() -> None:
    n_total, n, alpha = 600, 50, 8
    images = torch.arange(n_total).view(n_total, 1, 1, 1).expand(n_total, 1, 2, 2).to(torch.int64)  # image i holds i
    full = datasets.ImageSet(images, torch.arange(n_total) % M, M, (0.5,), (0.25,))
    clean = datasets.stratified_subset(full.labels, n, seed=0)
    spec = NoiseSpec(alpha=alpha, seed=2, source="novel")
    rows = table_rows(spec, n_total, n_total, clean)
    table = full.subset(rows)
    model = NoiseModel(spec, full.labels[clean], M, pool_labels=table.labels[n:])
    source, _ = model(torch.arange(model.n_virtual))
    shown = table.images[source, 0, 0, 0]  # the original training index of every example's image
    assert torch.equal(shown[:n], clean)
    noisy = shown[n:]
    assert noisy.unique().numel() == alpha * n and not np.isin(noisy.numpy(), clean.numpy()).any()
    with pytest.raises(UsageError, match="noise.source=novel needs"):
        table_rows(NoiseSpec(alpha=12, source="novel"), n_total, n_total, clean)


def test_novel_trial_on_mnist_rejects_too_much_noise(data_root: Path) -> None:
    config = trial_config(data_root, data={"n_clean": 2500}, noise={"alpha": 24, "source": "novel"})
    with pytest.raises(UsageError, match=r"57500 lie outside the 2500 clean ones: lower noise.alpha to at most 23"):
        Trial(config)


@pytest.fixture(scope="module")
def cifar10(data_root: Path) -> tuple[datasets.ImageSet, datasets.ImageSet]:
    if not (data_root / "cifar10.npz").is_file():
        pytest.skip(f"no cifar10.npz under {data_root}")
    return datasets.load("cifar10", data_root, True), datasets.load("cifar10", data_root, False)


def test_cifar10_npz_is_read_in_the_original_order(cifar10: tuple[datasets.ImageSet, datasets.ImageSet]) -> None:
    train, test = cifar10
    assert train.images.shape == (50000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (10000, 3, 32, 32) and train.num_classes == 10
    # Known values from ../shared/datasets/SOURCES.md (the original data_batch_1 / test_batch).
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert train.images[0].flatten()[:3].tolist() == [59, 43, 50]
    assert train.images[0].flatten()[-3:].tolist() == [140, 84, 72]
    assert train.images[2].flatten()[:3].tolist() == [255, 253, 253]
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert tuple(train.mean) == CIFAR_MEAN


def test_cifar10_white_noise_trial_runs(data_root: Path, cifar10: tuple) -> None:
    config = trial_config(data_root, data={"dataset": "cifar10", "n_clean": 200, "n_test": 200},
                          noise={"alpha": 1, "source": "white"}, train={"epochs": 1},
                          model={"conv_channels": [4, 4]})
    (report,) = Trial(config).run(lambda r: None)
    assert report.epoch == 1 and 0 <= report.test_acc <= 1


def test_absent_dataset_uses_a_stand_in_only_when_allowed(tmp_path: Path) -> None:
    assert datasets.ensure_available("cifar100", tmp_path, download=False, stand_in=True) is True
    with pytest.raises(UsageError, match=rf"CIFAR-100 not found under {tmp_path} and data.download=false.*preset=smoke"):
        datasets.ensure_available("cifar100", tmp_path, download=False)
    with pytest.raises(UsageError, match="MNIST not found"):
        datasets.ensure_available("mnist", tmp_path, download=False, stand_in=True)  # never a stand-in
    with pytest.raises(UsageError, match="ImageNet not found"):
        datasets.load("imagenet", tmp_path, True)
    stand_in = datasets.load("cifar100", tmp_path, True, stand_in=True)
    assert stand_in.images.shape[1:] == (3, 32, 32) and stand_in.num_classes == 100
    assert torch.bincount(stand_in.labels).tolist() == [len(stand_in) // 100] * 100
    again = datasets.load("cifar100", tmp_path, True, stand_in=True)
    assert torch.equal(stand_in.images, again.images)
    small = datasets.load("imagenet", tmp_path, False, stand_in=True, image_size=16)
    assert small.images.shape[1:] == (3, 16, 16) and small.num_classes == 1000


def test_imagenet_class_folders_load_small_trees_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image_folders(tmp_path, {"train": 1, "val": 1})
    assert datasets.present("imagenet", tmp_path)
    data = datasets.load("imagenet", tmp_path, False, image_size=8)
    assert data.images.shape == (1000, 3, 8, 8) and data.labels[:3].tolist() == [0, 1, 2]
    monkeypatch.setattr(datasets, "FOLDER_MAX_IMAGES", 999)
    with pytest.raises(UsageError, match="holds 1000 images.*at most 999.*data.backend=ffcv or auto"):
        datasets.load("imagenet", tmp_path, True, image_size=8)


def white_config(cifar10_root: Path, epochs: int = 2) -> dict:
    return trial_config(cifar10_root, data={"dataset": "cifar10", "n_clean": 2000, "n_test": 1000},
                        noise={"alpha": 1, "source": "white", "seed": 3},
                        train={"epochs": epochs, "batch_size": 64, "lr": 0.1},
                        model={"arch": "mlp1", "mlp_hidden": 64})


def test_white_noise_copies_have_uniform_labels_and_noise_images(cifar10_root: Path) -> None:
    trial = Trial(white_config(cifar10_root, 1))
    noise = trial.noise
    source, labels = noise(torch.arange(noise.n_virtual))
    white = source == WHITE
    assert int(white.sum()) == 2000 and torch.equal(source[~white].sort().values, torch.arange(2000))
    # clean copies: their own class; white copies: uniform over the 10 classes (chi-square, 9 dof, p ~ 1e-5)
    assert torch.equal(labels[~white], noise.rows[source[~white]])
    counts = np.bincount(labels[white].numpy(), minlength=M)
    assert ((counts - 200) ** 2 / 200).sum() < 37.3
    # ... and carry no class: they agree with the clean label of any fixed image no more than chance
    assert (labels[white] == noise.rows[torch.arange(noise.n_virtual)[white] % 2000]).float().mean() < 0.2
    # In the loader: white copies are fresh noise images (distinct, not CIFAR images, at the training
    # stats: about N(0, 1) per channel once normalised); clean copies are exactly the clean images.
    v = trial.loader.order()
    x = torch.cat([x for x, _ in trial.loader])
    is_white = noise.source(v) == WHITE
    key = lambda t: t.numpy().tobytes()  # noqa: E731
    clean = {key(img) for img in x[~is_white]}
    noise_images = [key(img) for img in x[is_white]]
    assert len(clean) == 2000 and len(set(noise_images)) == 2000 and not clean & set(noise_images)
    pixels = x[is_white].transpose(0, 1).flatten(1)  # (3, pixels)
    assert pixels.mean(1).abs().max() < 0.05 and (pixels.std(1) - 1).abs().max() < 0.05

def test_white_noise_trial_learns_above_chance(cifar10_root: Path) -> None:
    torch.set_num_threads(2)
    reports = []
    Trial(white_config(cifar10_root)).run(lambda rs: reports.append(rs[0]))
    best = max(r.test_acc for r in reports)
    assert best >= 0.25, reports  # chance is 0.10 (1000 test images: sd 0.01); measured 0.36
    assert reports[-1].test_top5 >= 0.65, reports  # chance 0.5; measured 0.83
