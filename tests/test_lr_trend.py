"""Figure 12's parts by hand: replicate numbers from seeds, the fitted fall of the optimal LR per replicate, and
the clean optimum's Welch lead (tests/test_claims_table.py judges the whole claim)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.bands import Band
from analysis.intervals import NOISE_FLOOR, t_at
from analysis.lr_trend import clean_optimum, optimal_lr_falls, optimal_lr_trend, replicate_of
from analysis.summary import t975

LRS = (0.01, 0.1, 1.0)
# (alpha, seed) -> the best LR of that trial set; the others score 0.6. Replicate 0 (seed 0) falls 1 → 1 → 0.1
# over α = 1, 3, 7, replicate 1 (seed 1000) 1 → 0.1 over α = 1, 3; replicate 2 (seed 2000) has α = 1 only.
BEST = {(1, 0): 1.0, (3, 0): 1.0, (7, 0): 0.1, (1, 1000): 1.0, (3, 1000): 0.1, (1, 2000): 0.01}


def sweep(best: dict[tuple[float, int], float] = BEST) -> pd.DataFrame:
    """Trials in falling seed order (replicate numbers must come from the seeds, not the row order), with a
    config column that is NaN throughout, as a structured-noise parameter is in a uniform-noise run."""
    rows = [{"alpha": a, "lr": lr, "delta": np.nan, "seed": seed, "noise_seed": seed + 7,
             "val_acc": 0.8 if lr == top else 0.6}
            for (a, seed), top in sorted(best.items(), key=lambda item: -item[0][1]) for lr in LRS]
    return pd.DataFrame(rows)


def test_replicate_numbers_rank_seeds_within_each_config_in_row_order() -> None:
    t = sweep()
    numbers = replicate_of(t)
    assert numbers.index.equals(t.index)
    assert numbers.tolist() == [{0: 0, 1000: 1, 2000: 2}[s] for s in t["seed"]]


def test_the_fall_is_each_replicates_least_squares_slope_over_the_alpha_span() -> None:
    # x = log2(1 + α) = 1, 2, 3. Replicate 0: log10 lr 0, 0, -1: slope -1/2, over the span of 2: -1 decade.
    # Replicate 1: 0, -1 at x = 1, 2: slope -1: -2 decades. Replicate 2 (one α) has no slope and is left out.
    fall = optimal_lr_trend(sweep(), "val_acc")
    half = t975(1) * math.sqrt(0.5) / math.sqrt(2)
    assert fall.value == pytest.approx(-1.5)
    assert (fall.low, fall.high) == pytest.approx((-1.5 - half, -1.5 + half))
    assert fall.basis == "2 replicates"


def test_a_lone_replicate_gets_one_lr_grid_step() -> None:
    fall = optimal_lr_trend(sweep({(1, 0): 1.0, (3, 0): 1.0, (7, 0): 0.1}), "val_acc")
    assert (fall.value, fall.low, fall.high) == pytest.approx((-1.0, -2.0, 0.0))
    assert fall.basis == "one replicate: ± one LR grid step (1.00 decades)"


def stats(clean: dict[float, tuple[float, float, int]]) -> pd.DataFrame:
    """Per (alpha, lr): mean, std, count, with α = 0 given per LR and α = 10 scoring 0.5 everywhere."""
    rows = [(0, lr, *v) for lr, v in clean.items()] + [(10, lr, 0.5, 0.01, 3) for lr in clean]
    return pd.DataFrame(rows, columns=["alpha", "lr", "mean", "std", "count"]).set_index(["alpha", "lr"])


def test_no_clean_runs() -> None:
    assert clean_optimum(stats({0.1: (0.8, 0.01, 3)}).drop(index=0, level="alpha")) == ("no clean runs", None)


def test_the_grids_largest_lr_best_on_clean_data_holds() -> None:
    assert clean_optimum(stats({0.1: (0.7, 0.01, 3), 1.0: (0.8, 0.01, 3)})) == (
        "clean optimum 1 (the grid's largest, as the paper's 1)", True)


def test_another_clean_optimum_contradicts_only_with_a_welch_lead_above_0() -> None:
    # lead 0.10; se² = (0.01² + 0.02²) / 3; Welch–Satterthwaite dof 0.0005² / ((0.0001² + 0.0004²) / 2) = 2.94
    text, held = clean_optimum(stats({0.1: (0.8, 0.01, 3), 1.0: (0.7, 0.02, 3)}))
    half = t_at(0.0005 ** 2 / ((0.0001 ** 2 + 0.0004 ** 2) / 2)) * math.sqrt(0.0005 / 3)
    assert held is False
    assert text == (f"clean optimum 0.1, not the grid's largest 1 (its lead +10.0 points (95% CI "
                    f"+{100 * (0.1 - half):.1f} to +{100 * (0.1 + half):.1f} points, 3 replicates))")
    _, held = clean_optimum(stats({0.1: (0.71, 0.01, 3), 1.0: (0.7, 0.02, 3)}))
    assert held is None  # a 1-point lead: its interval reaches below 0


def test_a_lead_whose_interval_only_touches_0_does_not_contradict() -> None:
    # one replicate each: each mean ± the noise floor, so the lead's half-width is √2 · NOISE_FLOOR
    lead = math.sqrt(2) * NOISE_FLOOR
    text, held = clean_optimum(stats({0.1: (0.5 + lead, np.nan, 1), 1.0: (0.5, np.nan, 1)}))
    assert held is None and "(95% CI +0.0 to +5.7 points, one replicate" in text
    _, held = clean_optimum(stats({0.1: (0.5 + 1.01 * lead, np.nan, 1), 1.0: (0.5, np.nan, 1)}))
    assert held is False


def test_the_claim_from_trials_without_a_status_column() -> None:
    # α = 0: lr 0.1 best in each replicate (val 0.8 ± 0.01 against 0.7); α = 10: lr 0.01 best: a fall of 1 decade
    rows = [{"alpha": a, "lr": lr, "seed": s, "noise_seed": s,
             "test_acc": (0.8 if lr == top else 0.7) + 0.01 * (s // 1000 - 1)}
            for a, top in ((0, 0.1), (10, 0.01)) for lr in (0.01, 0.1, 1.0) for s in (0, 1000, 2000)]
    measured, held = optimal_lr_falls(pd.DataFrame(), pd.DataFrame(rows), Band(high=0, unit="decades", strict=True))
    assert held is False  # the clean optimum 0.1 leads the grid's largest by 10 points, 3 replicates
    assert measured.startswith("change of log10 optimal lr from α=0 to 10: -1.00 decades (95% CI -1.00 to -1.00 "
                               "decades, 3 replicates); clean optimum 0.1, not the grid's largest 1 (its lead +10.0 points")
    assert measured.endswith("best lr by α: 0→0.1, 10→0.01")
