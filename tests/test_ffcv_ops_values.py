"""loaders.ffcv_ops by exact values, fast (no FFCV pipeline, no .beton, no dataset read).

Covers: Relabel (each member's label column for clean copies, noisy copies under uniform noise, a decoded row's own
distribution, white noise's uniform row, draw=image's per-image hash, a cifar100 pool of one image, noise.labels'
annotation picks on both draws and sources, the op's flags and its declared state and allocation), SourceRows (the
row each virtual index decodes for sources same with a spread partial round, cifar100, white and novel, and its
delegation of accept_field / accept_globals / declare_state_and_memory), VirtualIndex (its copy of the indices and its
state) and VirtualOrder (the order buffer's dtype either side of 2**32, the chunked fill's edges past 1 << 20, each
epoch's exact permutation from numpy's Generator seeded [seed, epoch]).

Relabel's code runs uncompiled: Relabel(models).generate_code() is called as plain Python, which calls the jitted
label / vote (compiled once per process). Expected noisy labels are hand formulas on loaders.noise.hash32: with 4
classes the uniform table's label is (h * 4) >> 32 = h >> 30, and an annotation pick is labels[i, (h * count) >> 32];
a one-hot "shift" matrix (class c -> c + 1 mod 4) makes a noisy label the decoded row + 1, whatever the hash.
NoiseModel (the torch path) is checked alongside as the bit-identity oracle.

Stand-ins: RecordingDecoder, a decoder Operation that notes each call and whose generate_code returns a plain Python
function, with ffcv's Compiler.is_enabled set False (monkeypatch) so SourceRows' Compiler.compile hands it back
unjitted; NumpyRecorder, put in place of loaders.ffcv_ops' `np` (monkeypatch) to note np.empty's (shape, dtype)
for 2**32-long order buffers without allocating 16-32 GiB; FillRecorder, an ndarray subclass view put in as a
VirtualOrder's buffer, that notes each slice the fill writes and stops the test at the shuffle's first write (a
subclass would be shuffled element by element in Python).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.state import State

from loaders import ffcv_ops
from loaders.ffcv_ops import Relabel, SourceRows, VirtualIndex, VirtualOrder
from loaders.noise import STREAM_IMAGE, STREAM_LABEL, NoiseModel, NoiseSpec, hash32

M = 4  # classes: the uniform table's label is then h >> 30
CLEAN = torch.tensor([2, 0, 3, 1, 1, 3, 0, 2])  # n = 8 clean images
# n = 8, alpha = 1.5: 20 virtual examples; spread(8, 20) = (start 16, a 3, b 6), so v = 16..19 take images
# (3 * (v % 8) + 6) % 8 = 6, 1, 4, 7 and every other v takes v % 8.
SAME_SOURCE = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 6, 1, 4, 7]
SHIFT = np.roll(np.eye(M), 1, axis=1)  # class c's noisy copies all carry c + 1 (mod 4)
SEEDS = (7, 2**32 - 1)
CPU = torch.device("cpu")


def model(seed: int = 7, dist: np.ndarray | None = None, pool: torch.Tensor | None = None, **spec) -> NoiseModel:
    """A NoiseModel on CLEAN (n = 8, alpha = 1.5 unless given); dist: its per-copy matrix, pool: its pool's classes."""
    return NoiseModel(NoiseSpec(**{"alpha": 1.5, "seed": seed, **spec}), CLEAN, M, dist, pool_labels=pool)


def quarter(seed: int, counters: list[int], stream: int) -> np.ndarray:
    """The uniform 4-class label of each counter: the top two bits of its 32-bit hash."""
    return (hash32(seed, torch.tensor(counters, dtype=torch.int64), stream) >> 30).numpy()


def relabel(models: list[NoiseModel], v: np.ndarray, rows: list[int]) -> np.ndarray:
    """Relabel's generated code run as plain Python on one batch; its output buffer starts at -99."""
    out = np.full((len(v), len(models)), -99, np.int64)
    got = Relabel(models).generate_code()(np.array(rows, np.int64).reshape(-1, 1), out, v)
    assert got is out  # FFCV hands the op's buffer on: the op fills it in place
    return out


# ------------------------------------------------------------------------------------------------------ Relabel


def test_each_member_keeps_clean_labels_and_draws_noisy_copies_from_its_seed() -> None:
    members = [model(seed) for seed in SEEDS]
    v = np.arange(20, dtype=np.uint32)  # the dtype of VirtualOrder's buffer, as FFCV hands the indices on
    got = relabel(members, v, CLEAN[SAME_SOURCE].tolist())
    for k, seed in enumerate(SEEDS):
        # v < 8: its clean label; v >= 8: the uniform draw from the hash of (seed, v) on the label stream
        assert got[:8, k].tolist() == CLEAN.tolist()
        assert got[8:, k].tolist() == quarter(seed, list(range(8, 20)), STREAM_LABEL).tolist()
        assert got[:, k].tolist() == members[k](torch.from_numpy(v.astype(np.int64)))[1].tolist()
    assert got[8:, 0].tolist() != got[8:, 1].tolist()  # the members' columns are their own


def test_a_noisy_copy_is_drawn_from_its_decoded_row_not_the_models_rows() -> None:
    rows = [3, 1, 0, 2, 2, 0, 1, 3, 0, 1, 2, 3, 3, 2, 1, 0, 2, 2, 1, 1]  # any decoded rows: Relabel trusts them
    got = relabel([model(dist=SHIFT)], np.arange(20, dtype=np.int64), rows)  # one member
    # clean copies: the decoded row itself; noisy copies: the shift matrix's one class, row + 1 mod 4
    assert got[:, 0].tolist() == rows[:8] + [(r + 1) % M for r in rows[8:]]


def test_white_noise_copies_take_the_uniform_row_whatever_row_was_decoded() -> None:
    white = model(dist=SHIFT, source="white")
    v = np.arange(20, dtype=np.int64)
    rows = CLEAN.tolist() + [CLEAN[0].item()] * 12  # SourceRows decodes row 0 for a white copy (its index is -1)
    got = relabel([white], v, rows)
    want = quarter(7, list(range(8, 20)), STREAM_LABEL)
    assert len(set(want)) > 1  # a shift row (decoded row 2, or class 3's row) would give one label to all 12
    assert got[:, 0].tolist() == CLEAN.tolist() + want.tolist()  # image 0 is an image, not white noise
    assert got[:, 0].tolist() == white(torch.from_numpy(v))[1].tolist()


def test_draw_image_hashes_the_source_image_on_the_image_stream() -> None:
    members = [model(seed, draw="image") for seed in SEEDS]
    v = np.arange(20, dtype=np.int64)
    got = relabel(members, v, CLEAN[SAME_SOURCE].tolist())
    for k, seed in enumerate(SEEDS):
        # every noisy copy of image i carries the one label hashed from (seed, i): the spread images too
        assert got[8:, k].tolist() == quarter(seed, SAME_SOURCE[8:], STREAM_IMAGE).tolist()
        assert got[:8, k].tolist() == CLEAN.tolist()
        assert got[:, k].tolist() == members[k](torch.from_numpy(v))[1].tolist()
    assert got[[16, 17, 18, 19]].tolist() == got[[14, 9, 12, 15]].tolist()  # images 6, 1, 4, 7 again: same labels


def test_a_pool_of_one_image_gives_every_noisy_copy_that_images_label() -> None:
    pooled = model(source="cifar100", draw="image", pool=torch.tensor([-1]))  # table image 8, of no class
    v = np.arange(20, dtype=np.int64)
    got = relabel([pooled], v, CLEAN.tolist() + [M] * 12)  # the pool image's row is the uniform row, 4
    # every noisy copy's source is image 8 + (v - 8) % 1 = 8: one hash, one label
    assert got[:, 0].tolist() == CLEAN.tolist() + [quarter(7, [8], STREAM_IMAGE)[0]] * 12
    assert got[:, 0].tolist() == pooled(torch.from_numpy(v))[1].tolist()


# Annotations of the table images (3 clean, then 2 pool ones), padded to 10 rows: a wrong image index reads a row
# of its own (a wrong label), not memory past the table (the jitted vote does not check bounds).
VOTES = torch.tensor([[1, -1, -1], [2, 3, -1], [0, 1, 3], [3, -1, -1], [0, 2, -1],
                      [2, -1, -1], [0, -1, -1], [3, 2, 1], [1, 0, -1], [2, -1, -1]])
COUNTS = torch.tensor([1, 2, 3, 1, 2, 1, 1, 3, 2, 1])


@pytest.mark.parametrize("draw", ["copy", "image"])
@pytest.mark.parametrize("source,images", [("same", [0, 1, 2, 0, 1, 2]), ("cifar100", [3, 4, 3, 4, 3, 4])])
def test_noise_labels_pick_one_annotation_of_the_source_image(draw: str, source: str, images: list[int]) -> None:
    clean = torch.tensor([1, 2, 0])  # n = 3, alpha = 2: v = 3..8 are the noisy copies
    pool = torch.tensor([-1, -1]) if source == "cifar100" else None  # cifar100: images 3 + (v - 3) % 2
    members = [NoiseModel(NoiseSpec(alpha=2, seed=seed, source=source, draw=draw), clean, M, pool_labels=pool,
                          votes=(VOTES, COUNTS)) for seed in (11, 12)]
    v = np.arange(9, dtype=np.int64)
    got = relabel(members, v, [1, 2, 0] + [0] * 6)
    stream, counters = (STREAM_IMAGE, images) if draw == "image" else (STREAM_LABEL, list(range(3, 9)))
    for k, seed in enumerate((11, 12)):
        h = hash32(seed, torch.tensor(counters), stream)
        picks = [VOTES[i, (x * COUNTS[i]) >> 32].item() for i, x in zip(images, h.tolist())]
        assert got[:, k].tolist() == [1, 2, 0] + picks
        assert got[:, k].tolist() == members[k](torch.from_numpy(v))[1].tolist()
    # images 0 and 3 have one annotation each, 1 and 3: every noisy copy of them carries it, whatever the hash
    only, copies = (1, [3, 6]) if source == "same" else (3, [3, 5, 7])
    assert got[copies].tolist() == [[only, only]] * len(copies)


@pytest.mark.parametrize("votes", [None, (VOTES, COUNTS)])
def test_the_relabel_function_is_serial_and_asks_for_the_indices(votes: tuple | None) -> None:
    code = Relabel([NoiseModel(NoiseSpec(alpha=1, labels="x" if votes else None), torch.tensor([0, 1]), M,
                               votes=votes)]).generate_code()
    assert code.is_parallel is False and code.with_indices is True


def test_relabel_declares_one_int64_column_per_member() -> None:
    op = Relabel([model(seed) for seed in (1, 2, 3)])
    before = State(jit_mode=False, device=CPU, shape=(1,), dtype=np.dtype(np.int32))  # e.g. a decoder's output
    state, query = op.declare_state_and_memory(before)
    assert state == State(jit_mode=True, device=CPU, shape=(3,), dtype=np.dtype(np.int64)) and state.jit_mode is True
    assert query == AllocationQuery((3,), np.dtype(np.int64))


# --------------------------------------------------------------------------------------------------- SourceRows


class RecordingDecoder(Operation):
    """A decoder that notes every call; its code notes the rows it is asked to decode and returns `destination`."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def accept_field(self, field) -> None:
        self.calls.append(("field", field))

    def accept_globals(self, metadata, memory_read) -> None:
        self.calls.append(("globals", metadata, memory_read))

    def declare_state_and_memory(self, previous_state: State) -> tuple:
        self.calls.append(("state", previous_state))
        return "declared", previous_state

    def generate_code(self) -> Callable:
        def decode(rows, destination, metadata, storage_state):
            self.calls.append(("decode", rows.dtype, rows.tolist(), destination, metadata, storage_state))
            return destination

        return decode


def decoded_rows(monkeypatch: pytest.MonkeyPatch, noise_model: NoiseModel, v: np.ndarray) -> list[int]:
    monkeypatch.setattr(Compiler, "is_enabled", False)  # Compiler.compile hands the recorder's code back unjitted
    decoder = RecordingDecoder()
    destination, metadata, storage = np.zeros(3), np.ones(2), object()
    assert SourceRows(decoder, noise_model).generate_code()(v, destination, metadata, storage) is destination
    (name, dtype, rows, *rest), = decoder.calls
    assert (name, dtype, rest[0], rest[1], rest[2]) == ("decode", np.dtype(np.int64), destination, metadata, storage)
    return rows


def test_source_rows_decode_each_copys_image_under_the_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    assert model().spread == (16, 3, 6)  # SAME_SOURCE's premise
    assert decoded_rows(monkeypatch, model(), np.arange(20, dtype=np.uint32)) == SAME_SOURCE


@pytest.mark.parametrize("spec,pool,want", [
    ({"source": "cifar100"}, [-1], list(range(8)) + [8] * 12),  # a pool of one image: 8 + (v - 8) % 1
    ({"source": "cifar100"}, [5, -1, 2], list(range(8)) + [8, 9, 10] * 4),  # 8 + (v - 8) % 3
    ({"source": "white"}, None, list(range(8)) + [0] * 12),  # white (-1): row 0, its label replaced by Relabel
    ({"source": "novel"}, list(range(12)), list(range(20))),  # one pool image per noisy copy
])
def test_source_rows_decode_pool_white_and_novel_rows(monkeypatch: pytest.MonkeyPatch, spec: dict,
                                                      pool: list[int] | None, want: list[int]) -> None:
    noise_model = model(**spec, pool=None if pool is None else torch.tensor(pool))
    assert decoded_rows(monkeypatch, noise_model, np.arange(20, dtype=np.int64)) == want


def test_source_rows_hand_field_globals_and_state_to_the_decoder() -> None:
    decoder = RecordingDecoder()
    op = SourceRows(decoder, model())
    field, metadata, memory_read, state = object(), np.arange(3), object(), object()
    op.accept_field(field)
    op.accept_globals(metadata, memory_read)
    assert op.declare_state_and_memory(state) == ("declared", state)
    assert decoder.calls == [("field", field), ("globals", metadata, memory_read), ("state", state)]


# -------------------------------------------------------------------------------------------------- VirtualIndex


def test_virtual_index_writes_each_index_into_its_row() -> None:
    code = VirtualIndex().generate_code()
    out = np.full((3, 1), -1, np.int64)
    assert code(out, None, np.array([5, 2**33 + 1, 0], np.int64)) is out
    assert out.tolist() == [[5], [2**33 + 1], [0]] and code.with_indices is True


def test_virtual_index_runs_jitted_and_keeps_the_decoders_shape() -> None:
    before = State(jit_mode=False, device=CPU, shape=(1,), dtype=np.dtype(np.int64))
    state, query = VirtualIndex().declare_state_and_memory(before)
    assert (state, query) == (State(jit_mode=True, device=CPU, shape=(1,), dtype=np.dtype(np.int64)), None)
    assert state.jit_mode is True


# -------------------------------------------------------------------------------------------------- VirtualOrder


class NumpyRecorder:
    """loaders.ffcv_ops' `np`, except that np.empty notes (shape, dtype) and returns an empty array."""

    def __init__(self) -> None:
        self.empties: list[tuple] = []

    def empty(self, shape, dtype=None) -> np.ndarray:
        self.empties.append((shape, np.dtype(dtype)))
        return np.empty(0, dtype)

    def __getattr__(self, name: str):
        return getattr(np, name)


@pytest.mark.parametrize("n,dtype", [(2**32, np.uint32), (2**32 + 1, np.int64)])
def test_the_order_buffer_holds_4_bytes_a_copy_up_to_2_to_32(monkeypatch: pytest.MonkeyPatch, n: int, dtype: type) -> None:
    recorder = NumpyRecorder()
    monkeypatch.setattr(ffcv_ops, "np", recorder)
    VirtualOrder(n, 0)
    assert recorder.empties == [(n, np.dtype(dtype))]  # uint32 holds 0 .. 2**32 - 1, every index of 2**32 copies


def test_a_small_order_is_uint32_and_is_its_own_traversal_order() -> None:
    order = VirtualOrder(65, 0)  # 65 > 2 * 32: the bound is a power
    assert order.buffer.dtype == np.uint32 and order.buffer.shape == (65,)
    assert order(object()) is order  # FFCV 1.0.2 calls the order with the loader


class ShuffleReached(Exception):
    """The fill is over: the shuffle wrote its first element."""


class FillRecorder(np.ndarray):
    """An order buffer that notes each (start, stop) slice written and raises ShuffleReached at any other write."""

    def __setitem__(self, key, value) -> None:
        if not isinstance(key, slice):
            raise ShuffleReached
        self.fills.append((key.start, key.stop))
        assert len(self.fills) <= 2, f"more chunks than 2: {self.fills}"  # a fill of many overlapping slices stops here
        super().__setitem__(key, value)


def test_the_order_is_filled_in_chunks_of_2_to_20() -> None:
    n = 2**20 + 3
    order = VirtualOrder(n, 0)
    order.buffer = order.buffer.view(FillRecorder)
    order.buffer.fills = []
    with pytest.raises(ShuffleReached):
        order.sample_order(0)
    assert order.buffer.fills == [(0, 2**20), (2**20, n)]  # one 4 MiB arange at a time, never an n-sized one
    assert np.array_equal(order.buffer.view(np.ndarray), np.arange(n))


def test_each_epochs_order_is_the_generators_permutation_of_seed_and_epoch() -> None:
    order = VirtualOrder(1000, 3)
    for epoch in (0, 1):  # the second epoch refills the buffer its first one shuffled
        got = order.sample_order(epoch)
        assert got is order.buffer and got.dtype == np.uint32
        assert got.tolist() == np.random.default_rng([3, epoch]).permutation(1000).tolist()
