"""loaders.beton by exact values, fast (a 3-image ImageSet, three tiny PNGs, no FFCV pipeline, no real dataset).

Covers: imageset_beton's and folder_beton's file names (dataset, split, count, shape, FORMAT; folder name, the
10-hex-digit key of its resolved path, resolution, quality, FOLDER_FORMAT), the fields each hands the writer (names,
order, dtype, shape, JPEG options), the (image, label) pairs _Pairs and _Files give the writer (any PNG mode made
RGB, labels as listed), when a file is written (missing, or rebuild) and when it is kept, the default worker count;
_write (missing parent folders made, the "writing <path>" line flushed before the writer starts, the workers
asked for, no temp file left); the bytes written, read back with ffcv.reader.Reader (pixels, labels, JPEG mode,
size and quality); labels (exact int64 values); check on a good file, a header-only empty set, and files cut or
patched at each of its tests (its one-line message names the file; a bad header never reaches FFCV's Reader);
ensure (the train split, a str cache folder, a corrupt cached file refused, then rewritten with rebuild, then kept).

Stand-ins, each a monkeypatch: `writes` replaces beton._write by a recorder of its arguments that writes nothing
(the naming, field and rebuild tests need no file, and a broken field would hang FFCV's writer, whose workers
fail silently); `Writer`, a subclass of FFCV's DatasetWriter that notes the worker count it settles on and what
stdout had flushed when it started, then writes for real; `readers`, a recorder of the paths FFCV's Reader is
opened on (the real Reader runs). Every test runs in its own tmp_path as the working folder and the user cache dir
($XDG_CACHE_HOME), so nothing lands elsewhere even when a file name is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from ffcv.fields import IntField, NDArrayField, RGBImageField
from ffcv.reader import Reader
from ffcv.types import HeaderType
from ffcv.writer import DatasetWriter
from PIL import Image

from errors import UsageError
from loaders import beton
from loaders.datasets import ImageSet

SHAPE = (1, 2, 3)  # C, H, W: three distinct sizes, so a dropped or reordered axis shows in the name
LABELS = [2, 0, 1]
RED, GREEN = (200, 30, 60), (20, 220, 90)  # the solid colours of the RGB and RGBA images
GREY = 128  # the greyscale image's level: (128, 128, 128) once made RGB


def message(path: Path) -> str:
    return f"{path} is truncated or corrupt: delete it or pass data.rebuild=true to write it again"


def toy_set() -> ImageSet:
    """Three 1x2x3 images; image i holds 10 * i + 0..5, so each image and each pixel differ."""
    images = torch.stack([torch.arange(6, dtype=torch.uint8).reshape(SHAPE) + 10 * i for i in range(3)])
    return ImageSet(images, torch.tensor(LABELS), 3, (0.5,), (0.25,))


def png_samples(folder: Path) -> list[tuple[str, int]]:
    """Three 10x20 PNGs in three modes (L, RGBA, RGB), listed out of name order with labels 4, 1, 0."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("L", (20, 10), GREY).save(folder / "c.png")
    Image.new("RGBA", (20, 10), (*GREEN, 255)).save(folder / "b.png")
    Image.new("RGB", (20, 10), RED).save(folder / "a.png")
    return [(str(folder / "c.png"), 4), (str(folder / "b.png"), 1), (str(folder / "a.png"), 0)]


def folder_key(folder: Path) -> str:
    """The 10 hex digits that keep two folders of one name apart: the start of the resolved path's SHA-1."""
    return hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:10]


@pytest.fixture(autouse=True)
def inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tmp_path is the working folder and the user cache dir: a file written under a wrong name lands there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """beton._write replaced by a recorder of (path, fields, dataset, workers): nothing is written."""
    calls: list[tuple] = []
    monkeypatch.setattr(beton, "_write", lambda *args: calls.append(args))
    return calls


class Flushed(io.StringIO):
    """stdout that keeps what it held at its last flush (a log file shows no more)."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = ""

    def flush(self) -> None:
        self.shown = self.getvalue()


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """FFCV's DatasetWriter, noting per write its file, the worker count it settled on and the stdout shown."""
    seen: list[dict] = []

    class Writer(DatasetWriter):
        def __init__(self, fname: str, fields: dict, **kwargs) -> None:
            super().__init__(fname, fields, **kwargs)
            shown = getattr(sys.stdout, "shown", None)
            seen.append({"file": Path(fname), "workers": self.num_workers, "shown": shown})

    monkeypatch.setattr(beton, "DatasetWriter", Writer)
    return seen


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FFCV's Reader is opened on; the real Reader runs."""
    opened: list[str] = []
    monkeypatch.setattr(beton, "Reader", lambda path: opened.append(path) or Reader(path))
    return opened


def pixels(path: Path, reader: Reader, i: int) -> bytes:
    """The bytes sample i's image holds in the file (its allocation, found by the pointer in its metadata)."""
    [entry] = [row for row in reader.alloc_table if row["sample_id"] == i]
    with open(path, "rb") as f:
        f.seek(int(entry["ptr"]))
        return f.read(int(entry["size"]))


# ------------------------------------------------------------------------- names, fields, pairs: nothing written


def test_imageset_beton_name_keys_set_split_count_shape_and_format(tmp_path: Path, writes: list[tuple]) -> None:
    path = beton.imageset_beton("toy", "val", toy_set(), tmp_path / "cache")
    assert path == tmp_path / "cache" / "toy-val-n3-ndarray-uint8-1x2x3-v1.beton"
    [(written, _, _, workers)] = writes
    assert written == path and workers == 2  # two workers unless told


def test_imageset_beton_fields_are_uint8_arrays_of_the_image_shape_then_an_int_label(writes: list[tuple]) -> None:
    beton.imageset_beton("toy", "train", toy_set(), Path("cache"), workers=1)
    [(_, fields, _, workers)] = writes
    assert list(fields) == ["image", "label"] and workers == 1  # order matters: labels() finds "label" by position
    image, label = fields.values()
    assert type(image) is NDArrayField and image.dtype == np.dtype("uint8") and tuple(image.shape) == SHAPE
    assert type(label) is IntField


def test_imageset_pairs_give_each_image_with_its_own_int_label(writes: list[tuple]) -> None:
    data = toy_set()
    beton.imageset_beton("toy", "train", data, Path("cache"))
    [(_, _, pairs, _)] = writes
    assert len(pairs) == 3
    for i in range(3):
        image, label = pairs[i]
        assert np.array_equal(image, np.arange(6, dtype=np.uint8).reshape(SHAPE) + 10 * i)
        assert type(label) is int and label == LABELS[i]  # a Python int, as FFCV's IntField stores it


def test_folder_beton_name_keys_folder_path_resolution_quality_and_format(tmp_path: Path, writes: list[tuple]) -> None:
    folder = tmp_path / "one" / "imgs"
    samples = png_samples(folder)
    path = beton.folder_beton(Path("one/imgs"), samples, tmp_path / "cache", 8, 50)  # relative: resolved first
    key = folder_key(folder)
    assert re.fullmatch(r"[0-9a-f]{10}", key)
    assert path == tmp_path / "cache" / f"imgs-{key}-jpg-r8-q50-v2.beton"
    assert beton.folder_beton(folder, samples, tmp_path / "cache", 8, 50) == path  # absolute: the same file
    other = beton.folder_beton(tmp_path / "two" / "imgs", samples, tmp_path / "cache", 8, 50)
    assert other.name.startswith("imgs-") and other != path  # two folders of one name stay apart
    assert [call[3] for call in writes] == [2, 2, 2]  # two workers unless told


def test_folder_beton_fields_are_jpegs_of_the_asked_size_and_quality_then_an_int_label(writes: list[tuple]) -> None:
    beton.folder_beton(Path("imgs"), [], Path("cache"), 8, 50, workers=1)
    [(_, fields, files, workers)] = writes
    assert list(fields) == ["image", "label"] and workers == 1 and len(files) == 0
    image, label = fields.values()
    assert type(image) is RGBImageField and type(label) is IntField
    assert (image.write_mode, image.max_resolution, image.jpeg_quality) == ("jpg", 8, 50)


def test_folder_files_open_each_listed_image_as_rgb_with_its_listed_label(tmp_path: Path,
                                                                          writes: list[tuple]) -> None:
    beton.folder_beton(tmp_path, png_samples(tmp_path / "imgs"), Path("cache"), 8, 50)
    [(_, _, files, _)] = writes
    assert len(files) == 3
    for i, (colour, label) in enumerate([((GREY,) * 3, 4), (GREEN, 1), (RED, 0)]):  # in the listed order
        image, got = files[i]
        assert image.mode == "RGB" and image.size == (20, 10) and got == label  # L and RGBA made RGB
        assert np.array_equal(np.asarray(image), np.full((10, 20, 3), colour, np.uint8))


@pytest.mark.parametrize("kind", ["imageset", "folder"])
def test_a_file_is_written_when_missing_or_rebuilt_and_kept_otherwise(kind: str, tmp_path: Path,
                                                                      writes: list[tuple]) -> None:
    def make(**rebuild: bool) -> Path:
        if kind == "imageset":
            return beton.imageset_beton("toy", "train", toy_set(), tmp_path, **rebuild)
        return beton.folder_beton(tmp_path / "imgs", [], tmp_path, 8, 50, **rebuild)

    path = make(rebuild=False)
    assert [call[0] for call in writes] == [path]  # missing: written
    path.write_bytes(b"")  # the recorder wrote nothing: the file is there now
    assert make() == path and make(rebuild=False) == path and len(writes) == 1  # there: kept
    assert make(rebuild=True) == path and [call[0] for call in writes] == [path, path]  # rebuild: written again


# --------------------------------------------------------------------------------------- written for real


def test_imageset_beton_is_written_with_its_pixels_and_labels_through_a_temp_file(tmp_path: Path,
                                                                                started: list[dict]) -> None:
    cache = tmp_path / "a" / "b"  # neither folder there yet
    with contextlib.redirect_stdout(Flushed()) as out:
        path = beton.imageset_beton("toy", "train", toy_set(), cache, workers=1)
    [writer] = started
    assert out.getvalue() == f"writing {path}\n" and writer["shown"] == f"writing {path}\n"  # shown before writing
    assert writer["workers"] == 1  # the count asked for, not FFCV's default of every core
    assert writer["file"].parent == cache and writer["file"].name.startswith(f".{path.name}.")  # a temp file beside
    assert os.listdir(cache) == [path.name]  # renamed into place: no temp file left
    reader = Reader(str(path))
    assert list(reader.handlers) == ["image", "label"] and int(reader.num_samples) == 3
    assert reader.metadata["f1"].tolist() == LABELS
    for i in range(3):
        assert pixels(path, reader, i) == bytes(range(10 * i, 10 * i + 6))  # C, H, W order, raw
    assert beton.labels(path).dtype == torch.int64 and beton.labels(path).tolist() == LABELS
    beton.check(path)


def test_folder_beton_is_written_as_jpegs_of_the_asked_size_and_quality(tmp_path: Path) -> None:
    path = beton.folder_beton(tmp_path / "imgs", png_samples(tmp_path / "imgs"), tmp_path / "cache", 8, 50,
                              workers=1)
    reader = Reader(str(path))
    image = reader.metadata["f0"]
    assert image["mode"].tolist() == [0] * 3  # FFCV's mode 0: JPEG
    assert image["width"].tolist() == [8] * 3 and image["height"].tolist() == [4] * 3  # 20x10 scaled by 8/20
    assert beton.labels(path).tolist() == [4, 1, 0]
    for i, colour in enumerate([(GREY,) * 3, GREEN, RED]):
        jpeg = Image.open(io.BytesIO(pixels(path, reader, i)))
        assert jpeg.format == "JPEG" and jpeg.size == (8, 4)
        assert jpeg.quantization[0][:8] == [16, 11, 10, 16, 24, 40, 51, 61]  # quality 50: the standard table as is
        mean = np.asarray(jpeg.convert("RGB")).reshape(-1, 3).mean(0)
        assert np.abs(mean - colour).max() < 4  # a solid colour survives JPEG within a few levels
    beton.check(path)


def test_ensure_refuses_a_corrupt_cached_file_until_rebuilt_then_keeps_it(tmp_path: Path,
                                                                        started: list[dict]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / "toy-train-n3-ndarray-uint8-1x2x3-v1.beton"  # the training split's file
    path.write_bytes(b"\0" * 10)  # a file cut short, left by an earlier run
    with pytest.raises(UsageError) as err:
        beton.ensure("toy", toy_set(), str(cache), rebuild=False, workers=1)  # data.cache comes as a str
    assert str(err.value) == message(path) and path.stat().st_size == 10 and not started  # checked, not rewritten
    corrupt = path.stat().st_ino
    assert beton.ensure("toy", toy_set(), str(cache), rebuild=True, workers=1) == path
    assert [w["workers"] for w in started] == [1] and path.stat().st_ino != corrupt  # a new file renamed in
    assert beton.labels(path).tolist() == LABELS
    before = path.stat()
    assert beton.ensure("toy", toy_set(), str(cache), rebuild=False, workers=1) == path
    after = path.stat()
    assert len(started) == 1 and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert os.listdir(cache) == [path.name]


# ----------------------------------------------------------------------------- check, on cut and patched files


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of the toy set's .beton, written once for the check tests (in a folder of its own)."""
    where = tmp_path_factory.mktemp("good")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        return beton.imageset_beton("toy", "train", toy_set(), where, workers=1).read_bytes()


def header(data: bytes) -> np.void:
    return np.frombuffer(data[:HeaderType.itemsize], HeaderType)[0].copy()


def patched(data: bytes, **fields: int) -> bytes:
    """data with header fields set."""
    head = header(data)
    for name, value in fields.items():
        head[name] = value
    return head.tobytes() + data[HeaderType.itemsize:]


def refused(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    with pytest.raises(UsageError) as err:
        beton.check(path)
    assert str(err.value) == message(path)


def test_check_passes_the_written_file_and_reads_it_once(tmp_path: Path, good: bytes, readers: list[str]) -> None:
    path = tmp_path / "ok.beton"
    path.write_bytes(good)
    beton.check(path)
    assert readers == [str(path)]


def test_check_reads_the_header_and_tables_not_the_images(tmp_path: Path, good: bytes) -> None:
    """A .beton may be gigabytes: check must not load it whole (here 16 MiB, two 8 MiB pages, almost all data)."""
    path = tmp_path / "ok.beton"
    path.write_bytes(good)
    tracemalloc.start()
    try:
        beton.check(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(good) > 16 << 20 and peak < 1 << 20


def test_check_passes_a_header_only_file_of_an_empty_set(tmp_path: Path) -> None:
    path = tmp_path / "empty.beton"
    path.write_bytes(patched(bytes(24), version=2, alloc_table_ptr=24))  # 24 bytes: the header, its table at the end
    beton.check(path)


def test_check_names_a_file_shorter_than_the_header_without_reading_it(tmp_path: Path, good: bytes,
                                                                       readers: list[str]) -> None:
    refused(tmp_path / "short.beton", good[:23])
    assert not readers


@pytest.mark.parametrize("case", ["old version", "table at byte 0", "table past the end"])
def test_check_refuses_a_bad_header_before_ffcv_reads_it(case: str, tmp_path: Path, good: bytes,
                                                         readers: list[str]) -> None:
    """Each with a table length that is a whole number of entries: the header alone (24 bytes) with its table at
    byte 0; the whole file with its table 24 bytes past the end (size - table = -24)."""
    data = {"old version": patched(good, version=1), "table at byte 0": patched(good[:24], alloc_table_ptr=0),
            "table past the end": patched(good, alloc_table_ptr=len(good) + 24)}[case]
    refused(tmp_path / "bad.beton", data)
    assert not readers


def test_check_refuses_a_table_cut_inside_an_entry(tmp_path: Path, good: bytes, readers: list[str]) -> None:
    refused(tmp_path / "cut.beton", good[:-1])
    assert not readers


def test_check_refuses_metadata_cut_short(tmp_path: Path, good: bytes) -> None:
    """The file ends after one sample's metadata and the header points its (empty) table there."""
    metadata_at = 24 + 2 * 1041  # header, then two field descriptors
    data = good[:metadata_at + 16 + 3]  # one 16-byte metadata row (image pointer, label) and 3 bytes of the next
    refused(tmp_path / "meta.beton", patched(data, alloc_table_ptr=len(data)))


def test_check_accepts_data_that_ends_at_the_table_and_refuses_data_past_it(tmp_path: Path, good: bytes) -> None:
    """The data region cut to end exactly where the last image ends (then one byte earlier), the table moved there."""
    reader_table = np.frombuffer(good[header(good)["alloc_table_ptr"]:], beton.ALLOC_TABLE_TYPE)
    end = int((reader_table["ptr"] + reader_table["size"]).max())
    assert end == int(header(good)["page_size"]) + 18  # three 6-byte images from the first data page on
    table = reader_table.tobytes()
    path = tmp_path / "moved.beton"
    path.write_bytes(patched(good[:end] + table, alloc_table_ptr=end))
    beton.check(path)
    refused(path, patched(good[:end - 1] + table, alloc_table_ptr=end - 1))
