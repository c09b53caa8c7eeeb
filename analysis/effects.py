"""Effects measured on accuracies: one cell's level (Figures 1 to 3), gaps between architectures (Figure 1), drops
from the clean or δ = 0 cells (Figures 5, 6 and 11's H_α), gaps between noise sources or kinds (Figures 6, 7 and
CIFAR-10N), and the slope on the batch size (Figure 11). Each check takes the summary (best LR per cell), the trials
and the claim's band, and returns its measured text with the band's verdict (analysis.bands)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.bands import Band, Measured, every
from analysis.intervals import Cells
from analysis.summary import kind_of

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
