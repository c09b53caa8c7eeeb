"""Figure 12: the optimal learning rate per cell and replicate, how its log10 changes across the α range (a t
interval over the replicates), and whether the clean optimum is the grid's largest LR, as the paper's is."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.bands import Band, Measured, every
from analysis.effects import selection_key
from analysis.intervals import Cells, Interval, replicate_interval
from analysis.summary import REPLICATES, cell_columns, config_columns

def replicate_of(trials: pd.DataFrame) -> pd.Series:
    """Each trial's replicate number within its config: its rank by the replicate keys (seeds)."""
    ranked = trials.sort_values([k for k in REPLICATES if k in trials])
    return ranked.groupby(config_columns(trials), dropna=False).cumcount().reindex(trials.index)


def optimal_lr_trend(ok: pd.DataFrame, key: str) -> Interval:
    """Per replicate, the best learning rate of each cell on `key`, and the least-squares change of its
    log10 over log2(1 + α), times the α range's span; their mean with its t interval over the replicates.
    One replicate: ± the widest step of the LR grid (noise alone can move a lone optimum one step)."""
    chosen = ok.assign(replicate=replicate_of(ok)).dropna(subset=[key])
    chosen = chosen.groupby([*cell_columns(ok), "replicate"], dropna=False)[key].idxmax()
    rows = ok.loc[chosen.to_numpy()]
    r = chosen.index.get_level_values("replicate").to_numpy()
    x, y = np.log2(1 + rows["alpha"].to_numpy()), np.log10(rows["lr"].to_numpy())
    dx = x - (np.bincount(r, x) / np.bincount(r))[r]
    sxx, sxy = np.bincount(r, dx * dx), np.bincount(r, dx * y)  # Σdx = 0 in each replicate: y needs no centring
    falls = sxy[sxx > 0] / sxx[sxx > 0] * (x.max() - x.min())
    step = float(np.diff(np.log10(np.sort(ok["lr"].unique()))).max())
    return replicate_interval(falls, step, f"± one LR grid step ({step:.2f} decades)")


def clean_optimum(stats: pd.DataFrame) -> tuple[str, bool | None]:
    """The clean optimum against the paper's, the grid's largest LR: held where it is best on the replicate
    mean, contradicted where another LR beats it with a Welch interval above 0, else inconclusive.
    `stats`: per (alpha, lr), the mean, std and count of the selection metric."""
    top = stats.index.get_level_values("lr").max()
    if 0 not in stats.index.get_level_values("alpha"):
        return "no clean runs", None
    clean = stats.loc[0]
    chosen = clean["mean"].idxmax()
    if chosen == top:
        return f"clean optimum {chosen:g} (the grid's largest, as the paper's 1)", True
    rows = clean.loc[[chosen, top]].rename(columns={"std": "mean_std", "count": "replicates"})
    gap = Cells.of(rows, "mean").linear([1, -1])
    points = Band(0, unit="points", strict=True)
    return (f"clean optimum {chosen:g}, not the grid's largest {top:g} (its lead {points.show(gap)})",
            False if points.judge(gap) is True else None)


def optimal_lr_falls(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    ok = t[t["status"] == "ok"] if "status" in t else t
    if ok["lr"].nunique() < 2 or ok["alpha"].nunique() < 2:
        return None
    key = selection_key(s)
    fall = optimal_lr_trend(ok, key)
    stats = ok.groupby(["alpha", "lr"])[key].agg(["mean", "std", "count"])
    clean, clean_held = clean_optimum(stats)
    by_alpha = stats["mean"].unstack("lr").idxmax(axis=1)
    return (f"change of log10 optimal lr from α={ok['alpha'].min():g} to {ok['alpha'].max():g}: {band.show(fall)}; "
            f"{clean}; best lr by α: " + ", ".join(f"{a:g}→{lr:g}" for a, lr in by_alpha.items()),
            every([band.judge(fall), clean_held]))
