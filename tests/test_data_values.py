"""loaders.data by exact values, fast (no FFCV, no training, no real dataset read, no network).

Covers: noise_spec's default confusion path; check (the launcher's preflight of a trial's data and noise) with its
one-line messages word for word at every range edge (the confusion artifact and the command that makes it, the
cifar100 source, an unreadable data.root, data.n_val, data.n_clean and data.n_test against the real, stand-in and
folder splits, noise.labels, noise.matrix, noise.source=novel, an ImageNet tree that returns early, clean_only);
check_val's edge; data_key; split_args; table_rows for every source; table_votes (the annotations of the table's
images, their matrix, an image without one); clean_and_val (disjointness and exact sizes of the clean, validation
and novel images at CIFAR-10's proportions); build through _in_memory (data.backend=tensor: the loader's images and
labels over an epoch, the test and validation batches and their device, each member's noise model and
distribution, clean_only, the .beton's name) and through _from_folders.

Stand-ins, all built in tmp_path: a tiny cifar10.npz / cifar100.npz (image i of a split has every pixel equal to i,
so a batch names its images) and a tiny CIFAR-10_human.pt whose annotations are known per image; a 3-class PNG tree
(conftest.image_folders) for data.dataset=folder; XDG_CACHE_HOME pointed into tmp_path, so the default confusion
path is known; the meta device standing in for a GPU (a batch left on the CPU shows); datasets.STAND_IN_SIZE["cifar10"] patched
small, so the generated stand-in takes milliseconds. Replaced by recorders
(monkeypatch): torch.hub.download_url_to_file (refuses, never touches the network: the data.download=true branch
of a missing CIFAR-10N file); datasets.present (raises PermissionError: a root one may not read, which root,
running these tests, never meets); backends.folder_split and backends.folder_loader in _from_folders (the real
ones write JPEG .betons and run FFCV: slow), which note their arguments and yield the rows they were given with
every noise model's labels; loaders.beton (its ensure notes the .beton's name and images) and
backends.import_ffcv (a VirtualLoader that returns its arguments) for data.backend=ffcv, as importing FFCV alone
takes seconds.
"""

from __future__ import annotations

import errno
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from errors import UsageError
import loaders
from loaders import annotations, backends, data, datasets, folder
from loaders.noise import NoiseModel, NoiseSpec, distribution, uniform_distribution
from loaders.tensor import TensorLoader, affine
from tests.conftest import image_folders

CPU = torch.device("cpu")
MEAN, STD = datasets.STATS["cifar10"]
N_TRAIN, N_TEST, N_POOL = 60, 200, 7  # the tiny cifar10.npz's splits and cifar100.npz's training images
HUMAN_URL = annotations.CIFAR10N_URL


# ---------------------------------------------------------------------------------------------- small stand-ins


def section(root: Path, **keys: Any) -> dict[str, Any]:
    """A whole data section (every key study.config.Data declares, at its default but the tensor backend), then keys."""
    return {"dataset": "cifar10", "root": str(root), "path": None, "download": False, "n_clean": None, "n_test": None,
            "n_val": 0, "subset_seed": 0, "order_seed": 0, "stand_in": False, "image_size": 224, "backend": "tensor",
            "cache": None, "rebuild": False, "workers": None, "max_resolution": 256, "jpeg_quality": 90, **keys}


def annotation(i: int) -> int:
    """Training image i's one CIFAR-10N label in the stand-in: one class past its own (class i % 10), two past for
    images 10-19, 30-39 and 50-59, so half of each class's images get each of two labels."""
    return (i % 10 + 1 + (i // 10) % 2) % 10


def write_human(root: Path, n: int) -> None:
    """root/CIFAR-10_human.pt for n training images: every annotator column gives image i annotation(i)."""
    votes = np.array([annotation(i) for i in range(n)])
    columns = ("random_label1", "random_label2", "random_label3", "worse_label", "aggre_label")
    torch.save({"clean_label": np.arange(n) % 10, **dict.fromkeys(columns, votes)}, root / annotations.CIFAR10N_FILE)


def flat_images(n: int, first: int) -> np.ndarray:
    """n 32x32 RGB images (NHWC, as the .npz holds them), image i flat at pixel value first + i."""
    return np.broadcast_to((first + np.arange(n)).astype(np.uint8)[:, None, None, None], (n, 32, 32, 3)).copy()


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with a 60/200-image cifar10.npz (labels i % 10), a 7/3-image cifar100.npz and its CIFAR-10N file."""
    root = tmp_path_factory.mktemp("cifar")
    np.savez(root / "cifar10.npz", x_train=flat_images(N_TRAIN, 0), y_train=np.arange(N_TRAIN) % 10,
             x_test=flat_images(N_TEST, 0), y_test=np.arange(N_TEST) % 10)
    np.savez(root / "cifar100.npz", x_train=flat_images(N_POOL, 210), y_train=np.arange(N_POOL) * 13,
             x_test=flat_images(3, 240), y_test=np.arange(3))
    write_human(root, N_TRAIN)
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-folder tree (data.dataset=folder): 3 classes, 4 training and 2 test PNGs each."""
    root = tmp_path_factory.mktemp("tree")
    image_folders(root, {"train": 4, "val": 2}, classes=3, hw=(4, 4))
    return root / "imagenet"


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The user cache dir inside tmp_path (the default confusion path), and no split or annotation file cached by
    another test: each test reads its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for cached in (data.load_split, data.table_source, annotations.cifar10n, folder.scan):
        cached.cache_clear()
    yield


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """torch.hub.download_url_to_file refusing (as it does offline); the URLs it was asked for."""
    asked: list[str] = []

    def refuse(url: str, dst: str, progress: bool = True) -> None:
        asked.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return asked


def confusion_at(path: Path) -> Path:
    """A (10, 10) confusion matrix at path (distinct entries: one wrong-class order per class)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.arange(100).reshape(10, 10))
    return path


def refused(data_section: dict[str, Any], noise: dict[str, Any]) -> str:
    """The one line data.check (clean_only left at its default) refuses these sections with."""
    with pytest.raises(UsageError) as err:
        data.check(data_section, noise)
    return str(err.value)


def pixel_ids(x: torch.Tensor) -> list[int]:
    """Which image each normalised row of x is (a stand-in image is flat at its own index)."""
    scale, shift = affine(MEAN, STD, x.device)
    return ((x - shift) / scale).round()[:, 0, 0, 0].long().tolist()


def raw_ids(images: torch.Tensor) -> list[int]:
    """Which image each uint8 row is (its first pixel)."""
    return images[:, 0, 0, 0].tolist()


def epoch_pairs(loader: TensorLoader) -> list[list[tuple[int, int]]]:
    """Per member, one epoch's (image, label) pairs, sorted."""
    xs, ys = zip(*loader)
    ids, labels = pixel_ids(torch.cat(xs)), torch.cat(ys, dim=1)
    return [sorted(zip(ids, row.tolist())) for row in labels]


# ---------------------------------------------------------------------------------------------- noise_spec


def test_noise_spec_defaults_the_confusion_path_to_the_user_cache_and_keeps_a_given_one(tmp_path: Path) -> None:
    default = tmp_path / "cache" / "label-noise-study" / "confusion" / "cifar10.npy"
    assert data.noise_spec({"alpha": 2.5, "seed": 3}, "cifar10") == NoiseSpec(alpha=2.5, seed=3, confusion=str(default))
    assert data.noise_spec({"confusion": ""}, "mnist").confusion == str(default.with_name("mnist.npy"))  # "" as null
    assert data.noise_spec({"confusion": "/elsewhere/c.npy", "delta": 0.1}, "mnist") == NoiseSpec(
        delta=0.1, confusion="/elsewhere/c.npy")


# ---------------------------------------------------------------------------------------------- check: noise


@pytest.mark.parametrize("dataset, order, given, command", [
    ("mnist", "confusing", None, "python -m study.launch exp=confusion"),
    ("cifar10", "reverse", None, "python -m study.launch exp=confusion data.dataset=cifar10"),
    ("mnist", "reverse", "mine.npy", "python -m study.launch exp=confusion noise.confusion={path}"),
    ("cifar10", "confusing", "mine.npy", "python -m study.launch exp=confusion data.dataset=cifar10 noise.confusion={path}"),
])
def test_check_names_the_command_that_makes_a_missing_confusion_matrix(dataset: str, order: str, given: str | None,
                                                                      command: str, tmp_path: Path) -> None:
    # the dataset is named unless it is the default (mnist), the path unless it is where exp=confusion writes
    path = tmp_path / given if given else tmp_path / "cache" / "label-noise-study" / "confusion" / f"{dataset}.npy"
    noise = {"alpha": 5, "delta": 0.5, "order": order, **({"confusion": str(path)} if given else {})}
    assert refused(section(tmp_path, dataset=dataset), noise) == (
        f"noise.order={order} needs the confusion matrix {path}, which does not exist: make it with "
        f"`{command.format(path=path)}`")


def test_check_needs_no_confusion_matrix_for_uniform_or_random_noise_and_reads_one_that_exists(tmp_path: Path) -> None:
    d = section(tmp_path, dataset="mnist")
    data.check(d, {"alpha": 5, "delta": 0.0, "order": "confusing"})  # delta 0: uniform noise, no order
    data.check(d, {"alpha": 5, "delta": 0.5, "order": "random"})  # a seeded order
    confusion_at(tmp_path / "cache" / "label-noise-study" / "confusion" / "mnist.npy")
    data.check(d, {"alpha": 5, "delta": 0.5, "order": "confusing"})  # the artifact exp=confusion wrote


def test_check_refuses_an_infeasible_delta(tmp_path: Path) -> None:
    # delta <= alpha / m: 0.2 fits alpha 2 over 10 classes, 0.21 does not
    d = section(tmp_path, dataset="mnist")
    data.check(d, {"alpha": 2, "delta": 0.2, "order": "random"})
    assert refused(d, {"alpha": 2, "delta": 0.21, "order": "random"}) == (
        "noise.delta=0.21 with noise.alpha=2 and 10 classes would give the least likely wrong class a negative "
        "probability: delta must be in [0, alpha/m = 0.2]")


def test_check_takes_cifar100_images_for_cifar10_only(tmp_path: Path) -> None:
    data.check(section(tmp_path, stand_in=True), {"alpha": 3, "source": "cifar100"})
    assert refused(section(tmp_path, dataset="mnist"), {"alpha": 3, "source": "cifar100"}) == (
        "noise.source='cifar100' is invalid: it must be same, novel or white with data.dataset=mnist (CIFAR-100's "
        "images have the shape of data.dataset=cifar10 only)")
    data.check(section(tmp_path, dataset="mnist"), {"alpha": 3, "source": "white"})


def test_check_names_a_root_one_may_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, asked = tmp_path / "locked", []

    def denied(name: str, where: Path) -> bool:  # what a stat under a folder without read permission raises
        asked.append((name, where))
        raise PermissionError(errno.EACCES, "Permission denied", str(where / "MNIST"))

    monkeypatch.setattr(datasets, "present", denied)
    assert refused(section(root, dataset="mnist"), {}) == (
        f"data.root={str(root)!r} is invalid: it must be a folder you may read (Permission denied: {root / 'MNIST'})")
    assert asked == [("mnist", root)]


# ---------------------------------------------------------------------------------------------- check: sizes


@pytest.mark.parametrize("keys, line", [
    ({"n_clean": 60_000, "n_test": 10_000}, None),
    ({"n_clean": 60_001}, "data.n_clean=60001 is invalid: it must be an integer in [1, 60000] (the mnist training split)"),
    ({"n_clean": 0}, "data.n_clean=0 is invalid: it must be an integer in [1, 60000] (the mnist training split)"),
    ({"n_test": 10_001}, "data.n_test=10001 is invalid: it must be an integer in [1, 10000] (the mnist test split)"),
    ({"n_val": 59_999, "n_clean": 1}, None),
    ({"n_val": 60_000}, "data.n_val=60000 is invalid: it must be an integer in [0, 59999] (the mnist training split, "
                        "leaving one image to train on)"),
    ({"n_val": 5000, "n_clean": 55_000}, None),
    ({"n_val": 5000, "n_clean": 55_001}, "data.n_clean=55001 is invalid: it must be an integer in [1, 55000] (the "
                                         "mnist training split, less the 5000 held out by data.n_val)"),
    ({"n_val": None, "n_clean": 60_000}, None),  # null n_val: none held out
])
def test_check_sizes_against_mnist_at_each_edge(keys: dict[str, Any], line: str | None, tmp_path: Path) -> None:
    # MNIST's splits are known without reading it: an empty root is never called a stand-in
    d = section(tmp_path, dataset="mnist", **keys)
    if line is None:
        data.check(d, {})
    else:
        assert refused(d, {}) == line


@pytest.mark.parametrize("keys, line", [
    ({"n_clean": 5000, "n_test": 2000, "n_val": 0}, None),
    ({"n_clean": 5001}, "data.n_clean=5001 is invalid: it must be an integer in [1, 5000] (the stand-in cifar10 "
                        "training split)"),
    ({"n_test": 2001}, "data.n_test=2001 is invalid: it must be an integer in [1, 2000] (the stand-in cifar10 test split)"),
    ({"n_val": 5000}, "data.n_val=5000 is invalid: it must be an integer in [0, 4999] (the stand-in cifar10 training "
                      "split, leaving one image to train on)"),
])
def test_check_sizes_against_the_stand_in(keys: dict[str, Any], line: str | None, tmp_path: Path) -> None:
    d = section(tmp_path, stand_in=True, **keys)
    if line is None:
        data.check(d, {})
    else:
        assert refused(d, {}) == line


def test_check_sizes_against_the_real_cifar10_splits_when_no_stand_in_is_allowed(tmp_path: Path) -> None:
    assert refused(section(tmp_path, n_clean=50_001), {}) == (
        "data.n_clean=50001 is invalid: it must be an integer in [1, 50000] (the cifar10 training split)")
    assert refused(section(tmp_path, n_test=10_001), {}) == (
        "data.n_test=10001 is invalid: it must be an integer in [1, 10000] (the cifar10 test split)")


def test_check_sizes_against_a_folder_tree(shapes: Path, tmp_path: Path) -> None:
    d = section(tmp_path, dataset="folder", path=str(shapes), n_clean=12, n_test=6, n_val=0)
    data.check(d, {"alpha": 1})
    assert refused({**d, "n_clean": 13}, {}) == (
        "data.n_clean=13 is invalid: it must be an integer in [1, 12] (the folder training split)")
    assert refused({**d, "n_test": 7}, {}) == "data.n_test=7 is invalid: it must be an integer in [1, 6] (the folder test split)"
    assert refused({**d, "n_val": 2, "n_clean": 11}, {}) == (
        "data.n_clean=11 is invalid: it must be an integer in [1, 10] (the folder training split, less the 2 held out "
        "by data.n_val)")


def test_check_leaves_an_imagenet_tree_to_build(tmp_path: Path) -> None:
    # its size is known only once listed: any n_clean passes here, the noise is still checked
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    (tmp_path / "imagenet" / "val").mkdir()
    d = section(tmp_path, dataset="imagenet", n_clean=10**9, n_test=10**9, n_val=10**9)
    data.check(d, {"alpha": 1, "source": "novel"})
    assert refused(d, {"alpha": 1, "delta": 0.01, "order": "random"}).startswith("noise.delta=0.01 with noise.alpha=1 "
                                                                               "and 1000 classes")


# ---------------------------------------------------------------------------------------------- check: novel


@pytest.mark.parametrize("keys, alpha, line", [
    ({"n_clean": 500}, 119, None),
    ({"n_clean": 500}, 120, "noise.alpha=120 is invalid: noise.source=novel needs 60000 unused training images "
                            "(n_clean x alpha) but only 59500 lie outside the 500 clean ones: lower noise.alpha to at "
                            "most 119 or data.n_clean"),
    ({"n_clean": 2000, "n_val": 8000}, 25, None),
    ({"n_clean": 2000, "n_val": 8000}, 25.0005, "noise.alpha=25.0005 is invalid: noise.source=novel needs 50001 unused "
     "training images (n_clean x alpha) but only 50000 lie outside the 2000 clean ones and the 8000 validation ones: "
     "lower noise.alpha to at most 25 or data.n_clean"),
    ({"n_clean": None, "n_val": 8000}, 0, None),  # every image not held out is clean: none left, none needed
    ({"n_clean": None, "n_val": 8000}, 1e-5, "noise.alpha=1e-05 is invalid: noise.source=novel needs 1 unused training "
     "images (n_clean x alpha) but only 0 lie outside the 52000 clean ones and the 8000 validation ones: lower "
     "noise.alpha to at most 0 or data.n_clean"),
])
def test_check_counts_the_unused_images_novel_noise_takes(keys: dict[str, Any], alpha: float, line: str | None,
                                                          tmp_path: Path) -> None:
    d, noise = section(tmp_path, dataset="mnist", **keys), {"alpha": alpha, "source": "novel"}
    if line is None:
        data.check(d, noise)
    else:
        assert refused(d, noise) == line
        data.check(d, noise, clean_only=True)  # H_alpha trains on the clean images alone


def test_check_counts_no_unused_images_for_other_sources(tmp_path: Path) -> None:
    # 100 copies of 1000 clean images need 100,000 images only when each is a new one
    data.check(section(tmp_path, dataset="mnist", n_clean=1000), {"alpha": 100, "source": "same"})


# ---------------------------------------------------------------------------------------------- check: labels, matrix


def test_check_reads_noise_labels_against_the_training_split(tmp_path: Path) -> None:
    write_human(tmp_path, 5000)  # the stand-in cifar10's 5,000 training images, one annotation row each
    d = section(tmp_path, stand_in=True)
    data.check(d, {"alpha": 1, "labels": "cifar10n:random"})
    data.check(d, {"alpha": 1, "matrix": "cifar10n:aggre"})
    np.save(tmp_path / "short.npy", np.zeros((3, 2), np.int64))
    short = {"alpha": 1, "labels": str(tmp_path / "short.npy")}
    assert refused(d, short) == (
        f"noise.labels={str(tmp_path / 'short.npy')!r} is invalid: it must be one row per training image, in their "
        "original order (it holds annotations for 3 images, but the training split has 5000)")
    data.check(d, short, clean_only=True)  # H_alpha draws no label from the annotations


@pytest.mark.parametrize("key", ["labels", "matrix"])
def test_check_downloads_cifar10n_only_when_allowed(key: str, tmp_path: Path, offline: list[str]) -> None:
    # data.download is handed on: true asks the network (refused here), false names the missing file
    path = tmp_path / annotations.CIFAR10N_FILE
    noise = {"alpha": 1, key: "cifar10n:worst"}
    assert refused(section(tmp_path, stand_in=True, download=True), noise) == (
        f"CIFAR-10N annotations not found at {path} and the download from {HUMAN_URL} failed (OSError): put "
        f"{annotations.CIFAR10N_FILE} there or point data.root at it")
    assert offline == [HUMAN_URL]
    assert refused(section(tmp_path, stand_in=True, download=False), noise) == (
        f"CIFAR-10N annotations not found at {path}: put {annotations.CIFAR10N_FILE} there (from {HUMAN_URL}), point "
        "data.root at its folder, or allow data.download=true")
    assert offline == [HUMAN_URL]


# ---------------------------------------------------------------------------------------------- small helpers


def test_check_val_leaves_one_training_image() -> None:
    data.check_val(0, 1)
    data.check_val(4, 5)
    with pytest.raises(UsageError) as err:
        data.check_val(5, 5)
    assert str(err.value) == "data.n_val=5 is invalid: it must be an integer in [0, 4]"
    with pytest.raises(UsageError) as err:
        data.check_val(7, 5, " (here)")
    assert str(err.value) == "data.n_val=7 is invalid: it must be an integer in [0, 4] (here)"


def test_data_key_lists_the_keys_that_choose_the_images_in_order() -> None:
    d = {"cache": "/c", "path": "/p", "image_size": 64, "stand_in": True, "root": "/r", "dataset": "folder", "n_clean": 9}
    assert data.data_key(d) == (("dataset", "folder"), ("root", "/r"), ("stand_in", True), ("image_size", 64),
                                ("path", "/p"), ("cache", "/c"))
    assert data.data_key({}) == tuple((k, None) for k in ("dataset", "root", "stand_in", "image_size", "path", "cache"))


def test_split_args_with_and_without_the_keys() -> None:
    assert data.split_args({"stand_in": True, "image_size": 64, "path": "/p", "cache": "/c"}) == (True, 64, "/p", "/c")
    stand_in, size, path, cache = data.split_args({})
    assert (stand_in, size, path, cache) == (False, 224, None, None) and stand_in is False


# ---------------------------------------------------------------------------------------------- table_rows


def test_table_rows_per_source() -> None:
    clean = torch.tensor([1, 4, 7])
    for source in ("same", "white"):  # the clean images alone: copies reuse them or are synthesised
        assert data.table_rows(NoiseSpec(alpha=2, source=source), 10, 10, clean).tolist() == [1, 4, 7]
    # cifar100: every pool image, after the 10 training images
    assert data.table_rows(NoiseSpec(alpha=2, source="cifar100"), 10, 13, clean).tolist() == [1, 4, 7, 10, 11, 12]


def test_table_rows_novel_takes_one_unused_image_per_copy_never_a_validation_one() -> None:
    clean, val = torch.tensor([1, 4, 7]), torch.tensor([0, 2, 5, 9])
    rows = data.table_rows(NoiseSpec(alpha=1, seed=3, source="novel"), 10, 10, clean, val)
    # 3 copies, and exactly 3 images neither clean nor held out: 3, 6, 8 in a seeded order
    assert rows[:3].tolist() == [1, 4, 7] and sorted(rows[3:].tolist()) == [3, 6, 8]
    assert torch.equal(rows[3:], datasets.novel_index(10, clean, 3, 3, val))
    assert data.table_rows(NoiseSpec(alpha=0.5, seed=3, source="novel"), 10, 10, clean, val).numel() == 3 + 2  # round(1.5)
    with pytest.raises(UsageError, match=r"^noise.source=novel needs 4 unused training images .* only 3 lie outside the "
                                         r"3 clean ones and the 4 validation ones"):
        data.table_rows(NoiseSpec(alpha=4 / 3, source="novel"), 10, 10, clean, val)


# ---------------------------------------------------------------------------------------------- table_votes


def votes_csv(path: Path) -> str:
    """Annotations of 6 training images (classes 0 1 2 0 1 2): image 0 (1, 2), 1 (1), 2 (0), 3 none, 4 (2, 2, 0), 5 (1)."""
    path.write_text("index,label\n0,1\n4,2\n1,1\n0,2\n2,0\n4,2\n5,1\n4,0\n")
    return str(path)


def test_table_votes_keeps_each_table_image_its_own_annotations_and_their_matrix(tmp_path: Path) -> None:
    spec = NoiseSpec(alpha=1, labels=votes_csv(tmp_path / "v.csv"))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    (votes, counts), matrix = data.table_votes(spec, {"root": tmp_path}, labels, torch.tensor([4, 1, 5, 0]), 3)
    assert votes.tolist() == [[2, 2, 0], [1, -1, -1], [1, -1, -1], [1, 2, -1]] and counts.tolist() == [3, 1, 1, 2]
    # class 0: image 0's (1, 2); class 1: images 4 and 1, (2, 2, 0, 1); class 2: image 5's (1)
    np.testing.assert_allclose(matrix, [[0, 0.5, 0.5], [0.25, 0.25, 0.5], [0, 1, 0]], rtol=0, atol=1e-15)
    assert data.table_votes(NoiseSpec(alpha=1), {}, labels, torch.tensor([0]), 3) == (None, None)


def test_table_votes_names_the_first_table_image_without_an_annotation(tmp_path: Path) -> None:
    path = votes_csv(tmp_path / "v.csv")
    with pytest.raises(UsageError) as err:  # images 2 and 1 have one annotation each, image 3 none
        data.table_votes(NoiseSpec(labels=path), {"root": tmp_path}, torch.tensor([0, 1, 2, 0, 1, 2]),
                         torch.tensor([2, 1, 3, 0]), 3)
    assert str(err.value) == (f"noise.labels={path} gives no annotation for training image 3: every image trained on "
                              "needs at least one")


def test_table_votes_reads_cifar10n_under_the_data_root(cifar: Path) -> None:
    (votes, counts), matrix = data.table_votes(NoiseSpec(alpha=1, labels="cifar10n:random"), {"root": cifar},
                                               torch.arange(N_TRAIN) % 10, torch.tensor([3, 13]), 10)
    assert votes.tolist() == [[4, 4, 4], [5, 5, 5]] and counts.tolist() == [3, 3]
    assert matrix[3].tolist() == [0, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0]  # class 3: image 3 gives 4, image 13 gives 5


def test_table_votes_downloads_only_when_allowed(tmp_path: Path, offline: list[str]) -> None:
    spec, labels, rows = NoiseSpec(labels="cifar10n:random"), torch.arange(4) % 10, torch.tensor([0])
    path = tmp_path / annotations.CIFAR10N_FILE
    for d in ({"root": tmp_path}, {"root": tmp_path, "download": False}):  # no data.download: no download
        with pytest.raises(UsageError, match=r"allow data.download=true$"):
            data.table_votes(spec, d, labels, rows, 10)
    assert offline == []
    with pytest.raises(UsageError) as err:
        data.table_votes(spec, {"root": tmp_path, "download": True}, labels, rows, 10)
    assert str(err.value).startswith(f"CIFAR-10N annotations not found at {path} and the download from {HUMAN_URL} failed")
    assert offline == [HUMAN_URL]


# ---------------------------------------------------------------------------------------------- clean_and_val


def test_clean_and_val_without_a_validation_split() -> None:
    labels = torch.arange(40) % 4
    for d in ({"n_clean": 12, "subset_seed": 5}, {"n_clean": 12, "subset_seed": 5, "n_val": 0},
              {"n_clean": 12, "subset_seed": 5, "n_val": None}):
        clean, val = data.clean_and_val(labels, d)
        assert val is None and torch.equal(clean, datasets.stratified_subset(labels, 12, 5))
    clean, val = data.clean_and_val(labels, {"n_clean": None, "subset_seed": 5})
    assert clean.tolist() == list(range(40)) and val is None


def test_clean_and_val_carves_the_validation_split_out_first() -> None:
    labels = torch.arange(40) % 4
    clean, val = data.clean_and_val(labels, {"n_clean": 8, "n_val": 12, "subset_seed": 5})
    assert torch.equal(val, datasets.stratified_subset(labels, 12, 5 + 7919))  # seeded apart from the clean subset
    rest = torch.tensor(sorted(set(range(40)) - set(val.tolist())))
    assert torch.equal(clean, rest[datasets.stratified_subset(labels[rest], 8, 5)])
    assert torch.bincount(labels[val]).tolist() == [3] * 4 and torch.bincount(labels[clean]).tolist() == [2] * 4
    everything, _ = data.clean_and_val(labels, {"n_clean": None, "n_val": 12, "subset_seed": 5})
    assert torch.equal(everything, rest)  # n_clean null: every image not held out, in order


def test_clean_and_val_refuses_what_leaves_nothing_to_train_on() -> None:
    labels = torch.arange(6) % 3
    with pytest.raises(UsageError) as err:
        data.clean_and_val(labels, {"n_clean": 1, "n_val": 6, "subset_seed": 0})
    assert str(err.value) == "data.n_val=6 is invalid: it must be an integer in [0, 5]"
    for n_val, n in ((0, 6), (2, 4)):  # the clean subset is drawn from what the validation split leaves
        with pytest.raises(UsageError) as err:
            data.clean_and_val(labels, {"n_clean": n + 1, "n_val": n_val, "subset_seed": 0})
        assert str(err.value) == f"data.n_clean={n + 1} is invalid: it must be an integer in [1, {n}]"


def test_clean_validation_and_novel_images_at_cifar10_proportions() -> None:
    """CIFAR-10's 50,000 training images: 5,000 held out, 5,000 clean and 8 novel images per clean one use every image
    once; a 40,001st novel image is refused."""
    labels = torch.arange(50_000) % 10
    clean, val = data.clean_and_val(labels, {"n_clean": 5000, "n_val": 5000, "subset_seed": 1})
    assert torch.bincount(labels[clean]).tolist() == [500] * 10 == torch.bincount(labels[val]).tolist()
    rows = data.table_rows(NoiseSpec(alpha=8, seed=2, source="novel"), 50_000, 50_000, clean, val)
    assert rows.numel() == 45_000 and torch.equal(rows[:5000], clean)
    assert torch.equal(torch.cat([rows, val]).sort().values, torch.arange(50_000))  # disjoint, together every image
    with pytest.raises(UsageError, match=r"needs 40001 unused training images \(n_clean x alpha\) but only 40000 lie "
                                         r"outside the 5000 clean ones and the 5000 validation ones"):
        data.table_rows(NoiseSpec(alpha=8.0002, seed=2, source="novel"), 50_000, 50_000, clean, val)


# ---------------------------------------------------------------------------------------------- build: in memory


def test_build_same_source_members_draw_from_each_images_own_annotations(cifar: Path) -> None:
    d = section(cifar, n_test=100, subset_seed=1)
    noises = [{"alpha": 1, "seed": 5, "labels": "cifar10n:random"}, {"alpha": 1, "seed": 6, "labels": "cifar10n:random"}]
    built = data.build(d, noises, CPU, 16, 3)
    assert built.shape == (3, 32, 32) and built.num_classes == 10
    # class c: images c, c+20, c+40 annotated c+1, images c+10, c+30, c+50 annotated c+2
    want = np.zeros((10, 10))
    for c in range(10):
        want[c, (c + 1) % 10] = want[c, (c + 2) % 10] = 0.5
    assert len(built.distributions) == 2 and all(np.array_equal(dist, want) for dist in built.distributions)
    assert [(n.spec.seed, n.n, n.n_virtual) for n in built.noises] == [(5, 60, 120), (6, 60, 120)]
    assert built.noises[0].votes[0].tolist() == [[annotation(i)] * 3 for i in range(N_TRAIN)]
    loader = built.loader
    assert isinstance(loader, TensorLoader) and len(loader) == 8 and loader.seed == 3 and loader.device == CPU
    assert loader.noises == built.noises and raw_ids(loader.images) == list(range(N_TRAIN))
    pairs = sorted([(i, i % 10) for i in range(N_TRAIN)] + [(i, annotation(i)) for i in range(N_TRAIN)])
    assert epoch_pairs(loader) == [pairs, pairs]  # a clean copy and a copy with the image's one annotation
    (x, y), = built.test_batches()
    chosen = datasets.stratified_subset(torch.arange(N_TEST) % 10, 100, 1)
    assert pixel_ids(x) == chosen.tolist() and torch.equal(y, chosen % 10) and built.val_batches is None


def test_build_novel_noise_never_uses_a_validation_image(cifar: Path) -> None:
    d = section(cifar, n_clean=10, n_val=20, subset_seed=4)
    spec = {"alpha": 3, "seed": 2, "delta": 0.2, "order": "random", "source": "novel"}
    built = data.build(d, [spec], CPU, 7, 0)
    val = datasets.stratified_subset(torch.arange(N_TRAIN) % 10, 20, 4 + 7919)
    (x, y), = built.val_batches()
    assert pixel_ids(x) == val.tolist() and torch.equal(y, val % 10)
    noise = built.noises[0]
    assert (noise.n, noise.n_virtual, noise.n_pool) == (10, 40, 30) and len(built.loader) == 6
    (pairs,) = epoch_pairs(built.loader)
    images = [i for i, _ in pairs]
    # 10 clean and 30 novel images: each unused image once, every one outside the validation split
    assert sorted(images) == sorted(set(range(N_TRAIN)) - set(val.tolist()))
    table = raw_ids(built.loader.images)
    assert torch.equal(noise.rows, torch.tensor(table) % 10)  # every table image's noise row is its class
    clean = table[:10]
    assert [(i, label) for i, label in pairs if i in clean] == [(i, i % 10) for i in sorted(clean)]
    np.testing.assert_array_equal(built.distributions[0], distribution(
        NoiseSpec(alpha=3, seed=2, delta=0.2, order="random", source="novel"), 10))
    (x, y), = built.test_batches()
    assert pixel_ids(x) == list(range(N_TEST)) and torch.equal(y, torch.arange(N_TEST) % 10)  # n_test null: all


def test_build_cifar100_copies_cycle_through_the_pool_with_uniform_labels(cifar: Path) -> None:
    built = data.build(section(cifar, n_clean=20, subset_seed=2), [{"alpha": 2, "seed": 1, "source": "cifar100"}], CPU,
                       64, 0)
    noise, table = built.noises[0], raw_ids(built.loader.images)
    assert table[20:] == list(range(210, 217)) and noise.rows[20:].tolist() == [10] * N_POOL  # no class: uniform row
    (pairs,) = epoch_pairs(built.loader)
    pool = [i for i, _ in pairs if i >= 210]
    # 40 copies over 7 pool images in turn: images 0-4 of the pool six times, 5 and 6 five times
    assert [pool.count(210 + j) for j in range(N_POOL)] == [6, 6, 6, 6, 6, 5, 5]
    assert np.array_equal(built.distributions[0], uniform_distribution(10))


def test_build_clean_only_trains_on_the_clean_images_but_keeps_each_members_distribution(cifar: Path) -> None:
    noises = [{"alpha": 2, "seed": 1, "delta": 0.2, "order": "random"}, {"alpha": 2, "seed": 8, "delta": 0.2, "order": "random"}]
    built = data.build(section(cifar, n_clean=20, subset_seed=2), noises, CPU, 64, 0, clean_only=True)
    for noise, seed in zip(built.noises, (1, 8)):
        assert noise.spec == NoiseSpec(alpha=0.0, seed=seed, delta=0.0, order="random", confusion=noise.spec.confusion)
        assert noise.n_virtual == 20
    for dist, seed in zip(built.distributions, (1, 8)):  # each seed its own random order of wrong classes
        np.testing.assert_array_equal(dist, distribution(NoiseSpec(alpha=2, seed=seed, delta=0.2, order="random"), 10))
    assert not np.array_equal(built.distributions[0], built.distributions[1])
    pairs = epoch_pairs(built.loader)
    assert pairs[0] == pairs[1] and len(pairs[0]) == 20 and all(label == i % 10 for i, label in pairs[0])


def test_build_reads_the_default_confusion_matrix_and_cifar10n_under_the_root(cifar: Path, tmp_path: Path) -> None:
    confusion_at(tmp_path / "cache" / "label-noise-study" / "confusion" / "cifar10.npy")
    built = data.build(section(cifar, n_clean=10), [{"alpha": 10, "delta": 1.0, "order": "confusing"}], CPU, 32, 0)
    assert built.distributions[0][0].argmax() == 9  # row 0 of the confusion matrix is largest at class 9
    built = data.build(section(cifar, n_clean=10), [{"alpha": 1, "matrix": "cifar10n:aggre"}], CPU, 32, 0)
    assert built.distributions[0][3].tolist() == [0, 0, 0, 0, 0.5, 0.5, 0, 0, 0, 0]
    assert np.array_equal(built.noises[0].table_np[3], np.array([0, 0, 0, 0, 0, 2**31, 2**32, 2**32, 2**32, 2**32, 2**32]))


def test_build_downloads_cifar10n_only_when_allowed(tmp_path: Path, offline: list[str]) -> None:
    noise = [{"alpha": 1, "matrix": "cifar10n:random"}]
    without = {k: v for k, v in section(tmp_path).items() if k != "download"}
    with pytest.raises(UsageError, match=r"allow data.download=true$"):  # no data.download: no download
        data.build(without, noise, CPU, 8, 0)
    assert offline == []
    with pytest.raises(UsageError, match=r" failed \(OSError\): put "):
        data.build(section(tmp_path, download=True), noise, CPU, 8, 0)
    assert offline == [HUMAN_URL]


def test_build_puts_every_batch_on_the_trials_device(cifar: Path) -> None:
    meta = torch.device("meta")  # stands in for a GPU: tensors there have a device and a shape, no values
    built = data.build(section(cifar, n_clean=10, n_val=10), [{"alpha": 1}], meta, 8, 0)
    (x, y), = built.test_batches()
    (val_x, val_y), = built.val_batches()
    assert {t.device for t in (x, y, val_x, val_y, built.loader.images)} == {meta}
    assert (x.shape, val_x.shape) == ((N_TEST, 3, 32, 32), (10, 3, 32, 32))


def test_build_a_folder_tree_in_memory(shapes: Path, tmp_path: Path) -> None:
    # data.path, data.image_size and data.cache reach both splits' loads
    d = section(tmp_path, dataset="folder", path=str(shapes), cache=str(tmp_path / "stats"), image_size=4)
    built = data.build(d, [{"alpha": 1}], CPU, 8, 0)
    assert built.shape == (3, 4, 4) and built.num_classes == 3 and len(built.loader) == 3
    assert torch.cat([y for _, y in built.test_batches()]).tolist() == [0, 0, 1, 1, 2, 2]
    assert len(list((tmp_path / "stats").glob("*-stats-*.json"))) == 1


def test_build_names_the_beton_by_the_images_of_the_table(cifar: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ensured: list[tuple] = []

    def ensure(name: str, full: datasets.ImageSet, cache: str, rebuild: bool, workers: int) -> Path:
        ensured.append((name, raw_ids(full.images), cache, rebuild, workers))
        return tmp_path / f"{name}.beton"

    stub = types.SimpleNamespace(ensure=ensure)
    monkeypatch.setitem(sys.modules, "loaders.beton", stub)
    monkeypatch.setattr(loaders, "beton", stub, raising=False)
    monkeypatch.setattr(backends, "import_ffcv", lambda: types.SimpleNamespace(VirtualLoader=lambda *a, **k: a))
    d = section(cifar, backend="ffcv", n_clean=10, cache=str(tmp_path), workers=2)
    for source, name, images in (("same", "cifar10", list(range(N_TRAIN))),
                                 ("cifar100", "cifar10+cifar100", list(range(N_TRAIN)) + list(range(210, 217)))):
        built = data.build(d, [{"alpha": 1, "source": source}], CPU, 8, 0)
        assert ensured.pop() == (name, images, str(tmp_path), False, 2) and built.loader[0] == tmp_path / f"{name}.beton"


def test_build_on_a_generated_stand_in_evaluates_on_its_test_split(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(datasets.STAND_IN_SIZE, "cifar10", (40, 20))  # small: generated in milliseconds
    built = data.build(section(tmp_path, stand_in=True), [{"alpha": 1}], CPU, 8, 0)
    (x, y), = built.test_batches()
    assert x.shape == (20, 3, 32, 32) and torch.equal(y, datasets.generated_stand_in("cifar10", False).labels)
    assert torch.equal(built.noises[0].rows, datasets.generated_stand_in("cifar10", True).labels)


def test_build_refuses_a_test_subset_larger_than_the_test_split(cifar: Path) -> None:
    with pytest.raises(UsageError) as err:
        data.build(section(cifar, n_test=N_TEST + 1), [{}], CPU, 8, 0)
    assert str(err.value) == "data.n_test=201 is invalid: it must be an integer in [1, 200]"


# ---------------------------------------------------------------------------------------------- build: folders


@dataclass
class Made:
    """One stubbed backends.folder_loader call; as a loader, one batch: its rows, each member's labels of them."""

    data: dict[str, Any]
    path: Path
    rows: torch.Tensor
    noises: list[NoiseModel]
    batch_size: int
    seed: int
    device: torch.device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        v = torch.arange(self.noises[0].n_virtual)
        yield self.rows[self.noises[0](v)[0]], torch.stack([noise(v)[1] for noise in self.noises])


# The .betons' labels (the stub's: larger than the tree's 12 and 6 images, so a subset is never drawn by chance)
TRAIN_LABELS, TEST_LABELS = torch.arange(60) // 20, torch.arange(30) // 10


@pytest.fixture
def on_disk(monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[dict, bool]], list[Made]]:
    """backends.folder_split and folder_loader replaced by recorders: which splits were asked for, which loaders."""
    splits: list[tuple[dict, bool]] = []
    made: list[Made] = []

    def folder_split(d: dict[str, Any], train: bool) -> tuple[Path, torch.Tensor]:
        splits.append((d, train))
        return (Path("train.beton"), TRAIN_LABELS) if train else (Path("val.beton"), TEST_LABELS)

    def folder_loader(*args: Any) -> Made:
        made.append(Made(*args))
        return made[-1]

    monkeypatch.setattr(backends, "folder_split", folder_split)
    monkeypatch.setattr(backends, "folder_loader", folder_loader)
    return splits, made


def test_build_from_folders_with_a_validation_split_and_novel_noise(shapes: Path, tmp_path: Path,
                                                                    on_disk: tuple[list[tuple[dict, bool]], list[Made]]) -> None:
    splits, made = on_disk
    d = section(tmp_path, dataset="folder", path=str(shapes), backend="ffcv", n_clean=6, n_val=9, n_test=15,
                subset_seed=2)
    del d["image_size"]
    noises = [{"alpha": 7.5, "seed": 4, "source": "novel"}, {"alpha": 7.5, "seed": 9, "source": "novel"}]
    built = data.build(d, noises, CPU, 5, 7)
    assert splits == [(d, True), (d, False)] and all(s is d for s, _ in splits)
    assert built.shape == (3, 224, 224) and built.num_classes == 3
    train, test, held = made
    assert built.loader is train
    assert all(m.data is d and m.device == CPU for m in made)
    assert (train.path, train.batch_size, train.seed, train.noises) == (Path("train.beton"), 5, 7, built.noises)
    val = datasets.stratified_subset(TRAIN_LABELS, 9, 2 + 7919)
    clean, novel = train.rows[:6], train.rows[6:]
    # two clean images and three held-out images per class; the 45 images left are the 45 novel copies' images
    assert TRAIN_LABELS[clean].tolist() == [0, 0, 1, 1, 2, 2] and TRAIN_LABELS[val].tolist() == [0] * 3 + [1] * 3 + [2] * 3
    assert sorted(novel.tolist()) == sorted(set(range(60)) - set(clean.tolist()) - set(val.tolist()))
    assert [(n.spec.seed, n.n, n.n_pool, n.rows.tolist()) for n in built.noises] == [
        (seed, 6, 45, TRAIN_LABELS[train.rows].tolist()) for seed in (4, 9)]
    assert all(np.array_equal(dist, uniform_distribution(3)) for dist in built.distributions)
    chosen = datasets.stratified_subset(TEST_LABELS, 15, 2)
    assert (test.path, test.batch_size, test.seed, test.rows.tolist()) == (Path("val.beton"), 1024, 0, chosen.tolist())
    assert (held.path, held.batch_size, held.seed, held.rows.tolist()) == (Path("train.beton"), 1024, 0, val.tolist())
    for loader, labels in ((test, TEST_LABELS[chosen]), (held, TRAIN_LABELS[val])):  # clean labels, nothing noisy
        (noise,) = loader.noises
        assert noise.spec == NoiseSpec() and noise.m == 3 and noise.rows.tolist() == labels.tolist()
    (x, y), = built.test_batches()
    assert torch.equal(x, chosen) and torch.equal(y, TEST_LABELS[chosen])
    (x, y), = built.val_batches()
    assert torch.equal(x, val) and torch.equal(y, TRAIN_LABELS[val])
    (x, y), = train
    assert torch.equal(x[:6], clean) and torch.equal(y[:, :6], TRAIN_LABELS[clean].expand(2, 6))


def test_build_from_folders_refuses_in_one_line(shapes: Path, tmp_path: Path,
                                                on_disk: tuple[list[tuple[dict, bool]], list[Made]]) -> None:
    d = section(tmp_path, dataset="folder", path=str(shapes), backend="ffcv")
    with pytest.raises(UsageError) as err:
        data.build({**d, "n_test": 31}, [{}], CPU, 5, 7)
    assert str(err.value) == "data.n_test=31 is invalid: it must be an integer in [1, 30]"
    with pytest.raises(UsageError) as err:  # no CIFAR-100 images beside a tree (the launcher's check says so first)
        data.build(d, [{"alpha": 1, "source": "cifar100"}], CPU, 5, 7)
    assert str(err.value) == "noise.source=cifar100 needs 1 extra images for its noisy copies but was given 0"


def test_build_from_folders_with_annotations_clean_only(shapes: Path, tmp_path: Path,
                                                        on_disk: tuple[list[tuple[dict, bool]], list[Made]]) -> None:
    splits, made = on_disk
    (tmp_path / "v.csv").write_text("".join(f"{i},{(i // 20 + 1 + i % 2) % 3}\n" for i in range(60)))
    d = section(tmp_path, dataset="folder", path=str(shapes), backend="ffcv", image_size=16)
    built = data.build(d, [{"alpha": 3, "seed": 1, "labels": str(tmp_path / "v.csv")}], CPU, 4, 2, clean_only=True)
    assert built.shape == (3, 16, 16) and built.val_batches is None and len(made) == 2
    (noise,) = built.noises
    assert noise.n_virtual == 60 and noise.spec.alpha == 0 and noise.votes[0].tolist() == [
        [(i // 20 + 1 + i % 2) % 3] for i in range(60)]
    # each class's even images annotated one class on, its odd images two
    want = np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    np.testing.assert_array_equal(built.distributions[0], want)
    assert np.array_equal(noise.table_np[:3, 1:3], [[0, 2**31], [2**31, 2**31], [2**31, 2**32]])
