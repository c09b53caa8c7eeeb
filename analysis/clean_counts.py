"""Figures 8 and 9: the clean labels an accuracy target needs at each α (with the interval its accuracy curve's
95% bounds give), and how that count grows with α (one exponent pooled over the targets, with its t interval)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.bands import Band, Claim, Measured
from analysis.intervals import NOISE_FLOOR, Cells, Interval, number
from analysis.summary import TARGETS, critical_points, t975

def curves(s: pd.DataFrame) -> pd.DataFrame:
    """Figure 8's accuracy curves with each cell's 95% interval, `acc_low` to `acc_high` (one replicate:
    ± NOISE_FLOOR)."""
    acc = s["test_acc"].to_numpy(float)
    bound = {side: s[f"test_acc_ci_{side}"].to_numpy(float) if f"test_acc_ci_{side}" in s else np.full(len(s), np.nan)
             for side in ("low", "high")}
    return pd.DataFrame({"alpha": s["alpha"].to_numpy(), "n_clean": s["n_clean"].to_numpy(float), "test_acc": acc,
                         "acc_low": np.where(np.isnan(bound["low"]), acc - NOISE_FLOOR, bound["low"]),
                         "acc_high": np.where(np.isnan(bound["high"]), acc + NOISE_FLOOR, bound["high"])})


def clean_labels(n: float, censored: str) -> str:
    return {"below": "≤ ", "above": "> "}.get(censored, "") + f"{n:,.0f}"


def threshold(alpha: float, paper_n: int, target: float = 0.9) -> Claim:
    """Figure 8: about paper_n clean labels reach `target` accuracy at this alpha (within a factor 2).

    The count's interval inverts the accuracy curve's: from where the cells' upper 95% bounds reach the
    target to where their lower bounds do (interpolated in log n as the count itself). An end the grid
    does not bracket is open: met already at the smallest size (≤ it) or never met (> the largest)."""
    def check(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
        if "n_clean" not in s or alpha not in set(s["alpha"]):
            return None
        rows = (s["alpha"] == alpha).to_numpy()
        cells = curves(s[rows])
        (n, cen), (lo, lo_cen), (hi, hi_cen) = (critical_points(cells, target, m).iloc[0]
                                                for m in ("test_acc", "acc_high", "acc_low"))
        low = 0.0 if lo_cen == "below" else lo
        high = math.inf if hi_cen == "above" else hi
        basis = Cells.of(s).basis(rows)
        iv = Interval(n / paper_n, low / paper_n, high / paper_n, basis)
        ratio = {"below": "≤ ", "above": "> "}.get(cen, "") + band.number(iv.value)
        ends = (band.number(iv.low) if lo_cen != "below" else "0", band.number(iv.high) if hi_cen != "above" else "∞")
        return (f"{clean_labels(n, cen)} clean labels (95% CI {clean_labels(lo, lo_cen)} to {clean_labels(hi, hi_cen)}, "
                f"{basis}): {ratio} the paper's {paper_n:,} (95% CI {ends[0]} to {ends[1]})", band.judge(iv))
    return Claim("fig8", f"α = {alpha:g} needs about {paper_n:,} clean labels for {target:.0%} ({{}})", check,
                 Band(0.5, 2, "x"))


Counts = list[tuple[float, pd.DataFrame, int]]  # per target: its uncensored critical counts at α > 0, how many censored


def growth(s: pd.DataFrame, counts: Counts | None = None) -> tuple[dict[float, tuple[float, int]], int]:
    """Figure 9's growth law per target: the slope p of log n_crit = c + p·log α (np.polyfit, degree 1,
    so with an intercept c) over the uncensored critical counts at α > 0, and how many points it used;
    only targets with at least 2 such points. Also the number of censored points left out."""
    fits, censored = {}, 0
    for target, exact, n_censored in uncensored(s) if counts is None else counts:
        censored += n_censored
        if len(exact) >= 2:
            slope = np.polyfit(np.log(exact.index.to_numpy(float)), np.log(exact["n_crit"].to_numpy(float)), 1)[0]
            fits[target] = (float(slope), len(exact))
    return fits, censored


def uncensored(s: pd.DataFrame) -> Counts:
    """Per target: its uncensored critical counts at α > 0, and how many were censored."""
    out = []
    for target in TARGETS:
        points = critical_points(s, target)
        points = points[points.index > 0]
        out.append((target, points[points["censored"] == ""], int((points["censored"] != "").sum())))
    return out


def pooled_slope(s: pd.DataFrame, counts: Counts | None = None) -> tuple[float, float, float, int] | None:
    """One growth exponent p for all targets: log n_crit = c_target + p·log α by least squares (an intercept
    per target, so nothing assumes zero clean labels at α = 0), with its 95% Student-t interval.
    (p, low, high, points); None with fewer points than parameters + 1."""
    parts = [(i, exact) for i, (_, exact, _) in enumerate(uncensored(s) if counts is None else counts) if len(exact)]
    rows = [(np.log(a), i, np.log(n)) for i, exact in parts for a, n in exact["n_crit"].items()]
    k = 1 + len(parts)
    if len(rows) < k + 1:
        return None
    x = np.zeros((len(rows), k))
    for r, (log_a, i, _) in enumerate(rows):
        x[r, 0], x[r, 1 + [j for j, _ in parts].index(i)] = log_a, 1.0
    y = np.array([r[2] for r in rows])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(rows) - k
    variance = float(((y - x @ coef) ** 2).sum()) / dof
    half = t975(dof) * math.sqrt(max(variance * np.linalg.inv(x.T @ x)[0, 0], 0.0))
    return float(coef[0]), float(coef[0] - half), float(coef[0] + half), len(rows)


SLOPE_PRECISION = 0.01  # the interval must reach 1 to within this: critical counts are interpolated


def superlinear(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """Held when the 95% interval of the pooled growth exponent p reaches 1 (growth at least linear, as
    the paper's own 2,000 at α=10 and 10,000 at α=50 are) and lies in the band (its lower end excludes
    growth well below linear, its upper end growth more than "slightly" faster); contradicted when it
    lies wholly below 1 or wholly above the band. Censored critical counts are left out of the fit,
    never clamped into it."""
    if "n_clean" not in s or not (s["alpha"] > 0).any():
        return None
    counts = uncensored(s)
    fits, censored = growth(s, counts)
    left_out = f"; {censored} censored point{'s' * (censored != 1)} left out"
    fit = pooled_slope(s, counts)
    if fit is None:
        return f"too few uncensored critical counts at α > 0 to fit the growth{left_out}", None
    p, low, high, points = fit
    each = ", ".join(f"{100 * target:.0f}%: {q:.2f} ({k} α)" for target, (q, k) in fits.items())
    edges = (band.low, 1 - SLOPE_PRECISION, band.high)
    low_text, high_text = (number(x, decimals=2, edges=edges) for x in (low, high))
    held = False if high < 1 - SLOPE_PRECISION else band.judge(Interval(p, low, high, ""))
    return (f"exponent of n_crit in α: {p:.2f} (95% interval {low_text} to {high_text}, {points} points) "
            f"[per target {each}]{left_out}", held)

