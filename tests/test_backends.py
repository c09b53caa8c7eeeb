"""loaders.backends' choices, each at its boundary: the memory a CPU has free, auto's tensor-or-ffcv rule, the
worker counts, the loader each data.backend gives, and prepare's one checked .beton."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from errors import UsageError
from loaders import backends, beton, datasets, folder
from loaders.datasets import ImageSet
from loaders.ffcv_loader import VirtualLoader
from loaders.noise import NoiseModel, NoiseSpec
from loaders.tensor import TensorLoader
from loaders.torch_loader import TorchLoader
from tests.conftest import image_folders

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny() -> ImageSet:
    """24 random 1x4x4 images, 3 classes."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 4, 4), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(24) % 3, 3, (0.5,), (0.25,))


def test_free_memory_of_a_cpu_is_its_available_pages() -> None:
    free = backends.free_memory(CPU)
    expected = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert free > 0 and abs(free - expected) <= expected // 10  # available RAM moves a little between the calls


@pytest.mark.parametrize("backend", ["tensor", "torch", "ffcv"])
def test_a_named_backend_is_kept_whatever_it_needs(backend: str) -> None:
    assert backends.choose(backend, 10**15, 10**12, 50, CPU) == backend


@pytest.mark.parametrize("free,reserved,expected", [(300, 100, 300), (900, 100, 400), (900, 600, 0)])
def test_free_memory_of_a_gpu_is_its_free_bytes_within_the_process_share(free: int, reserved: int, expected: int,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A trial with half a GPU of 1,000 bytes, `reserved` of them held by its own allocator: at most its share
    (500 - reserved, never below 0), at most what the device has free. Each call asks about the trial's device."""
    gpu, asked = torch.device("cuda", 1), []

    def on(value):
        return lambda device: asked.append(device) or value

    monkeypatch.setattr(torch.cuda, "mem_get_info", on((free, 1000)))
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction", on(0.5))
    monkeypatch.setattr(torch.cuda, "memory_reserved", on(reserved))
    assert backends.free_memory(gpu) == expected and asked == [gpu] * 3


@pytest.mark.parametrize("members", [1, 4])
def test_auto_takes_the_tensor_loader_up_to_half_the_free_memory(members: int, monkeypatch: pytest.MonkeyPatch) -> None:
    free = 2 * 10_000 + 1  # odd: half of it rounds down
    monkeypatch.setattr(backends, "free_memory", lambda device: free)
    n_virtual = 100
    table = 8 * (2 + members) * n_virtual  # order, sources and one label per member, int64 each
    fits = free // 2 - table
    assert backends.choose("auto", fits, n_virtual, members, CPU) == "tensor"
    assert backends.choose("auto", fits + 1, n_virtual, members, CPU) == "ffcv"


def test_choose_asks_about_the_device_given(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr(backends, "free_memory", lambda device: asked.append(device) or 10**12)
    cuda = torch.device("cuda", 1)
    assert backends.choose("auto", 1, 1, 1, cuda) == "tensor" and asked == [cuda]


def test_writers_are_data_workers_else_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backends.writers({"workers": 3}) == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert backends.writers({}) == 7 and backends.writers({"workers": None}) == 7 and backends.writers({"workers": 0}) == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # os.cpu_count may not know
    assert backends.writers({}) == 1


def test_loader_workers_are_data_workers_else_the_trials_threads() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert backends.loader_workers({}) == 3 and backends.loader_workers({"workers": None}) == 3
        assert backends.loader_workers({"workers": 0}) == 0 and backends.loader_workers({"workers": 5}) == 5
    finally:
        torch.set_num_threads(threads)


def test_importing_ffcv_keeps_the_thread_count() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        module = backends.import_ffcv()
        assert module.VirtualLoader is VirtualLoader and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("backend,kind", [("tensor", TensorLoader), ("torch", TorchLoader), ("ffcv", VirtualLoader)])
def test_make_gives_each_backends_loader_over_the_rows(backend: str, kind: type, tiny: ImageSet, tmp_path: Path) -> None:
    rows = torch.tensor([0, 2, 4, 6, 8, 10, 12, 14])
    noise = NoiseModel(NoiseSpec(alpha=1.0, seed=1), tiny.labels[rows], 3)
    cfg = {"backend": backend, "cache": str(tmp_path), "workers": 1}
    loader = backends.make(cfg, "tiny", tiny, rows, [noise], 4, 0, CPU)
    assert type(loader) is kind
    assert backend != "tensor" or loader.device == CPU
    # each served image, normalised with the set's stats on the way, is one of the rows', each row twice (1 + alpha)
    served = [tuple(torch.round((img * 0.25 + 0.5) * 255).to(torch.uint8).flatten().tolist()) for x, _ in loader for img in x]
    assert sorted(served) == sorted(tuple(img.flatten().tolist()) for img in tiny.images[rows.repeat(2)])
    if backend == "ffcv":  # the .beton of the whole set, under its name, in the cache given
        assert [p.name.split("-")[:3] for p in tmp_path.glob("*.beton")] == [["tiny", "train", "n24"]]


def test_auto_makes_the_tensor_loader_when_it_fits(tiny: ImageSet, tmp_path: Path) -> None:
    rows = torch.arange(6)
    noise = NoiseModel(NoiseSpec(alpha=0.0, seed=0), tiny.labels[rows], 3)
    assert type(backends.make({"cache": str(tmp_path)}, "tiny", tiny, rows, [noise], 2, 0, CPU)) is TensorLoader
    assert not list(tmp_path.iterdir())  # no .beton written


def test_auto_makes_the_ffcv_loader_when_the_images_do_not_fit(tiny: ImageSet, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rows = torch.arange(6)
    noise = NoiseModel(NoiseSpec(alpha=0.0, seed=0), tiny.labels[rows], 3)
    need = 6 * 16 + 8 * 3 * 6  # six 1x4x4 uint8 images, then the order, sources and labels of 6 virtual indices
    monkeypatch.setattr(backends, "free_memory", lambda device: 2 * need - 2)
    assert type(backends.make({"cache": str(tmp_path), "workers": 1}, "tiny", tiny, rows, [noise], 2, 0, CPU)) is VirtualLoader


def test_make_writes_the_beton_again_only_with_rebuild(tiny: ImageSet, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Without data.rebuild (a caller's cfg may lack the key), make keeps the .beton there: a corrupt one is an
    error naming data.rebuild; with it, the file is written again."""
    rows = torch.arange(6)
    noise = NoiseModel(NoiseSpec(alpha=0.0, seed=0), tiny.labels[rows], 3)
    cfg = {"backend": "ffcv", "cache": str(tmp_path), "workers": 1}
    backends.make(cfg, "tiny", tiny, rows, [noise], 2, 0, CPU)
    [path] = tmp_path.glob("*.beton")
    path.write_bytes(path.read_bytes()[:100])
    capsys.readouterr()
    with pytest.raises(UsageError, match="data.rebuild=true"):
        backends.make(cfg, "tiny", tiny, rows, [noise], 2, 0, CPU)
    assert "writing" not in capsys.readouterr().out
    loader = backends.make({**cfg, "rebuild": True}, "tiny", tiny, rows, [noise], 2, 0, CPU)
    assert f"writing {path}" in capsys.readouterr().out and sum(len(y[0]) for _, y in loader) == 6


def test_make_hands_ffcv_one_worker_at_least_and_the_relabel_choice(tiny: ImageSet, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """data.workers=0 (torch: load in the main process) is one FFCV worker, for writing and for loading."""
    from loaders import ffcv_loader

    seen: dict[str, list] = {"ensure": [], "loader": []}
    ensure, loader = beton.ensure, ffcv_loader.VirtualLoader
    monkeypatch.setattr(beton, "ensure", lambda *args: seen["ensure"].append(args) or ensure(*args))
    monkeypatch.setattr(ffcv_loader, "VirtualLoader", lambda *args, **kw: seen["loader"].append((args, kw)) or loader(*args, **kw))
    rows = torch.arange(6)
    noise = NoiseModel(NoiseSpec(alpha=1.0, seed=0), tiny.labels[rows], 3)
    backends.make({"backend": "ffcv", "cache": str(tmp_path), "workers": 0}, "tiny", tiny, rows, [noise], 2, 0, CPU,
                  relabel=False)
    [(_, _, _, rebuild, workers)] = seen["ensure"]
    [(args, kw)] = seen["loader"]
    assert (rebuild, workers) == (False, 1) and args[6] == 1 and kw == {"relabel": False}


def test_prepare_writes_one_checked_beton_and_reuses_it(tiny: ImageSet, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = {"cache": str(tmp_path), "workers": 1}
    backends.prepare("tiny", tiny, cfg)
    [path] = tmp_path.glob("*.beton")
    assert path.name.startswith("tiny-train-n24-") and beton.labels(path).tolist() == tiny.labels.tolist()
    assert f"writing {path}" in capsys.readouterr().out
    backends.prepare("tiny", tiny, cfg)  # kept: not written again
    assert "writing" not in capsys.readouterr().out
    backends.prepare("tiny", tiny, {**cfg, "rebuild": True})
    assert f"writing {path}" in capsys.readouterr().out
    path.write_bytes(path.read_bytes()[:100])  # a corrupt file is one line, not failed trials
    with pytest.raises(UsageError, match="truncated or corrupt"):
        backends.prepare("tiny", tiny, cfg)


@pytest.mark.parametrize("backend,size,expected", [("ffcv", 1, True), ("auto", 2, False), ("auto", 3, True),
                                                   ("tensor", 3, False), ("torch", 3, False)])
def test_a_folder_is_on_disk_with_ffcv_or_when_auto_finds_it_too_big(backend: str, size: int, expected: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "FOLDER_MAX_IMAGES", 2)
    monkeypatch.setattr(datasets, "tree", lambda cfg: type("Tree", (), {"train": [0] * size})())
    assert backends.on_disk({"dataset": "folder", "backend": backend}) is expected


@pytest.mark.parametrize("backend,present,expected", [("ffcv", True, True), ("auto", True, True), (None, True, True),
                                                      ("auto", False, False), ("tensor", True, False),
                                                      ("torch", True, False)])
def test_imagenet_is_on_disk_when_present_and_not_forced_into_memory(backend: str | None, present: bool,
                                                                     expected: bool, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []
    monkeypatch.setattr(datasets, "present", lambda name, root: asked.append((name, root)) or present)
    cfg = {"dataset": "imagenet", "root": str(tmp_path), **({"backend": backend} if backend else {})}
    assert backends.on_disk(cfg) is expected
    assert asked in ([], [("imagenet", tmp_path)])


def test_mnist_is_never_on_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "present", lambda name, root: True)
    assert not backends.on_disk({"dataset": "mnist", "backend": "ffcv", "root": str(tmp_path)})


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """The arguments each .beton and stats call gets: the real functions run, their arguments are recorded."""
    seen: dict[str, list] = {"folder_beton": [], "stats": []}
    for module, name in ((beton, "folder_beton"), (folder, "stats")):
        real = getattr(module, name)

        def record(*args, _real=real, _name=name):
            seen[_name].append(args)
            return _real(*args)

        monkeypatch.setattr(module, name, record)
    return seen


@pytest.mark.parametrize("train", [True, False])
def test_imagenets_split_is_listed_by_imagefolder_with_the_default_beton_settings(train: bool, tmp_path: Path,
                                                                                calls: dict[str, list]) -> None:
    image_folders(tmp_path, {"train": 3, "val": 2}, classes=2)
    cfg = {"dataset": "imagenet", "root": str(tmp_path), "cache": str(tmp_path / "c"), "workers": 1}
    path, labels = backends.folder_split(cfg, train)
    split = tmp_path / "imagenet" / ("train" if train else "val")
    per_class = 3 if train else 2
    assert labels.tolist() == [0] * per_class + [1] * per_class
    [(where, samples, cache, resolution, quality, rebuild, workers)] = calls["folder_beton"]
    assert (where, cache, resolution, quality, rebuild, workers) == (split, tmp_path / "c", 256, 90, False, 1)
    assert samples == ImageFolder(str(split)).samples and path.parent == tmp_path / "c"


def test_a_folders_split_follows_the_data_settings(tmp_path: Path, calls: dict[str, list],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "t"
    for c, name in enumerate(("ant", "bee")):
        for split, count in (("train", 3), ("val", 1)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (10, 8), (60 * c, 0, 0)).save(root / split / name / f"{i}.png")
    cfg = {"dataset": "folder", "path": str(root), "cache": str(tmp_path / "c"), "workers": 1,
           "max_resolution": 32, "jpeg_quality": 50}
    path, labels = backends.folder_split(cfg, False)
    assert labels.tolist() == [0, 1] and "-jpg-r32-q50-" in path.name
    [(where, samples, cache, resolution, quality, rebuild, workers)] = calls["folder_beton"]
    tree = datasets.tree(cfg)
    assert (where, samples, cache, resolution, quality, rebuild) == (tree.split_dir(False), tree.split(False),
                                                                     tmp_path / "c", 32, 50, False)
    capsys.readouterr()
    backends.folder_split({**cfg, "rebuild": True}, False)
    assert calls["folder_beton"][1][5] is True and f"writing {path}" in capsys.readouterr().out
    _, labels = backends.folder_split(cfg, True)
    assert calls["folder_beton"][2][:2] == (tree.split_dir(True), tree.split(True)) and labels.tolist() == [0] * 3 + [1] * 3


@pytest.mark.parametrize("dataset", ["folder", "imagenet"])
def test_folder_loader_normalises_with_the_trees_own_stats_or_imagenets(dataset: str, tmp_path: Path,
                                                                        calls: dict[str, list],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    image_folders(tmp_path, {"train": 2, "val": 1}, classes=2)
    cfg = {"dataset": dataset, "root": str(tmp_path), "path": str(tmp_path / "imagenet"), "cache": str(tmp_path / "c"),
           "image_size": 8, "workers": 1}
    path, labels = backends.folder_split(cfg, True)
    made = []  # the loader's arguments (VirtualLoader itself is tested in tests/test_loaders.py)
    monkeypatch.setattr(backends, "import_ffcv", lambda: type("M", (), {"VirtualLoader": lambda *a, **k: made.append((a, k))}))
    noise = NoiseModel(NoiseSpec(alpha=0.0, seed=0), labels, 2)
    backends.folder_loader(cfg, path, torch.arange(4), [noise], 2, 5, CPU)
    [(args, kw)] = made
    mean, std = datasets.STATS["imagenet"]
    if dataset == "folder":
        [(tree, size, cache)] = calls["stats"]
        assert (tree.path, size, cache) == (datasets.tree(cfg).path, 8, tmp_path / "c")
        mean, std = folder.stats(datasets.tree(cfg), 8, tmp_path / "c")
        assert mean != datasets.STATS["imagenet"][0]
    else:
        assert calls["stats"] == []
    assert args[0] == path and args[1].tolist() == [0, 1, 2, 3] and args[3:] == (2, 5, CPU, 1, mean, std)
    assert kw == {"jpeg_size": 8}


def test_folder_loader_defaults_to_224_pixels(tmp_path: Path, calls: dict[str, list], monkeypatch: pytest.MonkeyPatch) -> None:
    image_folders(tmp_path, {"train": 1, "val": 1}, classes=2)
    cfg = {"dataset": "folder", "path": str(tmp_path / "imagenet"), "workers": 0}
    made = []
    monkeypatch.setattr(backends, "import_ffcv", lambda: type("M", (), {"VirtualLoader": lambda *a, **k: made.append((a, k))}))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    backends.folder_loader(cfg, tmp_path / "x.beton", torch.arange(2), [], 2, 0, CPU)
    [(_, size, cache)] = calls["stats"]
    assert size == 224 and cache == datasets.user_dir() / "ffcv" and made[0][1] == {"jpeg_size": 224}
    assert made[0][0][6] == 1  # at least one loader worker
