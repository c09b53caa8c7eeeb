"""data.dataset=folder: a class-folder tree of your own images, in memory or through FFCV; stats cached once;
bad trees named in one line; a smoke study on a generated tree through the launcher (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from errors import UsageError
from loaders import backends, data, datasets, folder
from tests.conftest import trial_config
from tests.helpers import launch

CPU = torch.device("cpu")


def tree(root: Path, classes: dict[str, tuple[int, int]], sizes: tuple[tuple[int, int], ...] = ((12, 20),),
         test: str = "val") -> Path:
    """root/{train,<test>}/<class>/<i>.png: per class (train, test) images, each class a flat colour plus
    noise (learnable), sizes (h, w) in turn."""
    rng = np.random.default_rng(0)
    for c, (name, counts) in enumerate(classes.items()):
        for split, count in zip(("train", test), counts):
            if count:  # 0: the class folder is missing from that split
                (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = sizes[i % len(sizes)]
                pixels = np.clip(rng.normal(40 + 80 * c, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def config(root: Path, path: Path, **data: object) -> dict:
    return trial_config(root, data={"dataset": "folder", "path": str(path), "n_clean": None, "n_test": None,
                                    "cache": str(path / "cache"), "backend": "tensor", **data})["data"]


def test_folder_in_memory_keeps_one_shared_size_and_caches_train_stats(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"ant": (6, 2), "bee": (5, 3), "cat": (4, 2)}, test="test")
    d = config(tmp_path, path)
    built = data.build(d, [{"alpha": 2, "seed": 0}], CPU, 8, 0)
    assert built.shape == (3, 12, 20) and built.num_classes == 3  # one shared size: kept as it is
    full = data.load_split("folder", d["root"], True, *data.split_args(d))
    assert full.labels.tolist() == [0] * 6 + [1] * 5 + [2] * 4  # classes sorted, like ImageFolder
    x = full.images.double() / 255
    assert np.allclose(full.mean, x.mean((0, 2, 3)).numpy()) and np.allclose(full.std, x.std((0, 2, 3), unbiased=False).numpy())
    cached = json.loads(folder.stats_path(datasets.tree(d), 224, Path(d["cache"])).read_text())
    assert cached["mean"] == list(full.mean) and cached["images"] == 15
    assert sum(y.numel() for _, y in built.loader) == 15 * 3
    test_labels = torch.cat([y for _, y in built.test_batches()])
    assert test_labels.tolist() == [0] * 2 + [1] * 3 + [2] * 2


def test_mixed_sizes_are_resized_and_cropped_to_image_size(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"a": (3, 1), "b": (3, 1)}, sizes=((12, 20), (30, 16)))
    d = config(tmp_path, path, image_size=10)
    full = data.load_split("folder", d["root"], True, *data.split_args(d))
    assert tuple(full.images.shape) == (6, 3, 10, 10)


def test_folder_backends_agree_on_labels(tmp_path: Path) -> None:
    """tensor and ffcv (JPEG .betons of the tree) give the same multiset of labels over an epoch with noise, on a
    tree with what ImageFolder would list and the tensor backend would not: a hidden folder beside the classes
    (a notebook's checkpoints), a hidden file, a GIF. The .beton holds the tensor backend's listing."""
    path = tree(tmp_path / "t", {"a": (8, 2), "b": (8, 2), "c": (8, 2)})
    for split in ("train", "val"):
        (path / split / ".ipynb_checkpoints").mkdir()
        Image.new("RGB", (20, 12)).save(path / split / ".ipynb_checkpoints" / "0.png")
    Image.new("RGB", (20, 12)).save(path / "train" / "a" / ".0.png")
    Image.new("RGB", (20, 12)).save(path / "train" / "b" / "8.gif")  # a sample of class b, not in ImageFolder's list
    labels = {}
    for backend in ("tensor", "ffcv"):
        d = config(tmp_path, path, backend=backend, image_size=16, workers=1)
        assert backends.on_disk(d) == (backend == "ffcv")
        if backend == "ffcv":
            assert backends.folder_split(d, True)[1].tolist() == [0] * 8 + [1] * 9 + [2] * 8
        built = data.build(d, [{"alpha": 3, "seed": 4}], CPU, 16, 0)
        labels[backend] = sorted(torch.cat([y[0] for _, y in built.loader]).tolist())
    assert labels["tensor"] == labels["ffcv"] and len(labels["ffcv"]) == 25 * 4


@pytest.mark.parametrize("make,message", [
    (lambda p: (tree(p, {"a": (2, 1)})), "has 1 class folder (a): a classification needs at least 2"),
    (lambda p: (tree(p, {"a": (2, 1), "b": (2, 0)})), "class 'b' of"),
    (lambda p: (tree(p, {"a": (2, 1), "b": (2, 1)}), (p / "train" / "b" / "x.png").write_text("not an image")),
     "x.png is not an image Pillow can read"),
    (lambda p: (p / "train" / "a").mkdir(parents=True), "holding train/<class>/ and val/<class>/"),
])
def test_bad_trees_one_line(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad"
    make(path)
    with pytest.raises(UsageError) as err:
        datasets.tree({"dataset": "folder", "path": str(path)})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_class_missing_from_val_named_by_the_launcher(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"ant": (2, 1), "bee": (2, 0)})
    proc = launch("data.dataset=folder", f"data.path={path}", "preset=smoke", f"run_dir={tmp_path / 'run'}", timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "class 'bee'" in proc.stderr and "missing from" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_folder_smoke_study_through_the_launcher(tmp_path: Path, data_root: Path, ray_tmpdir: str) -> None:
    """A generated 3-class tree, uniform noise at alpha 0 and 2: the study finishes and learns the clean tree."""
    path = tree(tmp_path / "t", {"a": (40, 20), "b": (40, 20), "c": (40, 20)})
    run = tmp_path / "run"
    proc = launch("data.dataset=folder", f"data.path={path}", "preset=smoke", "data.n_clean=null", "data.n_test=null",
                  "grid.model.arch=[conv2]", "figures=[]", "grid.noise.alpha=[0,2]", "grid.train.lr=[0.05]", "train.epochs=3",
                  "train.batch_size=16", f"data.cache={tmp_path / 'cache'}", f"run_dir={run}", timeout=600,
                  env={"RAY_TMPDIR": ray_tmpdir})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = pd.read_csv(run / "trials.csv")
    assert sorted(trials["alpha"]) == [0, 2] and (trials["status"] == "ok").all()
    assert trials["test_acc"].max() > 0.6  # three flat colours: far above chance (1/3)


def test_classes_and_samples_in_imagefolder_order(tmp_path: Path) -> None:
    """Mixed-case class names, digits, nested folders and names that sort differently as paths and as strings:
    the class indices and every (file, class) sample in torchvision ImageFolder's order, so that noise.labels
    indexed by an ImageFolder's samples names the same images."""
    from torchvision.datasets import ImageFolder

    names = ["b", "Apple", "a", "B", "_x", "10", "9", "apple", "Zebra"]
    path = tmp_path / "t"
    for split in ("train", "val"):
        for name in names:
            for file in ("z.png", "sub/a.png", "sub-1.png", "sub/deeper/c.png", "A.png", "b.png"):
                (path / split / name / file).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (4, 4)).save(path / split / name / file)
    listed = folder.scan(str(path))
    for split, samples in (("train", listed.train), ("val", listed.test)):
        reference = ImageFolder(str(path / split))
        assert list(listed.classes) == reference.classes == sorted(names)
        assert list(samples) == reference.samples, split


def test_symlinked_folders_are_followed_as_imagefolder_does(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    path = tree(tmp_path / "t", {"a": (2, 1), "b": (2, 1)})
    elsewhere = tmp_path / "more"
    elsewhere.mkdir()
    Image.new("RGB", (20, 12)).save(elsewhere / "x.png")
    (path / "train" / "b" / "linked").symlink_to(elsewhere, target_is_directory=True)
    listed = folder.scan(str(path))
    assert list(listed.train) == ImageFolder(str(path / "train")).samples
    assert (str(path.resolve() / "train" / "b" / "linked" / "x.png"), 1) in listed.train


def test_only_visible_folders_are_classes(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"a": (2, 1), "b": (2, 1)})
    for split in ("train", "val"):
        (path / split / ".cache").mkdir()
        Image.new("RGB", (20, 12)).save(path / split / ".cache" / "0.png")
        (path / split / "README.txt").write_text("not a class")
    assert folder.scan(str(path)).classes == ("a", "b")


def test_an_empty_class_folder_and_an_unreadable_file_are_named(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"a": (2, 1), "b": (2, 1)})
    for image in (path / "val" / "b").iterdir():
        image.unlink()
    (path / "val" / "b" / ".keep").write_text("")  # hidden: no image
    with pytest.raises(UsageError) as err:
        folder.scan(str(path))
    assert str(err.value) == (f"class folder {path.resolve() / 'val' / 'b'} holds no image: every class needs images "
                              "in every split")
    path = tree(tmp_path / "u", {"a": (2, 1), "b": (2, 1)})
    (path / "train" / "a" / "notes.png").write_text("not an image")
    with pytest.raises(UsageError) as err:
        folder.scan(str(path))
    assert str(err.value) == (f"{path.resolve() / 'train' / 'a' / 'notes.png'} is not an image Pillow can read "
                              "(UnidentifiedImageError): remove or replace it")


def test_the_test_split_folder_even_when_a_class_holds_only_subfolders(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"a": (2, 0), "b": (2, 1)}, test="test")
    (path / "test" / "a" / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 12)).save(path / "test" / "a" / "sub" / "0.png")
    listed = folder.scan(str(path))
    assert listed.test[0] == (str(path.resolve() / "test" / "a" / "sub" / "0.png"), 0)
    assert listed.split_dir(False) == path.resolve() / "test" and listed.split_dir(True) == path.resolve() / "train"


def test_grey_and_palette_images_become_rgb(tmp_path: Path) -> None:
    path = tree(tmp_path / "t", {"a": (1, 1), "b": (1, 1)})
    Image.new("L", (20, 12), 77).save(path / "train" / "a" / "0.png")
    Image.new("P", (20, 12), 3).save(path / "train" / "b" / "0.png")
    images, labels = folder.read(folder.scan(str(path)), True, 16, keep_size=True)
    assert images.shape == (2, 3, 12, 20) and labels.tolist() == [0, 1] and labels.dtype == torch.int64
    assert (images[0] == 77).all() and (images[1] == images[1][0]).all()  # grey: three equal channels


def test_downscaling_averages_the_pixels_it_drops(tmp_path: Path) -> None:
    """Resized with antialiasing, as ImageNet's transforms do: iid noise 64x64 -> 16x16 keeps a std of 12
    (36 without: 4 of every 16 pixels read)."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    x = folder.image(str(tmp_path / "noise.png"), 16, keep_size=False)
    assert x.shape == (3, 16, 16) and float(x.double().std()) < 20


def test_stats_of_a_mixed_size_tree_read_from_disk_are_those_of_its_resized_images(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tree(tmp_path / "t", {"a": (3, 1), "b": (3, 1)}, sizes=((12, 20), (30, 16)))
    listed = folder.scan(str(path))
    images, _ = folder.read(listed, True, 10, keep_size=False)
    cache = tmp_path / "deep" / "cache"  # made, parents too
    from_disk = folder.stats(listed, 10, cache)
    x = images.double() / 255
    assert np.allclose(from_disk[0], x.mean((0, 2, 3)).numpy())
    assert np.allclose(from_disk[1], x.std((0, 2, 3), unbiased=False).numpy())
    written = cache / f"{listed.key}-train-3x10x10-stats-v1.json"
    assert folder.stats_path(listed, 10, cache) == written
    assert json.loads(written.read_text()) == {"mean": list(from_disk[0]), "std": list(from_disk[1]), "images": 6,
                                               "folder": str(path.resolve())}
    monkeypatch.setattr(folder, "image", lambda *a: pytest.fail("read from disk although the images were given"))
    given = folder.stats(listed, 8, cache, images[:, :, :8, :8])  # any given images: these are what it averages
    assert (cache / f"{listed.key}-train-3x8x8-stats-v1.json").is_file()  # beside the first: the folder exists
    assert np.allclose(given[0], (images[:, :, :8, :8].double() / 255).mean((0, 2, 3)).numpy())


def test_stats_of_a_one_size_tree_read_from_disk_are_those_of_its_images_as_they_are(tmp_path: Path) -> None:
    """A tree whose images share one size is kept at that size (no resize to image_size): so are its stats."""
    path = tree(tmp_path / "t", {"a": (2, 1), "b": (2, 1)}, sizes=((12, 20),))
    listed = folder.scan(str(path))
    assert listed.shape == (3, 12, 20) and listed.image_shape(8) == (3, 12, 20)
    x = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f, _ in listed.train]).double() / 255
    mean, std = folder.stats(listed, 8, tmp_path / "cache")
    assert np.allclose(mean, x.mean((0, 2, 3)).numpy()) and np.allclose(std, x.std((0, 2, 3), unbiased=False).numpy())
    assert (tmp_path / "cache" / f"{listed.key}-train-3x12x20-stats-v1.json").is_file()
