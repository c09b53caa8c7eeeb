"""analysis.effects on hand-built summaries: which rows each check reads, what it returns None on, and its measured
text. One replicate per cell unless said: each accuracy ± the 2-point noise floor (analysis.intervals)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import effects
from analysis.bands import Band
from analysis.intervals import NOISE_FLOOR

POINTS = Band(high=0.05, unit="points")


def test_where_and_selection_key() -> None:
    s = pd.DataFrame({"arch": ["a", "b", "c"], "alpha": [0, 1, 1]})
    assert effects.where(s, arch=["a", "c"]).tolist() == [True, False, True]
    assert effects.where(s, arch="b", alpha=1).tolist() == [False, True, False]
    assert effects.where(s, arch="a", loss="ce").tolist() == [False] * 3  # no such column: no row
    assert effects.selection_key(s) == "test_acc"  # a summary from before `selected_on`
    assert effects.selection_key(pd.DataFrame({"selected_on": []})) == "test_acc"
    assert effects.selection_key(pd.DataFrame({"selected_on": ["val_acc at its best epoch"]})) == "val_acc"


def test_best_row_chooses_as_the_learning_rate_was_chosen() -> None:
    s = pd.DataFrame({"arch": ["conv4", "conv6", "mlp1"], "test_acc": [0.9, 0.8, 0.95], "val_acc": [0.7, 0.75, 0.99],
                      "selected_on": "val_acc"})
    conv = effects.where(s, arch=effects.CONVNETS)
    assert effects.best_row(s, conv) == 1  # on val, conv6
    assert effects.best_row(s.assign(selected_on="test_acc"), conv) == 0
    assert effects.best_row(s.drop(columns="val_acc"), conv) == 0  # named but absent: test_acc
    assert effects.best_row(s.assign(val_acc=math.nan), conv) == 0  # named but never measured: test_acc
    assert effects.best_row(s, effects.where(s, arch="resnet18")) is None


def test_architectures_ordered_needs_alpha_and_rows() -> None:
    assert effects.architectures_ordered(pd.DataFrame({"test_acc": [0.5]}), None, Band(0, unit="points")) is None
    assert effects.architectures_ordered(pd.DataFrame({"alpha": [], "arch": [], "test_acc": []}), None,
                                         Band(0, unit="points")) is None


def structured(deltas: list[float], accs: list[float], order: bool = True) -> pd.DataFrame:
    s = pd.DataFrame({"delta": deltas, "test_acc": accs})
    return s.assign(order="confusing") if order else s


def test_structured_reads_the_cells_below_0_9_and_states_the_worst() -> None:
    s = structured([0.0, 0.4, 0.8, 1.0], [0.95, 0.945, 0.935, 0.35])
    text, held = effects.structured_like_uniform(s, None, POINTS)
    assert text.startswith("for δ < 0.9: worst drop +1.5 points") and "at δ=0.8 (confusing); 2 of 2 within the band" in text
    assert text.endswith("; at δ = 1: 60.0 points") and held is True
    text, _ = effects.structured_like_uniform(structured([0.0, 0.4, 0.8], [0.95, 0.945, 0.935], order=False), None, POINTS)
    assert "at δ=0.8; 2 of 2" in text and text.endswith("within the band")  # no order column, no δ = 1
    for deltas in ([0.0, 0.9, 1.0], [0.4, 0.8, 1.0], [0.0, 0.2, 0.4]):  # none in (0, 0.9); no δ = 0; none ≥ 0.5
        assert effects.structured_like_uniform(structured(deltas, [0.9] * 3), None, POINTS) is None, deltas


def test_worst_drop_is_the_largest_not_the_first() -> None:
    s = structured([0.0, 0.2, 0.4, 0.6], [0.95, 0.90, 0.94, 0.93])
    text, held = effects.structured_like_uniform(s, None, POINTS)
    assert "worst drop +5" in text and "at δ=0.2 (confusing)" in text and held is None  # 5 ± 2.8 straddles 5


def sourced(rows: list[tuple[float, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["alpha", "source", "test_acc"])


def test_sources_needs_a_source_column_and_clean_rows() -> None:
    assert effects.sources(pd.DataFrame({"alpha": [0, 10], "test_acc": [0.9, 0.8]})) is None
    assert effects.sources(sourced([(5, "same", 0.8), (10, "same", 0.7)])) is None  # no clean cell
    alpha, clean, top = effects.sources(sourced([(0, "same", 0.9), (5, "same", 0.8), (10, "same", 0.7),
                                                 (10, "white", 0.9)]))
    assert alpha == 10 and clean.tolist() == [True, False, False, False]
    assert {k: v.tolist() for k, v in top.items()} == {"same": [False, False, True, False],
                                                       "white": [False, False, False, True]}


def test_cifar100_half_drop_needs_no_white_noise_and_a_clear_premise() -> None:
    band = Band(0.25, 0.75)
    text, held = effects.cifar100_half_drop(sourced([(0, "same", 0.9), (10, "same", 0.5), (10, "cifar100", 0.7)]),
                                            None, band)
    assert text.startswith("α=10: CIFAR-100 drop / CIFAR-10 drop = 0.5") and text.endswith("(20.0 / 40.0 points)")
    # a CIFAR-10 drop whose interval starts exactly at 0 (one replicate per cell: ± √2 · 2 points) is no clear drop
    edge = NOISE_FLOOR * 2 ** 0.5
    text, held = effects.cifar100_half_drop(sourced([(0, "same", 0.9), (10, "same", 0.9 - edge), (10, "cifar100", 0.9)]),
                                            None, band)
    assert text.endswith(": no clear drop to halve") and held is None


def test_batch_slope_reads_every_alpha_above_0() -> None:
    band = Band(0, unit="points", strict=True)
    s = pd.DataFrame({"alpha": [0, 0, 1, 1, 5, 5], "batch_size": [32, 128] * 3, "loss": "ce",
                      "test_acc": [0.90, 0.99, 0.80, 0.84, 0.60, 0.68]})
    text, _ = effects.batch_slope(s, None, band)
    # 2 points per doubling at α = 1, 4 at α = 5 (32 -> 128: two doublings); α = 0 not read
    assert text.startswith("slope over α > 0: +3.0 points") and text.endswith("per batch doubling (α=1: +2.0 points, "
                                                                                "α=5: +4.0 points)")
    assert effects.batch_slope(s[s["alpha"] < 5], None, band)[0].startswith("slope over α > 0: +2.0 points")
    assert effects.batch_slope(s.assign(loss="h_alpha"), None, band) is None
