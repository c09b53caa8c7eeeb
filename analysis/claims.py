"""The paper's quantified claims against what a study measured: claims.md and claims.csv.

    python -m analysis.claims <run_dir> [<run_dir> ...] [--out DIR]

Each claim reads the summary (best LR per cell) or trials of the run that holds its figure, estimates its
effect with a 95% interval over the replicates (analysis.intervals) and says:
- held: the interval lies inside the claim's band;
- contradicted: the interval lies wholly outside it (or the claim's premise is contradicted);
- inconclusive: the interval straddles a band edge (with one replicate: the value lies within the noise
  floor of an edge), or the data only bound the value (a censored critical count);
- not run: no given run measured it.
A claim made of parts (every cell's drop within the band; two gaps in order) is held when every part is,
contradicted when one part is. Each measured text gives its interval and what it rests on, and the table
says which split chose the learning rates.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import rundir
from analysis.intervals import NOISE_FLOOR, Cells, Interval, number, replicate_interval
from analysis.summary import REPLICATES, TARGETS, cell_columns, config_columns, critical_points, kind_of, missing, \
    read_run, t975

Measured = tuple[str, bool | None] | None  # (measured value as text, held? None: inconclusive) or None: no data

EDGE = 1e-9  # how close to a band edge counts as on it
UNITS = {"%": (100, "%", 1, False), "points": (100, " points", 1, True), "x": (1, "x", 2, False),
         "": (1, "", 2, False), "decades": (1, " decades", 2, True)}  # scale, suffix, decimals, signed


@dataclass(frozen=True)
class Band:
    """Where an effect's 95% interval must lie for its claim to hold."""

    low: float = -math.inf
    high: float = math.inf
    unit: str = ""  # "%" (an accuracy), "points" (an accuracy difference), "x" (a ratio to the paper's value), "", "decades"
    strict: bool = False  # open bounds

    def judge(self, iv: Interval) -> bool | None:
        """True: the interval lies inside; False: wholly outside; None: it straddles an edge (or is NaN).
        An end within EDGE of an edge counts as on it (floating-point noise, as `number` prints it)."""
        low, high = (self.low + EDGE, self.high - EDGE) if self.strict else (self.low - EDGE, self.high + EDGE)
        if (iv.low > low if self.strict else iv.low >= low) and (iv.high < high if self.strict else iv.high <= high):
            return True
        outside = (iv.high <= low or iv.low >= high) if self.strict else (iv.high < low or iv.low > high)
        return False if outside else None

    def number(self, x: float, suffix: bool = True) -> str:
        scale, unit, decimals, signed = UNITS[self.unit]
        return number(x, scale, decimals, (self.low, self.high), signed) + (unit if suffix else "")

    def show(self, iv: Interval) -> str:
        """'91.2% (95% CI 90.05 to 92.4%, 3 replicates)': as many digits as tell each end's side of an edge."""
        return (f"{self.number(iv.value)} (95% CI {self.number(iv.low, False)} to {self.number(iv.high)}, "
                f"{iv.basis})")

    def __str__(self) -> str:
        if self.unit == "x":
            return f"within {self.high:g}x"
        scale, suffix = UNITS[self.unit][:2]
        low, high = f"{self.low * scale:g}", f"{self.high * scale:g}"
        if self.low == -self.high:
            return f"within ±{high}{suffix}"
        if math.isinf(self.low):
            return f"{'<' if self.strict else '≤'} {high}{suffix}"
        if math.isinf(self.high):
            return f"{'>' if self.strict else '≥'} {low}{suffix}"
        return f"{low}–{high}{suffix}"


@dataclass(frozen=True)
class Claim:
    figure: str
    text: str  # "{}" stands for the tolerance
    check: Callable[[pd.DataFrame, pd.DataFrame, Band | None], Measured]
    tolerance: Band | None = None

    @property
    def claim(self) -> str:
        return self.text.format(self.tolerance)


def every(parts: Iterable[bool | None]) -> bool | None:
    """A claim of parts: held when every part is, contradicted when one part is, else inconclusive."""
    parts = list(parts)
    return True if all(p is True for p in parts) else False if any(p is False for p in parts) else None


def where(summary: pd.DataFrame, **conditions: object) -> np.ndarray:
    """A mask of the rows matching every condition (a value, or a list of values); none when a column is absent."""
    mask = np.ones(len(summary), bool)
    for column, value in conditions.items():
        if column not in summary:
            return mask & False
        mask &= (summary[column].isin(value) if isinstance(value, (list, tuple)) else summary[column] == value).to_numpy()
    return mask


def share(mask: np.ndarray) -> np.ndarray:
    """Weights over the summary's rows that average the rows where `mask` holds."""
    mask = np.asarray(mask, float)
    return mask / mask.sum()


def selection_key(summary: pd.DataFrame) -> str:
    """The metric the run's learning rates were chosen on (val_acc, or test_acc without a held-out split)."""
    return summary["selected_on"].iloc[0].split()[0] if "selected_on" in summary and len(summary) else "test_acc"


def best_row(s: pd.DataFrame, mask: np.ndarray) -> int | None:
    """The position of the row (of an architecture family) with the best selection metric: chosen as its LR was."""
    key = selection_key(s)
    key = key if key in s and s[key].notna().any() else "test_acc"
    values = np.where(mask, s[key].to_numpy(float), np.nan)
    return None if np.isnan(values).all() else int(np.nanargmax(values))


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def level(archs: list[str], alpha: float, metric: str = "test_acc") -> Callable[[pd.DataFrame, pd.DataFrame, Band], Measured]:
    """A claim on one cell: the best of `archs` at `alpha` (its replicate t interval against the band)."""
    def check(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
        j = best_row(s, where(s, arch=archs, alpha=alpha))
        if j is None or metric not in s:
            return None
        iv = Cells.of(s, metric).linear(share(np.arange(len(s)) == j))
        return f"{s['arch'].iloc[j]}: {band.show(iv)}", band.judge(iv)
    return check


CONVNETS, MLPS, RESNETS = ["conv2", "conv4", "conv6"], ["mlp1", "mlp2", "mlp4"], ["resnet18", "resnet101"]


def architectures_ordered(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """ConvNet − MLP and MLP − perceptron at the largest α (each family's best), both intervals above 0."""
    if "alpha" not in s or s.empty:
        return None
    alpha = s["alpha"].max()
    rows = [best_row(s, where(s, arch=family, alpha=alpha)) for family in (CONVNETS, MLPS, ["perceptron"])]
    if None in rows:
        return None
    cells, one = Cells.of(s), [share(np.arange(len(s)) == j) for j in rows]
    gaps = [cells.linear(one[0] - one[1]), cells.linear(one[1] - one[2])]
    accs = ", ".join(f"{s['arch'].iloc[j]} {pct(s['test_acc'].iloc[j])}" for j in rows)
    return (f"α={alpha:g}: {accs}; ConvNet − MLP {band.show(gaps[0])}; MLP − perceptron {band.show(gaps[1])}",
            every(band.judge(g) for g in gaps))


def worst_drop(s: pd.DataFrame, base: np.ndarray, cells: np.ndarray, band: Band,
               label: Callable[[pd.Series], str]) -> Measured:
    """Each `cells` row's drop from the mean of the `base` rows, every interval within the band; stated by the worst."""
    rows, stats = np.flatnonzero(cells), Cells.of(s)
    drops = [stats.linear(share(base) - (np.arange(len(s)) == j)) for j in rows]
    verdicts = [band.judge(d) for d in drops]
    j = int(np.argmax([d.value for d in drops]))
    inside = sum(v is True for v in verdicts)
    return (f"worst drop {band.show(drops[j])} at {label(s.iloc[rows[j]])}; {inside} of {len(drops)} within the band",
            every(verdicts))


def structured_like_uniform(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    if "delta" not in s or s["delta"].max() < 0.5 or not (s["delta"] == 0).any():
        return None
    delta = s["delta"].to_numpy(float)
    if not ((delta > 0) & (delta < 0.9)).any():
        return None
    order = (lambda r: f"δ={r['delta']:g} ({r['order']})") if "order" in s else (lambda r: f"δ={r['delta']:g}")
    text, held = worst_drop(s, delta == 0, (delta > 0) & (delta < 0.9), band, order)
    base, at_1 = s["test_acc"][delta == 0].mean(), s["test_acc"][delta >= 0.99]
    return f"for δ < 0.9: {text}" + (f"; at δ = 1: {100 * (base - at_1.min()):.1f} points" if len(at_1) else ""), held


def sources(s: pd.DataFrame) -> tuple[float, np.ndarray, dict[str, np.ndarray]] | None:
    """Figure 6's cells: the largest α, the clean rows (α = 0) and, per noise source, its rows at that α."""
    if "source" not in s or not (s["alpha"] == 0).any():
        return None
    alpha = s["alpha"].max()
    top = (s["alpha"] == alpha).to_numpy()
    return alpha, (s["alpha"] == 0).to_numpy(), {src: top & (s["source"] == src).to_numpy() for src in set(s["source"][top])}


def cifar100_half_drop(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """Fieller's interval for drop(CIFAR-100 noise) / drop(CIFAR-10 noise) at the largest α; the premise,
    a CIFAR-10 drop above 0, must hold first."""
    found = sources(s)
    if found is None or not {"same", "cifar100"} <= found[2].keys():
        return None
    alpha, clean, top = found
    cells, same, other = Cells.of(s), share(clean) - share(top["same"]), share(clean) - share(top["cifar100"])
    premise = cells.linear(same)
    points = Band(0, unit="points", strict=True)
    held = points.judge(premise)
    if held is not True:  # no drop to halve: contradicted when the drop's interval is ≤ 0
        return (f"α={alpha:g}: CIFAR-10 noise drop {points.show(premise)}, CIFAR-100 noise drop "
                f"{points.show(cells.linear(other))}: no {'clear ' * (held is None)}drop to halve"), held
    ratio = cells.ratio(other, same)
    return (f"α={alpha:g}: CIFAR-100 drop / CIFAR-10 drop = {band.show(ratio)} "
            f"({100 * cells.linear(other).value:.1f} / {100 * premise.value:.1f} points)"), band.judge(ratio)


def white_no_drop(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    found = sources(s)
    if found is None or "white" not in found[2]:
        return None
    alpha, clean, top = found
    drop = Cells.of(s).linear(share(clean) - share(top["white"]))
    return f"α={alpha:g}: drop {band.show(drop)}", band.judge(drop)


def novel_like_repeated(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """Repeated − novel at every α > 0, each interval within the band."""
    if "source" not in s:
        return None
    alpha, source = s["alpha"].to_numpy(float), s["source"].to_numpy()
    same, novel = [[(alpha == a) & (source == src) for a in np.unique(alpha[alpha > 0])] for src in ("same", "novel")]
    pairs = [(a, m, n) for a, m, n in zip(np.unique(alpha[alpha > 0]), same, novel) if m.any() and n.any()]
    if not pairs:
        return None
    cells = Cells.of(s)
    gaps = [cells.linear(share(m) - share(n)) for _, m, n in pairs]
    each = ", ".join(f"α={a:g}: {band.number(gap.value)}" for (a, _, _), gap in zip(pairs, gaps))
    j = int(np.argmax([abs(gap.value) for gap in gaps]))
    return (f"repeated − novel, largest at α={pairs[j][0]:g}: {band.show(gaps[j])} ({each})",
            every(band.judge(gap) for gap in gaps))


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


def batch_slope(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """Cross-entropy accuracy against log2 batch size: the least-squares slope at each α > 0, averaged over
    them (a linear combination of cells, so a Welch interval), in points per doubling of the batch."""
    if "loss" not in s or "batch_size" not in s:
        return None
    ce, alpha = (s["loss"] == "ce").to_numpy() & (s["alpha"] > 0).to_numpy(), s["alpha"].to_numpy(float)
    x = np.log2(s["batch_size"].to_numpy(float))
    per_alpha = {}  # α -> the weights of its least-squares slope
    for a in np.unique(alpha[ce]):
        rows = ce & (alpha == a)
        dx = np.where(rows, x - x[rows].mean(), 0.0)
        if (dx != 0).any():
            per_alpha[a] = dx / (dx ** 2).sum()
    if not per_alpha:
        return None
    cells = Cells.of(s)
    slope = cells.linear(sum(per_alpha.values()) / len(per_alpha))
    each = ", ".join(f"α={a:g}: {band.number(cells.linear(w).value)}" for a, w in per_alpha.items())
    return f"slope over α > 0: {band.show(slope)} per batch doubling ({each})", band.judge(slope)


def h_alpha_flat(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """With H_α, the fall from the smallest α to each larger α, every interval below the band's top."""
    if "loss" not in s:
        return None
    h, alpha = (s["loss"] == "h_alpha").to_numpy(), s["alpha"].to_numpy(float)
    if len(np.unique(alpha[h])) < 2:
        return None
    first = alpha[h].min()
    text, held = worst_drop(s, h & (alpha == first), h & (alpha > first), band, lambda r: f"α={r['alpha']:g}")
    return f"fall from α={first:g}: {text}", held


def replicate_of(trials: pd.DataFrame) -> pd.Series:
    """Each trial's replicate number within its config: its rank by the replicate keys (seeds)."""
    keys = [k for k in REPLICATES if k in trials]
    ranked = trials.sort_values(keys) if keys else trials
    return ranked.groupby(config_columns(trials), dropna=False).cumcount().reindex(trials.index)


def optimal_lr_trend(ok: pd.DataFrame, key: str) -> Interval:
    """Per replicate, the best learning rate of each cell on `key`, and the least-squares change of its
    log10 over log2(1 + α), times the α range's span; their mean with its t interval over the replicates.
    One replicate: ± the widest step of the LR grid (noise alone can move a lone optimum one step)."""
    chosen = ok.assign(replicate=replicate_of(ok)).dropna(subset=[key])
    chosen = chosen.groupby([*cell_columns(ok), "replicate"], dropna=False)[key].idxmax()
    rows = ok.loc[chosen.to_numpy()]
    r = chosen.index.get_level_values("replicate").to_numpy()
    x, y = np.log2(1 + rows["alpha"].to_numpy(float)), np.log10(rows["lr"].to_numpy(float))
    n = np.bincount(r)
    dx, dy = x - (np.bincount(r, x) / n)[r], y - (np.bincount(r, y) / n)[r]
    sxx, sxy = np.bincount(r, dx * dx), np.bincount(r, dx * dy)
    falls = sxy[sxx > 0] / sxx[sxx > 0] * (x.max() - x.min())
    step = float(np.diff(np.log10(np.sort(ok["lr"].unique()))).max())
    return replicate_interval(falls, step, f"± one LR grid step ({step:.2f} decades)")


def clean_optimum(stats: pd.DataFrame, key: str) -> tuple[str, bool | None]:
    """The clean optimum against the paper's, the grid's largest LR: held where it is best on the replicate
    mean, contradicted where another LR beats it with a Welch interval above 0, else inconclusive.
    `stats`: per (alpha, lr), the mean, std and count of `key`."""
    top = stats.index.get_level_values("lr").max()
    if 0 not in stats.index.get_level_values("alpha"):
        return "no clean runs", None
    clean = stats.loc[0]
    chosen = clean["mean"].idxmax()
    if chosen == top:
        return f"clean optimum {chosen:g} (the grid's largest, as the paper's 1)", True
    rows = clean.loc[[chosen, top]].rename(columns={"mean": key, "std": f"{key}_std", "count": "replicates"})
    gap = Cells.of(rows, key).linear([1, -1])
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
    clean, clean_held = clean_optimum(stats, key)
    by_alpha = stats["mean"].unstack("lr").idxmax(axis=1)
    return (f"change of log10 optimal lr from α={ok['alpha'].min():g} to {ok['alpha'].max():g}: {band.show(fall)}; "
            f"{clean}; best lr by α: " + ", ".join(f"{a:g}→{lr:g}" for a, lr in by_alpha.items()),
            every([band.judge(fall), clean_held]))


def kind_gap(first: str, second: str, names: tuple[str, str]) -> Callable[[pd.DataFrame, pd.DataFrame, Band], Measured]:
    """exp=human_noise: accuracy under noise kind `first` minus under `second` (analysis.summary.kind_of), averaged
    over the (architecture, α > 0) cells both ran at, with its Welch interval over the replicates (Cells)."""
    def check(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
        kind, alpha = kind_of(s), s["alpha"].to_numpy(float)
        noisy = sorted(set(zip(s["arch"][alpha > 0], alpha[alpha > 0])))
        cells = [(arch, a, where(s, arch=arch, alpha=a)) for arch, a in noisy]
        pairs = [(arch, a, cell & (kind == first), cell & (kind == second)) for arch, a, cell in cells
                 if (cell & (kind == first)).any() and (cell & (kind == second)).any()]
        if not pairs:
            return None
        gap = Cells.of(s).linear(sum(share(one) - share(other) for _, _, one, other in pairs) / len(pairs))
        acc = s["test_acc"].to_numpy(float)
        each = ", ".join(f"{arch} α={a:g}: {pct(acc[one].mean())} vs {pct(acc[other].mean())}"
                         for arch, a, one, other in pairs)
        return (f"{names[0]} − {names[1]}: {band.show(gap)} over {len(pairs)} (arch, α) pairs "
                f"({names[0]} vs {names[1]}: {each})"), band.judge(gap)
    return check


CLAIMS = [
    Claim("fig1", "MNIST: ConvNet {} at α = 100", level(CONVNETS, 100), Band(0.9, unit="%", strict=True)),
    Claim("fig1", "MNIST: perceptron ≈ 40% at α = 100 ({})", level(["perceptron"], 100), Band(0.3, 0.5, "%")),
    Claim("fig1", "MNIST: larger architectures are more robust (at the largest α, ConvNet − MLP and MLP − perceptron "
                  "each {})", architectures_ordered, Band(0, unit="points", strict=True)),
    Claim("fig2", "CIFAR-10: ResNet {} at α = 10", level(RESNETS, 10), Band(0.85, unit="%")),
    Claim("fig3", "ImageNet: ResNet-18 {} top-5 at α = 5", level(["resnet18"], 5, "test_top5"), Band(0.7, unit="%")),
    Claim("fig5", "Structured noise performs like uniform noise except δ ≈ 1 (every drop from δ = 0 {} for δ < 0.9)",
          structured_like_uniform, Band(high=0.05, unit="points")),
    Claim("fig6", "CIFAR-100 noise costs about half the drop of CIFAR-10 noise (ratio {})", cifar100_half_drop, Band(0.25, 0.75)),
    Claim("fig6", "White-noise examples do not appreciably lower accuracy (drop {})", white_no_drop, Band(high=0.03, unit="points")),
    Claim("fig7", "Novel vs repeated noisy images: essentially no difference (repeated − novel {} at every α)", novel_like_repeated,
          Band(-0.02, 0.02, unit="points")),
    threshold(10, 2_000),
    threshold(50, 10_000),
    Claim("fig9", "Clean labels needed grow slightly faster than linearly in α (exponent's 95% interval "
                  "reaching 1, lower end ≥ {0.low:g}, upper end ≤ {0.high:g})", superlinear, Band(0.85, 1.5)),
    Claim("fig11", "Larger batches are more robust to noise (accuracy's slope on log2 batch size, pooled over α > 0: {} "
                   "per doubling)",
          batch_slope, Band(0, unit="points", strict=True)),
    Claim("fig11", "With H_α (infinite batch) accuracy does not fall as α rises (fall from α = 0 {} at every α)",
          h_alpha_flat, Band(high=0.03, unit="points")),
    Claim("fig12", "The optimal learning rate falls as noise rises (its log10's fitted change across the α range {}; "
                   "the clean optimum the grid's largest, as the paper's 1)", optimal_lr_falls, Band(high=0, unit="decades", strict=True)),
    Claim("human", "Beyond the paper (CIFAR-10N): at equal α, the annotators' own labels hurt more than labels drawn "
                   "from their class-conditional matrix, both one label per image kept by all its copies "
                   "(tied matrix − per-image accuracy {})",
          kind_gap("matrix tied", "labels tied", ("tied matrix", "per-image labels")),
          Band(0, unit="points", strict=True)),
    Claim("human", "Beyond the paper (CIFAR-10N): repeating an image's one matrix-drawn label on all its copies hurts "
                   "more than drawing each copy's afresh (fresh − tied accuracy {})",
          kind_gap("matrix", "matrix tied", ("fresh matrix", "tied matrix")), Band(0, unit="points", strict=True)),
]


HELD, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "held", "contradicted", "inconclusive", "not run"
VERDICTS = (HELD, CONTRADICTED, INCONCLUSIVE, NOT_RUN)


def verdict(held: bool | None) -> str:
    """The verdict word of a measured claim: held, contradicted, or inconclusive (see the module's
    docstring). "not run" is for no data."""
    return INCONCLUSIVE if held is None else HELD if held else CONTRADICTED


SPLITS = {"val_acc": "val (val_acc, the held-out split)",
          "test_acc": "test (test_acc: no held-out split, data.n_val=0; the test set both chose and scored)"}


def splits(summary: pd.DataFrame) -> list[str]:
    """The `selected_on` values of a summary: the metric each cell's learning rate was chosen on."""
    return sorted(summary["selected_on"].dropna().unique()) if "selected_on" in summary else []


def selected_on(chosen: list[str]) -> str:
    """The selection split in words, for the measured text: 'selected on test' where none was held out."""
    return ", ".join("selected on " + SPLITS.get(c.split()[0], c.split()[0]) + c[len(c.split()[0]):] for c in chosen)


def evaluate(run_dirs: list[Path], select: str | None = None) -> pd.DataFrame:
    """One row per claim, measured in the latest given run whose study drew its figure (each run's LR
    chosen on `select`, by default val where the run has a held-out split, else test)."""
    return evaluate_runs([(Path(run_dir), *read_run(run_dir, select)) for run_dir in run_dirs])


def evaluate_runs(runs: list[tuple[Path, dict, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """evaluate() over runs already read: (run_dir, study, trials, summary) each. The measured text ends
    with the selection split."""
    rows = []
    for claim in CLAIMS:
        row = {"figure": claim.figure, "claim": claim.claim, "measured": "", "scale": "", "run": "", "selected_on": "",
               "verdict": NOT_RUN, "figure_file": ""}
        for run_dir, study, trials, summary in runs:
            result = claim.check(summary, trials, claim.tolerance) if claim.figure in study["figures"] else None
            if result is not None:
                chosen = splits(summary)
                row.update(measured=f"{result[0]}; {selected_on(chosen)}", scale=f"exp={study['exp']} preset={study['preset']}",
                           run=run_dir.name, selected_on=", ".join(chosen), verdict=verdict(result[1]),
                           figure_file=str(Path(run_dir).resolve() / f"{claim.figure}.png"))
        rows.append(row)
    return pd.DataFrame(rows)


def link(row: object, out: Path) -> str:
    """The figure cell of claims.md: a link to the figure file, relative to claims.md, where it was measured."""
    if not row.figure_file:
        return row.figure
    return f"[{row.figure}]({os.path.relpath(row.figure_file, Path(out).resolve())})"


RULE = ("Verdicts: held (the effect's 95% interval lies inside the claim's band); contradicted (wholly "
        "outside it, or the claim's premise fails); inconclusive (it straddles a band edge, or censored data only "
        f"bound the value); not run (no data). With one replicate each accuracy counts as ± {100 * NOISE_FLOOR:g} "
        "points (the noise floor). `selected on`: the split each cell's learning rate was chosen on: val_acc, the "
        "held-out split, or test_acc (`data.n_val=0`, the paper's rule: the test set both chooses and scores, "
        "so its verdicts are optimistic).")


def write(claims: pd.DataFrame, out: Path) -> None:
    rundir.write_csv(claims, out / "claims.csv")
    header = ("| figure | claim | measured | scale | selected on | verdict |\n|---|---|---|---|---|---|\n")
    body = "".join(f"| {link(r, out)} | {r.claim} | {r.measured} | {r.scale} | {r.selected_on} | {r.verdict} |\n"
                   for r in claims.itertuples())
    with rundir.atomic_path(out / "claims.md") as tmp:
        tmp.write_text("# The paper's claims against this study\n\n" + RULE + "\n\n" + header + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.claims", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."), help="where claims.md and claims.csv go")
    parser.add_argument("--select", choices=("test", "val"), default=None,
                        help="the split the LR is chosen on (default: val where a run has val_acc, else test)")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        if error := missing(run_dir):
            print(f"error: {error}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        claims = evaluate(args.run_dirs, args.select)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write(claims, args.out)
    print(claims[["figure", "claim", "measured", "verdict"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
