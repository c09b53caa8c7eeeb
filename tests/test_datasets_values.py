"""loaders.datasets by exact values, fast (no FFCV, no training, no real dataset read, no network).

Covers: ImageSet (len, subset, extend), user_dir, resolve_root's precedence (data.root, then $STUDY_DATA_ROOT,
then <storage>/datasets, then the user cache dir), cache_dir, tree, num_classes, default_confusion_path,
_mnist_files, _tv_folder's folder names, present in every layout, _download, ensure_available's messages word
for word and its exit paths (present, downloaded, download failed, stand-in), load on each layout, _reorder,
_folder_set (the FOLDER_MAX_IMAGES edge, the 1,000-class check, which images its stats get), generated_stand_in
(shapes, dtypes, counts, pinned pixels), split_sizes, check_subset_size, stratified_subset, check_novel's message
at its edges and novel_index.

Stand-ins, all built in tmp_path: a 5-image MNIST written in torchvision's idx layout; small cifar10/cifar100
.npz archives; small PNG class-folder trees (conftest.image_folders, and flat-colour ones for hand-computed stats);
hand-built folder.Tree objects, with folder.read / folder.stats replaced by recorders where only the arguments
matter; NUM_CLASSES["imagenet"] and STAND_IN_SIZE patched small so an ImageNet stand-in or tree stays tiny.
_download never touches the network: torchvision.datasets.MNIST / CIFAR10 / CIFAR100 are replaced (monkeypatch)
by recorder classes that note each call and write the files torchvision would write (MNIST/raw/..., or
cifar-10-batches-py/...) into the temporary dir they are given. load's torchvision calls go through a recorder
subclass of the real MNIST (reading the tiny idx files) or a fake CIFAR class.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from errors import UsageError
from loaders import datasets, folder
from loaders.datasets import ImageSet
from tests.conftest import image_folders

FIX = "or point data.root= (or STUDY_DATA_ROOT) at a folder that holds it"
HINT = "; or use preset=smoke (data.stand_in=true) for a generated stand-in"
MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------- small stand-ins


def write_idx_images(path: Path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">iiii", 2051, *images.shape) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">ii", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def tiny_mnist(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """root/MNIST/raw in torchvision's idx layout: 3 training images (28x28), 2 test images; each image's pixels
    all equal one value so a mix-up of splits or axes shows."""
    raw = root / "MNIST" / "raw"
    x_train = np.stack([np.full((28, 28), v, np.uint8) for v in (10, 20, 30)])
    x_train[0, 0, 1] = 99  # one pixel off the diagonal: a transposed or re-shaped image differs
    y_train = np.array([7, 1, 4])
    x_test = np.stack([np.full((28, 28), v, np.uint8) for v in (200, 250)])
    y_test = np.array([3, 9])
    write_idx_images(raw / MNIST_RAW[0], x_train)
    write_idx_labels(raw / MNIST_RAW[1], y_train)
    write_idx_images(raw / MNIST_RAW[2], x_test)
    write_idx_labels(raw / MNIST_RAW[3], y_test)
    return x_train, y_train, x_test, y_test


def flat_tree(path: Path) -> Path:
    """path/{train,val}/{a,b}/<i>.png, 2x2 flat-colour RGB images: train a: (255,0,51) (0,0,51), b: (255,255,51);
    val a: (0,255,51), b: (0,0,51)."""
    colours = {"train": {"a": [(255, 0, 51), (0, 0, 51)], "b": [(255, 255, 51)]},
               "val": {"a": [(0, 255, 51)], "b": [(0, 0, 51)]}}
    for split, classes in colours.items():
        for name, cs in classes.items():
            (path / split / name).mkdir(parents=True)
            for i, c in enumerate(cs):
                Image.new("RGB", (2, 2), c).save(path / split / name / f"{i}.png")
    return path


def hand_tree(path: Path, classes: int = 2, n_train: int = 4, n_test: int = 3,
              shape: tuple[int, int, int] | None = (3, 2, 2)) -> folder.Tree:
    return folder.Tree(path, tuple(f"c{i}" for i in range(classes)),
                       tuple((f"tr{i}", i % 2) for i in range(n_train)),
                       tuple((f"te{i}", i % 2) for i in range(n_test)), shape)


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list:
    """datasets._download replaced by a recorder that fails as an offline download would."""
    calls: list = []

    def offline(name: str, root: Path) -> None:
        calls.append((name, root))
        raise RuntimeError("offline")

    monkeypatch.setattr(datasets, "_download", offline)
    return calls


# ----------------------------------------------------------------------------------------------------- ImageSet


def test_image_set_len_subset_and_extend_keep_classes_and_stats() -> None:
    a = ImageSet(torch.arange(12, dtype=torch.uint8).view(3, 1, 2, 2), torch.tensor([0, 1, 2]), 5, (0.5,), (0.25,))
    b = ImageSet(torch.full((2, 1, 2, 2), 99, dtype=torch.uint8), torch.tensor([4, 3]), 7, (0.1,), (0.2,))
    assert len(a) == 3 and len(b) == 2
    sub = a.subset(torch.tensor([2, 0]))
    assert sub.images[:, 0, 0, 0].tolist() == [8, 0] and sub.labels.tolist() == [2, 0]
    assert (sub.num_classes, sub.mean, sub.std) == (5, (0.5,), (0.25,))
    both = a.extend(b)
    assert both.images[:, 0, 0, 0].tolist() == [0, 4, 8, 99, 99] and both.labels.tolist() == [0, 1, 2, 4, 3]
    assert (both.num_classes, both.mean, both.std, len(both)) == (5, (0.5,), (0.25,), 5)


# --------------------------------------------------------------------------------------------- roots and paths


def test_user_dir_follows_xdg_cache_home_else_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.user_dir() == tmp_path / "xdg" / "label-noise-study"
    monkeypatch.setenv("XDG_CACHE_HOME", "~/c")
    assert datasets.user_dir() == tmp_path / "home" / "c" / "label-noise-study"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert datasets.user_dir() == tmp_path / "home" / ".cache" / "label-noise-study"


def test_resolve_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    storage = tmp_path / "storage"
    monkeypatch.setenv("STUDY_DATA_ROOT", str(tmp_path / "env"))
    assert datasets.resolve_root(tmp_path / "given", storage) == tmp_path / "given"  # data.root first
    assert datasets.resolve_root("rel", storage) == tmp_path / "rel"  # made absolute
    assert datasets.resolve_root("~/d", storage) == tmp_path / "home" / "d"
    assert datasets.resolve_root(None, storage) == tmp_path / "env"  # then the environment
    assert datasets.resolve_root("", storage) == tmp_path / "env"
    monkeypatch.setenv("STUDY_DATA_ROOT", "~/e")
    assert datasets.resolve_root(None) == tmp_path / "home" / "e"
    monkeypatch.setenv("STUDY_DATA_ROOT", "")  # empty: as unset
    assert datasets.resolve_root(None, storage) == storage / "datasets"
    monkeypatch.delenv("STUDY_DATA_ROOT")
    assert datasets.resolve_root("", storage) == storage / "datasets"  # then the storage root
    assert datasets.resolve_root(None) == tmp_path / "xdg" / "label-noise-study" / "datasets"  # then the cache


def test_cache_dir_and_confusion_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    user = tmp_path / "xdg" / "label-noise-study"
    assert datasets.cache_dir(None) == user / "ffcv" and datasets.cache_dir("") == user / "ffcv"
    assert datasets.cache_dir("~/c") == tmp_path / "home" / "c" and datasets.cache_dir("c2") == tmp_path / "c2"
    assert datasets.default_confusion_path("cifar10", tmp_path / "s") == tmp_path / "s" / "confusion" / "cifar10.npy"
    assert datasets.default_confusion_path("mnist") == user / "confusion" / "mnist.npy"


def test_mnist_files_and_tv_folder_names() -> None:
    root = Path("/r")
    assert datasets._mnist_files(root) == [root / "MNIST" / "raw" / f for f in MNIST_RAW]
    assert datasets._tv_folder("cifar10", root) == Path("/r/cifar-10-batches-py")
    assert datasets._tv_folder("cifar100", root) == Path("/r/cifar-100-python")
    with pytest.raises(KeyError):
        datasets._tv_folder("mnist", root)


def test_present_in_each_layout(tmp_path: Path) -> None:
    assert datasets.present("folder", tmp_path)  # data.path, not the root
    for name in ("mnist", "cifar10", "cifar100", "imagenet"):
        assert not datasets.present(name, tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in MNIST_RAW[:3]:
        (raw / f).touch()
    assert not datasets.present("mnist", tmp_path)  # all four files needed
    (raw / MNIST_RAW[3]).touch()
    assert datasets.present("mnist", tmp_path)
    (tmp_path / "imagenet" / "train").mkdir(parents=True)
    assert not datasets.present("imagenet", tmp_path)
    (tmp_path / "imagenet" / "val").mkdir()
    assert datasets.present("imagenet", tmp_path)
    (tmp_path / "cifar10.npz").mkdir()  # a folder is no archive
    (tmp_path / "cifar-100-python").touch()  # a file is no extracted folder
    assert not datasets.present("cifar10", tmp_path) and not datasets.present("cifar100", tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert datasets.present("cifar10", tmp_path) and not datasets.present("cifar100", tmp_path)
    (tmp_path / "cifar100.npz").touch()
    assert datasets.present("cifar100", tmp_path)


def test_tree_and_num_classes(tmp_path: Path) -> None:
    image_folders(tmp_path, {"train": 1, "val": 1}, classes=3, hw=(2, 3))
    found = datasets.tree({"dataset": "imagenet", "root": str(tmp_path)})
    assert found.path == tmp_path / "imagenet" and found.classes == ("n00000000", "n00000001", "n00000002")
    by_path = datasets.tree({"dataset": "folder", "path": str(tmp_path / "imagenet")})
    assert by_path.train == found.train and len(by_path.test) == 3
    assert datasets.num_classes({"dataset": "folder", "path": str(tmp_path / "imagenet")}) == 3
    assert [datasets.num_classes({"dataset": n}) for n in ("mnist", "cifar10", "cifar100", "imagenet")] == [10, 10, 100, 1000]


# ------------------------------------------------------------------------------------------------- _download


def fake_torchvision(monkeypatch: pytest.MonkeyPatch, fail_on_test: bool = False) -> list:
    """torchvision.datasets.MNIST/CIFAR10/CIFAR100 replaced by recorders: each call is noted as (root, kwargs), then
    the split's files are written where torchvision would write them. fail_on_test: the test-split call removes the
    temporary dir and raises, as an interrupted download that left nothing to clean."""
    calls: list = []

    def recorder(cls_name: str, folder_name: str, files: dict[bool, tuple[str, ...]]) -> type:
        class Fake:
            def __init__(self, root, **kwargs) -> None:
                calls.append((cls_name, Path(root), kwargs))
                if fail_on_test and kwargs.get("train") is False:
                    import shutil
                    shutil.rmtree(root)
                    raise RuntimeError("offline")
                target = Path(root) / folder_name
                target.mkdir(parents=True, exist_ok=True)
                for f in files[bool(kwargs.get("train", True))]:
                    (target / f).write_text(f"{cls_name} {f}")
        return Fake

    monkeypatch.setattr(torchvision.datasets, "MNIST", recorder("MNIST", "MNIST/raw", {True: MNIST_RAW[:2], False: MNIST_RAW[2:]}))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", recorder("CIFAR10", "cifar-10-batches-py",
                                                                   {True: ("data_batch_1", "batches.meta"), False: ("test_batch",)}))
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", recorder("CIFAR100", "cifar-100-python",
                                                                    {True: ("train", "meta"), False: ("test",)}))
    return calls


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's dir moved into tmp_path, so the download's temporary dir can be found and checked."""
    tmp = tmp_path / "system-tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_download_mnist_goes_through_a_temporary_dir_into_a_new_root(tmp_path: Path, temp_root: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_torchvision(monkeypatch)
    root = tmp_path / "a" / "b"  # its parents do not exist yet
    datasets._download("mnist", root)
    tmp = calls[0][1]
    assert calls == [("MNIST", tmp, {"train": True, "download": True}), ("MNIST", tmp, {"train": False, "download": True})]
    assert tmp.parent == temp_root and tmp.name.startswith("mnist-download-") and not tmp.exists()
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(MNIST_RAW)
    assert (root / "MNIST" / "raw" / MNIST_RAW[2]).read_text() == f"MNIST {MNIST_RAW[2]}"
    assert [p.name for p in root.iterdir()] == ["MNIST"] and list(temp_root.iterdir()) == []
    assert datasets.present("mnist", root)


@pytest.mark.parametrize("name, cls, folder_name", [("cifar10", "CIFAR10", "cifar-10-batches-py"),
                                                    ("cifar100", "CIFAR100", "cifar-100-python")])
def test_download_cifar_merges_into_an_existing_folder(tmp_path: Path, temp_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                       name: str, cls: str, folder_name: str) -> None:
    calls = fake_torchvision(monkeypatch)
    (tmp_path / folder_name).mkdir()
    (tmp_path / folder_name / "old").write_text("kept")
    datasets._download(name, tmp_path)
    tmp = calls[0][1]
    assert calls == [(cls, tmp, {"train": True, "download": True}), (cls, tmp, {"train": False, "download": True})]
    assert tmp.name.startswith(f"{name}-download-") and not tmp.exists() and list(temp_root.iterdir()) == []
    held = {p.name: p.read_text() for p in (tmp_path / folder_name).iterdir()}
    assert held["old"] == "kept" and len(held) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder_name, "system-tmp"])


def test_failed_download_leaves_nothing_and_keeps_its_error(tmp_path: Path, temp_root: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_torchvision(monkeypatch, fail_on_test=True)
    root = tmp_path / "root"
    with pytest.raises(RuntimeError, match="^offline$"):  # the clean-up of a dir already gone raises nothing
        datasets._download("mnist", root)
    assert len(calls) == 2 and not root.exists() and list(temp_root.iterdir()) == []


# ------------------------------------------------------------------------------------------ ensure_available


def test_ensure_available_rejects_an_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        datasets.ensure_available("svhn", tmp_path, download=True)
    assert str(e.value) == "data.dataset='svhn' is unknown: choose one of mnist, cifar10, cifar100, imagenet, folder"


def test_ensure_available_present_returns_false_without_download(tmp_path: Path, no_download: list) -> None:
    (tmp_path / "cifar10.npz").touch()
    assert datasets.ensure_available("cifar10", tmp_path, download=True, stand_in=True) is False
    assert datasets.ensure_available("folder", tmp_path, download=True, stand_in=True) is False
    assert no_download == []


def test_ensure_available_messages_offline(tmp_path: Path, no_download: list) -> None:
    r = tmp_path
    expected = {
        "mnist": f"MNIST not found under {r} and data.download=false: put MNIST in torchvision's layout under "
                 f"{r}/MNIST/raw, {FIX}",
        "cifar10": f"CIFAR-10 not found under {r} and data.download=false: put {r}/cifar10.npz or "
                   f"{r}/cifar-10-batches-py, {FIX}{HINT}",
        "cifar100": f"CIFAR-100 not found under {r} and data.download=false: put {r}/cifar100.npz or "
                    f"{r}/cifar-100-python, {FIX}{HINT}",
        "imagenet": f"ImageNet not found under {r} and it is never downloaded: put class folders under "
                    f"{r}/imagenet/train and {r}/imagenet/val, {FIX}{HINT}",
    }
    for name, message in expected.items():
        with pytest.raises(UsageError) as e:
            datasets.ensure_available(name, r, download=False)
        assert str(e.value) == message
    with pytest.raises(UsageError) as e:  # never a stand-in for MNIST
        datasets.ensure_available("mnist", r, download=False, stand_in=True)
    assert str(e.value) == expected["mnist"]
    for name in ("cifar10", "cifar100", "imagenet"):
        assert datasets.ensure_available(name, r, download=False, stand_in=True) is True
    assert no_download == []


def test_ensure_available_downloads_torchvision_datasets_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    monkeypatch.setattr(datasets, "_download", lambda name, root: calls.append((name, root)))
    assert datasets.ensure_available("cifar10", tmp_path, download=True) is False
    assert datasets.ensure_available("mnist", tmp_path, download=True, stand_in=True) is False
    assert calls == [("cifar10", tmp_path), ("mnist", tmp_path)]
    with pytest.raises(UsageError) as e:  # ImageNet is never downloaded
        datasets.ensure_available("imagenet", tmp_path, download=True)
    assert str(e.value).startswith(f"ImageNet not found under {tmp_path} and it is never downloaded: ")
    assert str(e.value).endswith(f"{FIX}{HINT}")
    assert datasets.ensure_available("imagenet", tmp_path, download=True, stand_in=True) is True
    assert len(calls) == 2


def test_ensure_available_downloads_mnist_through_torchvision(tmp_path: Path, temp_root: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls = fake_torchvision(monkeypatch)
    assert datasets.ensure_available("mnist", tmp_path / "data", download=True) is False
    assert [c[2] for c in calls] == [{"train": True, "download": True}, {"train": False, "download": True}]
    assert datasets.present("mnist", tmp_path / "data")


def fail_with(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> list:
    calls: list = []

    def failing(name: str, root: Path) -> None:
        calls.append((name, root))
        raise exc

    monkeypatch.setattr(datasets, "_download", failing)
    return calls


def test_ensure_available_names_a_failed_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = "<urlopen error [Errno -3] Temporary failure in name resolution> " + "x" * 100  # 162 characters
    calls = fail_with(monkeypatch, RuntimeError(first + "\nsecond line"))
    with pytest.raises(UsageError) as e:
        datasets.ensure_available("mnist", tmp_path, download=True, stand_in=True)
    assert str(e.value) == (f"MNIST not found under {tmp_path} and the download failed (RuntimeError: {first[:120]}): "
                            f"put MNIST in torchvision's layout under {tmp_path}/MNIST/raw, {FIX}")
    with pytest.raises(UsageError) as e:
        datasets.ensure_available("cifar100", tmp_path, download=True)
    assert str(e.value) == (f"CIFAR-100 not found under {tmp_path} and the download failed (RuntimeError: {first[:120]}): "
                            f"put {tmp_path}/cifar100.npz or {tmp_path}/cifar-100-python, {FIX}{HINT}")
    assert datasets.ensure_available("cifar10", tmp_path, download=True, stand_in=True) is True  # then the stand-in
    assert calls == [("mnist", tmp_path), ("cifar100", tmp_path), ("cifar10", tmp_path)]


def test_ensure_available_failed_download_with_an_empty_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_with(monkeypatch, OSError())
    with pytest.raises(UsageError) as e:
        datasets.ensure_available("cifar10", tmp_path, download=True)
    assert str(e.value) == (f"CIFAR-10 not found under {tmp_path} and the download failed (OSError: ): "
                            f"put {tmp_path}/cifar10.npz or {tmp_path}/cifar-10-batches-py, {FIX}{HINT}")
    fail_with(monkeypatch, ValueError("short"))
    with pytest.raises(UsageError, match=r"the download failed \(ValueError: short\): put "):
        datasets.ensure_available("cifar10", tmp_path, download=True)


# ------------------------------------------------------------------------------------------------------ load


def test_load_mnist_reads_the_split_asked_without_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x_train, y_train, x_test, y_test = tiny_mnist(tmp_path)
    calls: list = []
    real = torchvision.datasets.MNIST

    class MNIST(real):  # the class name is torchvision's folder name
        def __init__(self, root, **kwargs) -> None:
            calls.append((root, kwargs))
            super().__init__(root, **kwargs)

    monkeypatch.setattr(torchvision.datasets, "MNIST", MNIST)
    test = datasets.load("mnist", tmp_path, False)
    train = datasets.load("mnist", tmp_path, True)
    assert calls == [(tmp_path, {"train": False, "download": False}), (tmp_path, {"train": True, "download": False})]
    assert test.images.shape == (2, 1, 28, 28) and test.images.dtype == torch.uint8 and test.images.is_contiguous()
    assert torch.equal(test.images[:, 0], torch.from_numpy(x_test)) and test.labels.tolist() == [3, 9]
    assert torch.equal(train.images[:, 0], torch.from_numpy(x_train)) and train.labels.tolist() == [7, 1, 4]
    assert train.labels.dtype == torch.int64
    assert (train.num_classes, train.mean, train.std) == (10, (0.1307,), (0.3081,))


def test_load_absent_raises_and_never_downloads(tmp_path: Path, no_download: list) -> None:
    with pytest.raises(UsageError) as e:
        datasets.load("mnist", tmp_path, True, stand_in=True)  # never a stand-in for MNIST
    assert str(e.value).startswith(f"MNIST not found under {tmp_path} and data.download=false: ")
    with pytest.raises(UsageError) as e:
        datasets.load("cifar10", tmp_path, True)
    assert str(e.value) == (f"CIFAR-10 not found under {tmp_path} and data.download=false: put {tmp_path}/cifar10.npz "
                            f"or {tmp_path}/cifar-10-batches-py, {FIX}{HINT}")
    assert no_download == []


def test_load_npz_restores_the_original_order(tmp_path: Path) -> None:
    x = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)  # NHWC
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=np.array([5, 6, 7], np.uint8), orig_index_train=np.array([2, 0, 1]),
             x_test=x[:2] + 100, y_test=np.array([1, 2]), orig_index_test=np.array([1, 0]))
    np.savez(tmp_path / "cifar100.npz", x_train=x, y_train=np.array([50, 60, 70]), x_test=x[:1], y_test=np.array([99]))
    train = datasets.load("cifar10", tmp_path, True)
    assert train.images.shape == (3, 3, 2, 2) and train.images.is_contiguous()
    assert train.images[:, :, 0, 0].tolist() == [[12, 13, 14], [24, 25, 26], [0, 1, 2]]  # image i sits at orig_index[i]
    assert train.labels.tolist() == [6, 7, 5] and train.labels.dtype == torch.int64
    assert (train.num_classes, train.mean, train.std) == (10, datasets.STATS["cifar10"][0], datasets.STATS["cifar10"][1])
    test = datasets.load("cifar10", tmp_path, False)
    assert test.images[:, 0, 0, 0].tolist() == [112, 100] and test.labels.tolist() == [2, 1]
    c100 = datasets.load("cifar100", tmp_path, True)  # no orig_index: as stored
    assert torch.equal(c100.images, torch.from_numpy(x).permute(0, 3, 1, 2)) and c100.labels.tolist() == [50, 60, 70]
    assert (c100.num_classes, c100.mean) == (100, datasets.STATS["cifar100"][0])
    assert datasets.load("cifar100", tmp_path, False).labels.tolist() == [99]


def test_load_cifar_from_torchvision_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cifar-100-python").mkdir()
    calls: list = []

    class CIFAR100:
        def __init__(self, root, **kwargs) -> None:
            calls.append((root, kwargs))
            self.data = np.full((2, 4, 4, 3), 9 if kwargs["train"] else 8, np.uint8)
            self.data[:, 0, 1, 2] = 1
            self.targets = [3, 42]

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", CIFAR100)
    got = datasets.load("cifar100", tmp_path, False)
    assert calls == [(tmp_path, {"train": False, "download": False})]
    assert got.images.shape == (2, 3, 4, 4) and int(got.images.sum()) == 2 * (48 * 8 - 7)
    assert got.images[0, 2, 0, 1] == 1 and got.labels.tolist() == [3, 42] and got.labels.dtype == torch.int64
    assert got.num_classes == 100


def test_load_absent_with_stand_in_is_the_generated_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(datasets.STAND_IN_SIZE, "cifar10", (20, 10))
    monkeypatch.setitem(datasets.STAND_IN_SIZE, "imagenet", (4, 2))
    monkeypatch.setitem(datasets.NUM_CLASSES, "imagenet", 2)
    got = datasets.load("cifar10", tmp_path, False, stand_in=True)
    assert torch.equal(got.images, datasets.generated_stand_in("cifar10", False).images) and len(got) == 10
    assert datasets.load("imagenet", tmp_path, True, stand_in=True).images.shape == (4, 3, 224, 224)  # default size
    assert datasets.load("imagenet", tmp_path, False, stand_in=True, image_size=5).images.shape == (2, 3, 5, 5)


def test_load_imagenet_tree_resizes_with_imagenet_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(datasets.NUM_CLASSES, "imagenet", 2)
    image_folders(tmp_path, {"train": 2, "val": 1}, classes=2, hw=(6, 10))
    got = datasets.load("imagenet", tmp_path, True, image_size=4)
    assert got.images.shape == (4, 3, 4, 4) and got.labels.tolist() == [0, 0, 1, 1] and got.num_classes == 2
    assert (got.mean, got.std) == datasets.STATS["imagenet"]


def test_load_folder_uses_the_training_split_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = flat_tree(tmp_path / "t")
    cache = tmp_path / "cache"
    test = datasets.load("folder", tmp_path, False, image_size=8, path=str(path), cache=str(cache))
    train = datasets.load("folder", tmp_path, True, image_size=8, path=str(path), cache=str(cache))
    assert train.images.shape == (3, 3, 2, 2) and test.images.shape == (2, 3, 2, 2)  # one shared size: kept
    assert train.images[:, :, 0, 0].tolist() == [[255, 0, 51], [0, 0, 51], [255, 255, 51]]
    assert test.images[:, :, 1, 1].tolist() == [[0, 255, 51], [0, 0, 51]]
    assert train.labels.tolist() == [0, 0, 1] and test.labels.tolist() == [0, 1] and train.num_classes == 2
    for got in (train, test):
        assert got.mean == pytest.approx((2 / 3, 1 / 3, 0.2)) and got.std == pytest.approx(((2 / 9) ** 0.5, (2 / 9) ** 0.5, 1e-3))
    assert [p.name for p in cache.iterdir()] == [folder.stats_path(datasets.tree({"dataset": "folder", "path": str(path)}),
                                                                  8, cache).name]  # data.cache, not the user dir
    assert not (tmp_path / "xdg").exists()
    Image.new("RGB", (3, 2), (9, 9, 9)).save(path / "train" / "b" / "1.png")  # sizes differ now: resized
    Image.new("RGB", (3, 2), (9, 9, 9)).save(path / "val" / "b" / "1.png")
    # path + "/": the same folder under another key of folder.scan's cache, so it is listed again
    resized = datasets.load("folder", tmp_path, False, image_size=1, path=str(path) + "/", cache=str(cache))
    assert resized.images.shape == (3, 3, 1, 1) and resized.images[:, :, 0, 0].tolist() == [[0, 255, 51], [0, 0, 51], [9, 9, 9]]


# ------------------------------------------------------------------------------------------------ _folder_set


@pytest.fixture
def folder_calls(monkeypatch: pytest.MonkeyPatch) -> dict:
    """folder.read and folder.stats replaced by recorders (a hand-built tree has no files)."""
    calls: dict = {"read": [], "stats": [], "images": []}

    def read(found, train, size, keep_size):
        calls["read"].append((found, train, size, keep_size))
        n = len(found.split(train))
        images = torch.full((n, 3, 2, 2), 7, dtype=torch.uint8)
        calls["images"].append(images)
        return images, torch.arange(n)

    def stats(found, size, cache, images=None):
        calls["stats"].append((found, size, cache, images))
        return (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)

    monkeypatch.setattr(folder, "read", read)
    monkeypatch.setattr(folder, "stats", stats)
    return calls


def test_folder_set_takes_up_to_folder_max_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder_calls: dict) -> None:
    monkeypatch.setattr(datasets, "FOLDER_MAX_IMAGES", 3)
    found = hand_tree(tmp_path, n_train=4, n_test=3)
    with pytest.raises(UsageError) as e:
        datasets._folder_set(found, True, 8, tmp_path / "cache")
    assert str(e.value) == (f"a split of {tmp_path} holds 4 images; data.backend=tensor or torch keeps a split in memory "
                            "and takes at most 3: use data.backend=ffcv or auto")
    assert folder_calls["read"] == []
    got = datasets._folder_set(found, False, 8, tmp_path / "cache")  # 3 images: exactly the limit
    assert len(got) == 3


def test_folder_set_passes_train_images_to_stats_only_for_the_training_split(tmp_path: Path, folder_calls: dict) -> None:
    found = hand_tree(tmp_path, classes=3)
    cache = tmp_path / "cache"
    train = datasets._folder_set(found, True, 8, cache)
    test = datasets._folder_set(found, False, 8, cache)
    (i_train, i_test) = folder_calls["images"]
    assert folder_calls["read"] == [(found, True, 8, True), (found, False, 8, True)]  # one shared shape: kept
    assert len(folder_calls["stats"]) == 2
    assert folder_calls["stats"][0][:3] == (found, 8, cache) and folder_calls["stats"][0][3] is i_train
    assert folder_calls["stats"][1] == (found, 8, cache, None)
    assert train.images is i_train and test.images is i_test and train.labels.tolist() == [0, 1, 2, 3]
    assert (train.num_classes, train.mean, train.std) == (3, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert (test.num_classes, len(test)) == (3, 3)
    datasets._folder_set(hand_tree(tmp_path, shape=None), True, 5, cache)  # sizes differ: resized
    assert folder_calls["read"][-1][1:] == (True, 5, False)


def test_folder_set_imagenet_needs_1000_classes_and_keeps_its_stats(tmp_path: Path, folder_calls: dict) -> None:
    with pytest.raises(UsageError) as e:
        datasets._folder_set(hand_tree(tmp_path, classes=999), True, 8)
    assert str(e.value) == f"{tmp_path} has 999 class folders; imagenet needs 1000"
    found = hand_tree(tmp_path, classes=1000)
    got = datasets._folder_set(found, True, 6)
    assert folder_calls["read"] == [(found, True, 6, False)] and folder_calls["stats"] == []  # always resized
    assert (got.num_classes, got.mean, got.std) == (1000, *datasets.STATS["imagenet"])


# ------------------------------------------------------------------------------------------ generated_stand_in


def test_generated_stand_in_pinned_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in is deterministic: a change to its recipe (template grid, interpolation, mixing weights,
    scaling, clamping) changes these pixels. Sizes patched small (40 train, 20 test images)."""
    monkeypatch.setitem(datasets.STAND_IN_SIZE, "cifar10", (40, 20))
    train = datasets.generated_stand_in("cifar10", True, image_size=8)  # cifar: always 32 x 32
    test = datasets.generated_stand_in("cifar10", False)
    assert train.images.shape == (40, 3, 32, 32) and test.images.shape == (20, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert (train.num_classes, train.mean, train.std) == (10, *datasets.STATS["cifar10"])
    assert (test.num_classes, test.mean, test.std) == (10, *datasets.STATS["cifar10"])
    assert torch.bincount(train.labels).tolist() == [4] * 10 and torch.bincount(test.labels).tolist() == [2] * 10
    assert train.labels[:8].tolist() == [7, 3, 0, 2, 9, 7, 2, 0] and test.labels[:6].tolist() == [4, 1, 5, 5, 3, 9]
    assert train.images[0, :, 0, :6].tolist() == [[0, 143, 63, 34, 3, 0], [128, 159, 184, 150, 176, 186],
                                                  [107, 116, 135, 212, 157, 90]]
    assert train.images[:12, 0, 16, 16].tolist() == [185, 149, 223, 173, 70, 11, 124, 196, 60, 211, 122, 88]
    assert test.images[0, :, 0, :6].tolist() == [[136, 59, 132, 99, 29, 180], [114, 18, 0, 32, 51, 80],
                                                 [132, 139, 4, 137, 71, 101]]
    assert test.images[:, 0, 16, 16].tolist()[5:10] == [121, 95, 255, 165, 73]
    # whole-set figures, with room for a last-bit difference in a float reduction on another CPU
    assert abs(int(train.images.long().sum()) - 14649297) <= 20 and abs(int(test.images.long().sum()) - 7324106) <= 20
    assert abs(int((train.images == 0).sum()) - 3989) <= 3 and abs(int((train.images == 255).sum()) - 2096) <= 3
    x = train.images.double() / 255  # near the dataset's pixel statistics
    assert x.mean((0, 2, 3)).tolist() == pytest.approx([0.47268, 0.47845, 0.45142], abs=1e-4)
    assert x.std((0, 2, 3)).tolist() == pytest.approx([0.23848, 0.23275, 0.24655], abs=1e-4)


def test_generated_stand_in_sizes_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(datasets.STAND_IN_SIZE, "cifar100", (200, 100))
    monkeypatch.setitem(datasets.STAND_IN_SIZE, "imagenet", (6, 4))
    monkeypatch.setitem(datasets.NUM_CLASSES, "imagenet", 2)  # 1,000 templates of 224 x 224 would take 600 MB
    c100 = datasets.generated_stand_in("cifar100", False)
    assert c100.images.shape == (100, 3, 32, 32) and c100.num_classes == 100 and sorted(c100.labels.tolist()) == list(range(100))
    big = datasets.generated_stand_in("imagenet", True)
    assert big.images.shape == (6, 3, 224, 224) and big.labels.tolist().count(0) == 3
    small = datasets.generated_stand_in("imagenet", False, image_size=5)
    assert small.images.shape == (4, 3, 5, 5) and (small.mean, small.std) == datasets.STATS["imagenet"]
    assert torch.equal(small.images, datasets.generated_stand_in("imagenet", False, image_size=5).images)
    with pytest.raises(KeyError):
        datasets.generated_stand_in("mnist", True)  # MNIST has no stand-in


# --------------------------------------------------------------------------------------------------- split_sizes


def test_split_sizes_of_each_case(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for stand_in in (False, True):
        assert datasets.split_sizes("mnist", empty, stand_in) == (60_000, 10_000)  # never a stand-in
    assert datasets.split_sizes("cifar10", empty, False) == (50_000, 10_000)
    assert datasets.split_sizes("cifar10", empty, True) == (5000, 2000)
    assert datasets.split_sizes("cifar100", empty, True) == (5000, 2000)
    assert datasets.split_sizes("imagenet", empty, False) == (1_281_167, 50_000)
    assert datasets.split_sizes("imagenet", empty, True) == (3000, 2000)
    full = tmp_path / "full"
    (full / "imagenet" / "train").mkdir(parents=True)
    (full / "imagenet" / "val").mkdir()
    (full / "cifar10.npz").touch()
    (full / "cifar-100-python").mkdir()
    tiny_mnist(full)
    assert datasets.split_sizes("imagenet", full, True) is None and datasets.split_sizes("imagenet", full, False) is None
    assert datasets.split_sizes("cifar10", full, True) == (50_000, 10_000)  # present: the real sizes
    assert datasets.split_sizes("cifar100", full, True) == (50_000, 10_000)
    assert datasets.split_sizes("mnist", full, True) == (60_000, 10_000)
    path = flat_tree(tmp_path / "t")
    assert datasets.split_sizes("folder", empty, False, path=str(path)) == (3, 2)


# ------------------------------------------------------------------------------------- subsets and novel images


def test_check_subset_size_bounds() -> None:
    for ok in (None, 1, 4):
        datasets.check_subset_size(ok, 4)
    for bad in (0, 5, -1, True, 2.0):
        with pytest.raises(UsageError) as e:
            datasets.check_subset_size(bad, 4)
        assert str(e.value) == f"subset size={bad!r} is invalid: it must be an integer in [1, 4]"
    with pytest.raises(UsageError) as e:
        datasets.check_subset_size(5, 4, "data.n_test", " (the test split)")
    assert str(e.value) == "data.n_test=5 is invalid: it must be an integer in [1, 4] (the test split)"


def test_stratified_subset_exact() -> None:
    labels = torch.arange(12) % 3
    assert datasets.stratified_subset(labels, None, 0).tolist() == list(range(12))
    assert datasets.stratified_subset(labels, 12, 4).tolist() == list(range(12))
    assert datasets.stratified_subset(labels, 6, 0).tolist() == [0, 5, 6, 7, 10, 11]  # 2 per class
    seven = datasets.stratified_subset(labels, 7, 1)
    assert seven.tolist() == [0, 1, 2, 3, 5, 10, 11] and sorted(torch.bincount(labels[seven]).tolist()) == [2, 2, 3]
    assert torch.equal(datasets.stratified_subset(labels, 6, 0), datasets.stratified_subset(labels, 6, 0))
    with pytest.raises(UsageError) as e:
        datasets.stratified_subset(labels, 0, 0)
    assert str(e.value) == "subset size=0 is invalid: it must be an integer in [1, 12]"
    with pytest.raises(UsageError) as e:
        datasets.stratified_subset(labels, 13, 0, key="data.n_clean")
    assert str(e.value) == "data.n_clean=13 is invalid: it must be an integer in [1, 12]"


def test_check_novel_messages_at_the_edges() -> None:
    datasets.check_novel(5, 2, 5)  # exactly enough
    datasets.check_novel(5, 2, 5, alpha=2.5, n_val=3)
    with pytest.raises(UsageError) as e:
        datasets.check_novel(5, 2, 6)  # n_val defaults to 0: no validation clause; alpha None: no head
    assert str(e.value) == ("noise.source=novel needs 6 unused training images (n_clean x alpha) but only 5 lie outside "
                            "the 2 clean ones: lower noise.alpha to at most 2.5 or data.n_clean")
    with pytest.raises(UsageError) as e:
        datasets.check_novel(5, 1, 6, alpha=7.0, n_val=3)
    assert str(e.value) == ("noise.alpha=7.0 is invalid: noise.source=novel needs 6 unused training images (n_clean x "
                            "alpha) but only 5 lie outside the 1 clean ones and the 3 validation ones: lower noise.alpha "
                            "to at most 5 or data.n_clean")
    with pytest.raises(UsageError) as e:
        datasets.check_novel(10, 3, 11, alpha=4, n_val=0)
    assert str(e.value) == ("noise.alpha=4 is invalid: noise.source=novel needs 11 unused training images (n_clean x "
                            "alpha) but only 10 lie outside the 3 clean ones: lower noise.alpha to at most 3.33333 or "
                            "data.n_clean")
    with pytest.raises(UsageError) as e:
        datasets.check_novel(3, 0, 4)
    assert str(e.value).endswith("outside the 0 clean ones: lower noise.alpha to at most 3 or data.n_clean")


def test_novel_index_exact() -> None:
    clean = torch.tensor([0, 1])
    got = datasets.novel_index(10, clean, 8, seed=0)
    assert got.tolist() == [4, 7, 6, 2, 9, 5, 8, 3] and got.dtype == torch.int64
    assert datasets.novel_index(10, clean, 3, seed=0).tolist() == [4, 7, 6]  # a prefix of the same order
    held = datasets.novel_index(10, clean, 6, seed=5, val_index=torch.tensor([2, 3]))
    assert sorted(held.tolist()) == [4, 5, 6, 7, 8, 9] and held.dtype == torch.int64
    assert datasets.novel_index(10, clean, 3, seed=5, val_index=torch.tensor([2, 3])).tolist() == [9, 5, 7]
    with pytest.raises(UsageError) as e:
        datasets.novel_index(10, clean, 7, seed=0, val_index=torch.tensor([2, 3]))
    assert str(e.value) == ("noise.source=novel needs 7 unused training images (n_clean x alpha) but only 6 lie outside "
                            "the 2 clean ones and the 2 validation ones: lower noise.alpha to at most 3 or data.n_clean")
    with pytest.raises(UsageError) as e:
        datasets.novel_index(10, clean, 9, seed=0)
    assert str(e.value).endswith("only 8 lie outside the 2 clean ones: lower noise.alpha to at most 4 or data.n_clean")
