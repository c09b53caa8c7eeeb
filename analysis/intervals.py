"""95% intervals for the claims' effects, built from the replicate statistics of summary.csv's cells.

A cell (one summary row: the chosen config of one grid cell) gives its replicate mean, sample std and
count n. An effect that is a linear combination of cells (one cell, a difference, a drop from a baseline,
a slope over cells) gets a Welch–Satterthwaite interval: variance V = Σ w²·std²/n over its cells, degrees
of freedom V² / Σ [(w²·std²/n)² / (n − 1)], and Student's t at that fractional dof (t_at). A ratio of two
such combinations gets Fieller's interval. (Figure 12's optimal learning rate, an argmax and no linear
combination, is the one effect estimated per replicate: analysis.lr_trend.optimal_lr_trend.)

Cells are taken as independent: replicate r of one cell is not paired with replicate r of another.
Pairing would cancel a component that a replicate's cells share (its clean subset, its order), but with 3
replicates a paired interval has 2 dof (t = 4.30), Welch on two cells about 4 (t = 2.78) and more on many.
Simulated, for a drop of 0 against a ≤ 3-point band at 1 point of noise and 3 replicates: Welch holds 67%
and pairing 51% with independent replicates, 72% and 75% when half the variance is shared by a replicate's
cells; at a drop of 3 points (the edge) both hold ≤ 2.5%. A shared component only widens Welch's
interval for a contrast (weights summing to 0), so it stays valid either way, and runs without the seed
columns need nothing more.

A cell with one replicate has no spread to measure: it counts as its value ± NOISE_FLOOR (a 95%
half-width), propagated through the effect like a standard error, so a one-replicate effect is settled
only when its margin to the band exceeds that floor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.summary import t975

# One replicate's final accuracy moves by about 1 point from seed to seed (the spread the null tests in
# tests/test_claims_power.py simulate): 2 points is about two of its standard deviations.
NOISE_FLOOR = 0.02
Z975 = 1.96  # t_{0.975, ∞}: the floor is a normal 95% half-width


def t_at(dof: float) -> float:
    """t_{0.975, dof} for a Satterthwaite (fractional) dof: between the tabulated whole dofs up to 30,
    linear in 1/dof (t is convex in 1/dof, so this errs wide); above 30 the table's rule; 1.96 beyond 120."""
    if dof > 120:
        return Z975
    whole = int(dof)
    if whole == dof or whole >= 30 or whole < 1:
        return t975(whole)
    low, high = t975(whole), t975(whole + 1)
    return low + (high - low) * (1 / whole - 1 / dof) / (1 / whole - 1 / (whole + 1))


@dataclass(frozen=True)
class Interval:
    """An effect's estimate and 95% interval; `basis` says what the interval rests on."""

    value: float
    low: float
    high: float
    basis: str


@dataclass(frozen=True)
class Cells:
    """Summary rows an effect combines: each one's mean, squared standard error and degrees of freedom."""

    mean: np.ndarray
    se2: np.ndarray
    dof: np.ndarray
    n: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame, metric: str = "test_acc") -> Cells:
        """From summary rows: `metric`, `<metric>_std` and `replicates` (absent: one replicate each)."""
        n = rows["replicates"].to_numpy(float) if "replicates" in rows else np.ones(len(rows))
        std = rows[f"{metric}_std"].to_numpy(float) if f"{metric}_std" in rows else np.full(len(rows), np.nan)
        one = (n < 2) | np.isnan(std)
        se2 = np.where(one, (NOISE_FLOOR / Z975) ** 2, np.nan_to_num(std) ** 2 / np.maximum(n, 1))
        return cls(rows[metric].to_numpy(float), se2, np.where(one, np.inf, n - 1), np.where(one, 1, n))

    def basis(self, w: np.ndarray) -> str:
        used = self.n[np.asarray(w) != 0]
        if (used < 2).any():
            return f"one replicate: each accuracy ± the {100 * NOISE_FLOOR:g}-point noise floor"
        low, high = int(used.min()), int(used.max())
        return f"{low} replicates" if low == high else f"{low}–{high} replicates"

    def spread(self, w: np.ndarray) -> tuple[float, float]:
        """The combination's variance and its Welch–Satterthwaite dof."""
        part = np.asarray(w, float) ** 2 * self.se2
        var = float(part.sum())
        spread = float((part ** 2 / self.dof).sum())  # 0 when every cell is one replicate's (infinite dof)
        return var, (var ** 2 / spread if spread > 0 else math.inf)

    def linear(self, w: Iterable[float]) -> Interval:
        """Σ w·mean with its Welch–Satterthwaite interval."""
        w = np.asarray(list(w), float)
        value = float(w @ self.mean)
        var, dof = self.spread(w)
        half = t_at(dof) * math.sqrt(var)
        return Interval(value, value - half, value + half, self.basis(w))

    def ratio(self, wa: Iterable[float], wb: Iterable[float]) -> Interval:
        """(Σ wa·mean) / (Σ wb·mean) with Fieller's interval: the r whose contrast a − r·b is within t of 0.
        Unbounded (±inf) when the denominator's own interval reaches 0."""
        wa, wb = np.asarray(list(wa), float), np.asarray(list(wb), float)
        a, b = float(wa @ self.mean), float(wb @ self.mean)
        r = a / b if b else math.nan
        t2 = t_at(self.spread(wa - (r if math.isfinite(r) else 0) * wb)[1]) ** 2
        saa, sab, sbb = (float((x * y * self.se2).sum()) for x, y in ((wa, wa), (wa, wb), (wb, wb)))
        qa, qb, qc = b * b - t2 * sbb, a * b - t2 * sab, a * a - t2 * saa
        basis = self.basis(np.abs(wa) + np.abs(wb))
        if qa <= 0:
            return Interval(r, -math.inf, math.inf, basis)
        root = math.sqrt(max(qb * qb - qa * qc, 0.0))
        return Interval(r, (qb - root) / qa, (qb + root) / qa, basis)


def replicate_interval(values: np.ndarray, floor: float, floor_text: str) -> Interval:
    """The mean of per-replicate values with its Student-t interval; one value: ± `floor` (`floor_text`)."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, mean - floor, mean + floor, f"one replicate: {floor_text}")
    half = t975(len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, f"{len(values)} replicates")


def number(x: float, scale: float = 1.0, decimals: int = 1, edges: Iterable[float] = (), sign: bool = False) -> str:
    """x·scale to `decimals` places, or up to 3 more where fewer would print it on (or across) one of
    `edges` that it is not on: 90.05% and 89.95% against a 90% edge print so, not both as 90.0%."""
    if math.isinf(x):
        return ("-" if x < 0 else "+" if sign else "") + "∞"
    value = x * scale
    marks = [round(e * scale, 9) for e in edges if math.isfinite(e)]
    for places in range(decimals, decimals + 4):
        text = f"{value:{'+' if sign else ''}.{places}f}"
        text = text.replace("-", "+" if sign else "") if float(text) == 0 else text  # no "-0.0"
        if all(np.sign(round(float(text) - m, 9)) == np.sign(round(value - m, 9)) for m in marks):
            return text
    return text
