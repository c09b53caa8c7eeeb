"""loaders.ffcv_loader by exact values, fast (one tiny .beton, one real FFCV epoch, no real dataset read).

Covers: cache_state_type (the read-only byte type FFCV's OS cache gets instead of numba's interned one),
compile_cache_reader (compiled eagerly for that type; the bytes at an address, sized by the offset table),
image_pipeline (the PipelineSpec's decoder and ops, exact types and order, on the raw and the jpeg_size branch),
VirtualLoader.__init__ (every argument it forwards to FFCV's Loader, the pipelines per field with and without
relabel and white noise, the image table it writes into the reader's metadata and its length check, the white-noise
shape, the attributes, torch's thread count put back), __len__, set_epoch, __iter__ (normalised images in the
requested dtype, labels (K, B) copied, white noise pasted at v >= n, torch's thread count put back at the first
batch, FFCV's iterator closed on an early exit), and one real epoch of a two-member white-noise group checked
image by image and label by label against the order and the noise models.

Stand-ins: one .beton of 24 MNIST-sized images (image i all 10 * i, label i % 10) written by
loaders.beton.imageset_beton into tmp_path_factory, once per module. RecordingLoader replaces ffcv.loader.Loader
(monkeypatch on loaders.ffcv_loader.Loader) wherever only the arguments matter: it notes what it is passed, opens
the real .beton's Reader (header and metadata only, no pipeline compiled), sets torch's thread count to
num_workers as FFCV's Loader does, and serves hand-made batches when iterated. A hand-built (bytes, offsets,
sizes) tuple stands in for the memory-mapped file in the cache-reader test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numba as nb
import numpy as np
import pytest
import torch
from ffcv.fields.basics import IntDecoder
from ffcv.fields.decoders import CenterCropRGBImageDecoder, NDArrayDecoder
from ffcv.memory_managers import OSCacheManager
from ffcv.reader import Reader
from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

from loaders import beton, ffcv_loader
from loaders.datasets import ImageSet
from loaders.ffcv_loader import VirtualLoader, cache_state_type, image_pipeline
from loaders.ffcv_ops import Relabel, SourceRows, VirtualIndex, VirtualOrder
from loaders.noise import NoiseModel, NoiseSpec, WhiteNoise

CPU = torch.device("cpu")
N = 24  # images in the .beton
LABELS = torch.arange(N) % 10  # image i's clean label
MEAN, STD = (0.5,), (0.25,)  # scale 1 / (255 * 0.25) = 4 / 255, shift -0.5 / 0.25 = -2
READ_ONLY = nb.types.Array(nb.uint8, 1, "C", readonly=True)
Served = tuple[list[tuple[torch.Tensor, torch.Tensor]], np.ndarray, list[NoiseModel]]  # batches, order, members


def same(seed: int) -> NoiseModel:
    """alpha = 1 over the 24 images: 48 virtual examples, copy v >= 24 shows image v - 24."""
    return NoiseModel(NoiseSpec(alpha=1.0, seed=seed), LABELS, 10)


def white(seed: int) -> NoiseModel:
    """alpha = 1 over the 24 images, every noisy copy a white-noise image."""
    return NoiseModel(NoiseSpec(alpha=1.0, seed=seed, source="white"), LABELS, 10)


def normalised(pixels: torch.Tensor) -> torch.Tensor:
    """(x / 255 - 0.5) / 0.25 by hand, for MEAN and STD."""
    return pixels.double() * 4 / 255 - 2


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images = (10 * torch.arange(N, dtype=torch.uint8)).view(N, 1, 1, 1).expand(N, 1, 28, 28).contiguous()
    data = ImageSet(images, LABELS.clone(), 10, MEAN, STD)
    return beton.imageset_beton("values", "train", data, tmp_path_factory.mktemp("beton"), workers=1)


@pytest.fixture
def threads() -> Iterator[int]:
    """torch's thread count set to 2 for the test, then put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


class RecordingLoader:
    """Stands in for ffcv.loader.Loader: notes its arguments and serves `batches` (no pipeline compiled)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args, self.kwargs = args, kwargs
        self.reader = Reader(str(args[0]))
        self.field_name_to_f_ix = {name: i for i, name in enumerate(self.reader.handlers)}
        self.memory_manager = OSCacheManager(self.reader)
        self.next_epoch = 0
        self.batches: list[tuple[torch.Tensor, ...]] = []
        self.closed = False
        torch.set_num_threads(int(kwargs.get("num_workers", 1)))  # FFCV's Loader sets torch's thread count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        try:
            torch.set_num_threads(1)  # as FFCV's iterator thread does before its first batch
            for batch in self.batches:
                yield batch
                batch[1].fill_(-1)  # FFCV reuses its label buffer for a later batch
        finally:
            self.closed = True


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffcv_loader, "Loader", RecordingLoader)


def types(ops: list) -> list[type]:
    """A pipeline's ops by their exact types, in order."""
    return [type(op) for op in ops]


# ---------------------------------------------------------------------------------------------- the OS cache


def test_cache_state_type_is_read_only_bytes_then_uint64_offsets_and_sizes() -> None:
    state = cache_state_type(None)
    assert state == nb.types.Tuple([READ_ONLY, nb.types.Array(nb.uint64, 1, "C"), nb.types.Array(nb.uint64, 1, "C")])
    assert not state[0].mutable and nb.typeof(np.zeros(2, np.uint8)).mutable  # numba's own byte type stays writable
    assert isinstance(OSCacheManager.__dict__["state_type"], property)  # FFCV's manager reads it as a property


def test_cache_reader_is_compiled_for_the_read_only_state(path: Path) -> None:
    read = OSCacheManager(Reader(str(path))).compile_reader()  # the patched method
    assert read.signatures == [(nb.uint64, cache_state_type(None))]  # eagerly, for this one signature
    assert read.nopython_signatures[0].return_type == READ_ONLY


def test_cache_reader_returns_the_bytes_at_an_address_sized_by_the_offset_table(path: Path) -> None:
    read = OSCacheManager(Reader(str(path))).compile_reader()
    data = np.arange(100, 130, dtype=np.uint8)
    data.flags.writeable = False  # the memory-mapped file is read-only
    state = (data, np.array([0, 4, 9], np.uint64), np.array([4, 5, 21], np.uint64))  # samples at 0, 4, 9
    # address 4 is sample 1 (offsets), 5 bytes: looking it up among the sizes would give sample 0's 4 bytes
    assert read(4, state).tolist() == [104, 105, 106, 107, 108]
    assert read(0, state).tolist() == [100, 101, 102, 103]
    assert read(9, state).tolist() == list(range(109, 130))
    assert not read(4, state).flags.writeable


# ---------------------------------------------------------------------------------------------- image_pipeline


def test_raw_image_pipeline_decodes_source_rows_to_a_tensor_on_the_device() -> None:
    spec = image_pipeline(same(0), CPU, None)
    assert spec.source == "image" and type(spec.decoder) is SourceRows and type(spec.decoder.decoder) is NDArrayDecoder
    decoder = spec.decoder  # the noise model's source map: n 24, no pool (1), source same (0), no spread (48, 1, 0)
    assert (decoder.n, decoder.n_pool, decoder.kind, decoder.start, decoder.a, decoder.b) == (24, 1, 0, 48, 1, 0)
    assert types(spec.transforms) == [ToTensor, ToDevice]  # raw uint8 is already CHW: no ToTorchImage
    assert spec.transforms[1].device == CPU and spec.transforms[1].non_blocking is True


def test_jpeg_image_pipeline_center_crops_to_size_and_turns_channels_first() -> None:
    spec = image_pipeline(same(0), CPU, 6)
    assert spec.source == "image" and type(spec.decoder) is SourceRows and spec.decoder.n == 24
    crop = spec.decoder.decoder
    assert type(crop) is CenterCropRGBImageDecoder and crop.output_size == (6, 6) and crop.ratio == 1.0
    assert types(spec.transforms) == [ToTensor, ToDevice, ToTorchImage]
    assert spec.transforms[1].device == CPU and spec.transforms[1].non_blocking is True
    assert spec.transforms[2].channels_last is False  # NCHW, as the model expects


# ---------------------------------------------------------------------------------------------- VirtualLoader.__init__


def test_loader_gets_path_batch_size_workers_os_cache_no_drop_last_and_a_virtual_order(path: Path, recorded: None) -> None:
    loader = VirtualLoader(path, None, [same(1), same(2)], 10, 7, CPU, 1, MEAN, STD).loader
    assert loader.args == (str(path), 10)
    # os_cache passed, not left to FFCV's default (which $FFCV_DEFAULT_CACHE_PROCESS turns off)
    assert sorted(loader.kwargs) == ["drop_last", "num_workers", "order", "os_cache", "pipelines"]
    assert loader.kwargs["num_workers"] == 1 and loader.kwargs["os_cache"] is True and loader.kwargs["drop_last"] is False
    order = loader.kwargs["order"]
    assert type(order) is VirtualOrder and order.buffer.shape == (48,) and order.seed == 7  # 24 * (1 + 1) copies


def test_pipelines_decode_images_and_relabel_each_members_labels(path: Path, recorded: None) -> None:
    pipelines = VirtualLoader(path, None, [same(1), same(2)], 10, 7, CPU, 1, MEAN, STD).loader.kwargs["pipelines"]
    assert list(pipelines) == ["image", "label"]  # no index field without white noise
    image, label = pipelines["image"], pipelines["label"]
    assert image.source == "image" and type(image.decoder.decoder) is NDArrayDecoder and types(image.transforms) == [ToTensor, ToDevice]
    assert label.source == "label" and type(label.decoder) is SourceRows and type(label.decoder.decoder) is IntDecoder
    assert label.decoder.n == 24 and label.decoder.start == 48
    assert types(label.transforms) == [Relabel, ToTensor, ToDevice]  # relabel is the default
    assert label.transforms[0].seeds.tolist() == [1, 2]  # one label column per member, in order
    assert label.transforms[2].device == CPU and label.transforms[2].non_blocking is True


def test_relabel_false_serves_the_decoded_noise_rows(path: Path, recorded: None) -> None:
    pipelines = VirtualLoader(path, None, [same(1)], 10, 7, CPU, 1, MEAN, STD, relabel=False).loader.kwargs["pipelines"]
    assert types(pipelines["label"].transforms) == [ToTensor, ToDevice]


def test_white_noise_adds_an_index_field_and_draws_with_the_first_members_seed(path: Path, recorded: None) -> None:
    loader = VirtualLoader(path, None, [white(5), white(6)], 16, 0, CPU, 1, (0.3,), (0.2,))
    pipelines = loader.loader.kwargs["pipelines"]
    assert list(pipelines) == ["image", "label", "index"]
    index = pipelines["index"]  # the label field's rows again, turned into the batch's virtual indices
    assert index.source == "label" and type(index.decoder) is SourceRows and type(index.decoder.decoder) is IntDecoder
    assert index.decoder.kind == 2  # white
    assert types(index.transforms) == [VirtualIndex, ToTensor, ToDevice] and index.transforms[2].device == CPU
    assert index.transforms[2].non_blocking is True
    noise = loader.white
    assert type(noise) is WhiteNoise and noise.seed == 5 and noise.shape == (1, 28, 28) and noise.pixels == 784
    want = WhiteNoise(5, (1, 28, 28), (0.3,), (0.2,))  # its pre-clip moments come from this mean and std
    assert torch.equal(noise.mu, want.mu) and torch.equal(noise.sigma, want.sigma)


def test_white_noise_with_jpeg_size_is_three_channels_of_that_size(path: Path, recorded: None) -> None:
    loader = VirtualLoader(path, None, [white(5)], 16, 0, CPU, 1, (0.3,) * 3, (0.2,) * 3, jpeg_size=6)
    assert loader.white.shape == (3, 6, 6)  # the decoded size, not the .beton handler's (1, 28, 28)
    assert type(loader.loader.kwargs["pipelines"]["image"].decoder.decoder) is CenterCropRGBImageDecoder


def test_attributes_length_and_threads(path: Path, recorded: None, threads: int) -> None:
    loader = VirtualLoader(path, None, [same(1)], 10, 7, CPU, 1, MEAN, STD)
    assert torch.get_num_threads() == threads  # put back after FFCV set it to num_workers (1)
    assert (loader.n, loader.n_virtual, loader.batch_size, loader.dtype) == (24, 48, 10, torch.float32)
    assert loader.white is None
    assert loader.__len__() == 5  # ceil(48 / 10): the last batch of 8 is kept
    assert torch.equal(loader.scale, torch.tensor([1 / (255 * 0.25)]).view(1, 1, 1, 1))
    assert torch.equal(loader.shift, torch.tensor([-2.0]).view(1, 1, 1, 1))


def test_length_is_exact_when_batches_divide_the_virtual_set(path: Path, recorded: None) -> None:
    assert VirtualLoader(path, None, [same(1)], 16, 7, CPU, 1, MEAN, STD).__len__() == 3  # 48 / 16


def test_everything_goes_to_the_device_it_is_given(path: Path, recorded: None) -> None:
    meta = torch.device("meta")  # nothing runs on it: the recorder compiles no pipeline
    loader = VirtualLoader(path, None, [white(1)], 10, 7, meta, 1, MEAN, STD)
    pipelines = loader.loader.kwargs["pipelines"]
    assert [spec.transforms[-1].device for spec in pipelines.values()] == [meta, meta, meta]
    assert loader.scale.device == meta and loader.shift.device == meta


def test_rows_pick_the_image_table_and_the_label_field_carries_noise_rows(path: Path, recorded: None) -> None:
    rows = np.array([5, 0, 17, 3, 20, 21])  # 4 clean images, then a pool of 2 (one without a class)
    noise = NoiseModel(NoiseSpec(alpha=1.0, seed=0, source="cifar100"), LABELS[rows[:4]], 10,
                       pool_labels=torch.tensor([-1, 2]))
    loader = VirtualLoader(path, rows, [noise], 4, 0, CPU, 1, MEAN, STD)
    table = loader.loader.reader.metadata
    assert len(table) == 6  # n + n_pool, not the .beton's 24
    assert np.array_equal(table["f0"], Reader(str(path)).metadata["f0"][rows])  # each row's own image
    assert table["f1"].tolist() == [5, 0, 7, 3, 10, 2]  # clean labels, m = 10 for no class, the pool's class


def test_whole_file_table_when_rows_is_none(path: Path, recorded: None) -> None:
    table = VirtualLoader(path, None, [same(1)], 10, 7, CPU, 1, MEAN, STD).loader.reader.metadata
    assert np.array_equal(table["f0"], Reader(str(path)).metadata["f0"]) and table["f1"].tolist() == LABELS.tolist()


def test_rows_that_are_not_the_noise_models_table_are_refused(path: Path, recorded: None) -> None:
    with pytest.raises(AssertionError, match=r"^the \.beton rows must be the noise model's image table$"):
        VirtualLoader(path, np.arange(5), [same(1)], 10, 7, CPU, 1, MEAN, STD)  # 5 rows for 24 images


def test_set_epoch_is_the_epoch_ffcv_draws_next(path: Path, recorded: None) -> None:
    loader = VirtualLoader(path, None, [same(1)], 10, 7, CPU, 1, MEAN, STD)
    loader.set_epoch(3)
    assert loader.loader.next_epoch == 3


# ---------------------------------------------------------------------------------------------- __iter__ (served batches)


def test_batches_are_normalised_in_the_dtype_and_labels_turn_member_major(path: Path, recorded: None, threads: int) -> None:
    loader = VirtualLoader(path, None, [same(1), same(2)], 2, 0, CPU, 1, MEAN, STD, dtype=torch.float64)
    pixels = torch.tensor([51, 102], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 28, 28)
    loader.loader.batches = [(pixels, torch.tensor([[3, 4], [5, 6]])),  # (B, K) as FFCV's Relabel yields them
                             (pixels[:1] + 204, torch.tensor([[7, 8]]))]
    seen = []
    for x, y in loader:
        seen.append((x, y, torch.get_num_threads()))
    (x0, y0, t0), (x1, y1, t1) = seen
    assert x0.dtype == torch.float64 and x0.shape == (2, 1, 28, 28) and x1.shape == (1, 1, 28, 28)
    torch.testing.assert_close(x0[:, 0, 0, 0], torch.tensor([-1.2, -0.4], dtype=torch.float64))  # 51, 102 by hand
    torch.testing.assert_close(x1, torch.full((1, 1, 28, 28), 2.0, dtype=torch.float64))  # 255
    assert y0.tolist() == [[3, 5], [4, 6]] and y1.tolist() == [[7], [8]]  # copies: FFCV refilled its buffers
    assert (t0, t1) == (threads, threads)  # put back before the first batch is handed on


def test_white_noise_replaces_the_images_of_copies_at_and_past_n(path: Path, recorded: None) -> None:
    loader = VirtualLoader(path, None, [white(5)], 4, 0, CPU, 1, MEAN, STD)
    pixels = torch.full((4, 1, 28, 28), 7, dtype=torch.uint8)
    v = torch.tensor([[3], [24], [23], [40]])  # (B, 1), as the index field yields it; n = 24
    loader.loader.batches = [(pixels, torch.zeros(4, 1, dtype=torch.int64), v)]
    (x, _), = list(loader)
    want = pixels.clone()
    want[[1, 3]] = WhiteNoise(5, (1, 28, 28), MEAN, STD)(torch.tensor([24, 40]))
    assert not torch.equal(want[1], pixels[1])  # the noise really differs from the decoded image
    torch.testing.assert_close(x, normalised(want).float())
    assert torch.equal(pixels, torch.full((4, 1, 28, 28), 7, dtype=torch.uint8))  # FFCV's buffer is not written


def test_leaving_an_epoch_early_closes_ffcvs_iterator(path: Path, recorded: None) -> None:
    loader = VirtualLoader(path, None, [same(1)], 1, 0, CPU, 1, MEAN, STD)
    pixels = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    loader.loader.batches = [(pixels, torch.zeros(1, 1, dtype=torch.int64))] * 3
    batches = iter(loader)
    next(batches)
    batches.close()
    assert loader.loader.closed  # its thread stops after the current batch


# ---------------------------------------------------------------------------------------------- one real FFCV epoch


@pytest.fixture(scope="module")
def served(path: Path) -> Served:
    """Epoch 2 of a real VirtualLoader (batch 20, order seed 3) over a two-member white-noise group, and its order."""
    before = torch.get_num_threads()
    noises = [white(11), white(12)]
    loader = VirtualLoader(path, None, noises, 20, 3, CPU, 1, MEAN, STD)
    loader.set_epoch(2)
    batches = list(loader)
    torch.set_num_threads(before)
    return batches, VirtualOrder(48, 3).sample_order(2).astype(np.int64), noises


def test_real_epoch_keeps_the_short_last_batch_in_dtype_and_shape(served: Served) -> None:
    batches, _, _ = served
    assert [(tuple(x.shape), x.dtype, tuple(y.shape), y.dtype) for x, y in batches] == [
        ((20, 1, 28, 28), torch.float32, (2, 20), torch.int64),
        ((20, 1, 28, 28), torch.float32, (2, 20), torch.int64),
        ((8, 1, 28, 28), torch.float32, (2, 8), torch.int64)]  # 48 = 20 + 20 + 8: drop_last off


def test_real_epoch_serves_each_copy_its_image_and_each_members_label(served: Served) -> None:
    batches, order, noises = served
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches], dim=1)
    v = torch.from_numpy(order)
    clean = v < N
    # a clean copy: image v (all 10 * v) and label v % 10 for both members
    torch.testing.assert_close(x[clean], normalised((10 * v[clean]).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)).float())
    assert y[:, clean].tolist() == [(v[clean] % 10).tolist()] * 2
    # a noisy copy: the first member's white noise for v, and each member's own uniform label for v
    torch.testing.assert_close(x[~clean], normalised(WhiteNoise(11, (1, 28, 28), MEAN, STD)(v[~clean])).float())
    assert y[0, ~clean].tolist() == noises[0](v[~clean])[1].tolist()
    assert y[1, ~clean].tolist() == noises[1](v[~clean])[1].tolist()
    assert y[0, ~clean].tolist() != y[1, ~clean].tolist()  # the members' labels differ: not one column twice
