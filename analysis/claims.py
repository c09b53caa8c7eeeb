"""The paper's quantified claims against what a study measured: claims.md and claims.csv.

    python -m analysis.claims <run_dir> [<run_dir> ...] [--out DIR]

Each claim reads the summary (best LR per cell) or trials of the run that holds its figure, and
says held, contradicted (the measured value lies outside the claim's band, or the claim's premise fails:
the numbers are given either way), inconclusive (the data only bound the value, e.g. a censored critical
count, and the bound settles nothing), or not run (no given run measured it: no data). Each claim's
tolerance is one Band, and the claim's text states it from there.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import rundir
from analysis.summary import t975, TARGETS, critical_points, missing, noise_kind, read_run

Measured = tuple[str, bool | None] | None  # (measured value as text, held? None: inconclusive) or None: no data


@dataclass(frozen=True)
class Band:
    """Where a measured value must lie for its claim to hold."""

    low: float = -math.inf
    high: float = math.inf
    unit: str = ""  # "%" (an accuracy), "points" (an accuracy difference), "x" (a ratio to the paper's value), ""
    strict: bool = False  # open bounds

    def holds(self, x: float) -> bool:
        return bool(self.low < x < self.high if self.strict else self.low <= x <= self.high)

    def __str__(self) -> str:
        if self.unit == "x":
            return f"within {self.high:g}x"
        scale, suffix = {"%": (100, "%"), "points": (100, " points"), "": (1, "")}[self.unit]
        low, high = f"{self.low * scale:g}", f"{self.high * scale:g}"
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


def at(summary: pd.DataFrame, metric: str = "test_acc", **where: object) -> pd.Series:
    rows = summary
    for column, value in where.items():
        if column not in rows:
            return pd.Series(dtype=float)
        rows = rows[rows[column].isin(value) if isinstance(value, (list, tuple)) else rows[column] == value]
    return rows[metric]


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def one(values: pd.Series, test: Callable[[float], bool]) -> Measured:
    return None if values.empty else (pct(values.max()), test(values.max()))


def architectures_ordered(s: pd.DataFrame, t: pd.DataFrame, band: None) -> Measured:
    top = s[s["alpha"] == s["alpha"].max()]
    conv = at(top, arch=["conv2", "conv4", "conv6"]).max()
    mlp = at(top, arch=["mlp1", "mlp2", "mlp4"]).max()
    perceptron = at(top, arch="perceptron").max()
    if np.isnan([conv, mlp, perceptron]).any():
        return None
    text = f"α={top['alpha'].iloc[0]:g}: ConvNet {pct(conv)}, MLP {pct(mlp)}, perceptron {pct(perceptron)}"
    return text, bool(conv >= mlp >= perceptron)


def structured_like_uniform(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    if "delta" not in s or s["delta"].max() < 0.5:
        return None
    base = s[s["delta"] == 0]["test_acc"].mean()
    worst = s[(s["delta"] > 0) & (s["delta"] < 0.9)]["test_acc"].min()
    drop_at_1 = base - s[s["delta"] >= 0.99]["test_acc"].min()
    return (f"worst drop for δ < 0.9: {100 * (base - worst):.1f} points; at δ = 1: {100 * drop_at_1:.1f} points",
            band.holds(base - worst))


def drops(s: pd.DataFrame) -> tuple[float, dict[str, float]] | None:
    if "source" not in s:
        return None
    clean = s[s["alpha"] == 0]["test_acc"].mean()
    top = s[s["alpha"] == s["alpha"].max()]
    return top["alpha"].iloc[0], {src: clean - acc for src, acc in top.groupby("source")["test_acc"].mean().items()}


def cifar100_half_drop(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    d = drops(s)
    if d is None or not {"same", "cifar100"} <= d[1].keys():
        return None
    alpha, same, other = d[0], d[1]["same"], d[1]["cifar100"]
    if same <= 0:  # the premise (CIFAR-10 noise lowers accuracy) fails: a contradiction, not a missing result
        return (f"α={alpha:g}: CIFAR-10 noise causes no drop ({100 * same:.1f} points; CIFAR-100 noise "
                f"{100 * other:.1f} points), so there is no drop to halve", False)
    ratio = other / same
    return (f"α={alpha:g}: CIFAR-100 drop / CIFAR-10 drop = {ratio:.2f} "
            f"({100 * other:.1f} / {100 * same:.1f} points)", band.holds(ratio))


def white_no_drop(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    d = drops(s)
    if d is None or "white" not in d[1]:
        return None
    return f"α={d[0]:g}: drop {100 * d[1]['white']:.1f} points", band.holds(d[1]["white"])


def novel_like_repeated(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    if "source" not in s or not {"same", "novel"} <= set(s["source"]):
        return None
    by = s[s["alpha"] > 0].pivot_table(index="alpha", columns="source", values="test_acc")
    gap = (by["same"] - by["novel"]).abs().mean()
    return f"mean |repeated - novel| = {100 * gap:.1f} points", band.holds(gap)


def threshold(alpha: float, paper_n: int, target: float = 0.9) -> Claim:
    """Figure 8: about paper_n clean labels reach `target` accuracy at this alpha (within a factor 2).

    A censored count is a bound only: it contradicts the claim when the bound already lies outside the
    band (met at a size below paper_n·low, or not met at a size above paper_n·high), else it is inconclusive."""
    def check(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
        if "n_clean" not in s or alpha not in set(s["alpha"]):
            return None
        points = critical_points(s, target)
        if alpha not in points.index:
            return None
        n, censored = points.loc[alpha, "n_crit"], points.loc[alpha, "censored"]
        if censored == "below":
            return (f"≤ {n:,.0f} clean labels ({target:.0%} met already at the smallest size measured)",
                    False if n / paper_n < band.low else None)
        if censored == "above":
            return (f"> {n:,.0f} clean labels ({target:.0%} not reached at α={alpha:g}, largest n_clean {n:,.0f})",
                    False if n / paper_n > band.high else None)
        return f"{n:,.0f} clean labels", band.holds(n / paper_n)
    return Claim("fig8", f"α = {alpha:g} needs about {paper_n:,} clean labels for {target:.0%} ({{}})", check,
                 Band(0.5, 2, "x"))


def growth(s: pd.DataFrame) -> tuple[dict[float, tuple[float, int]], int]:
    """Figure 9's growth law per target: the slope p of log n_crit = c + p·log α (np.polyfit, degree 1,
    so with an intercept c) over the uncensored critical counts at α > 0, and how many points it used;
    only targets with at least 2 such points. Also the number of censored points left out."""
    fits, censored = {}, 0
    for target, exact, n_censored in uncensored(s):
        censored += n_censored
        if len(exact) >= 2:
            slope = np.polyfit(np.log(exact.index.to_numpy(float)), np.log(exact["n_crit"].to_numpy(float)), 1)[0]
            fits[target] = (float(slope), len(exact))
    return fits, censored


def uncensored(s: pd.DataFrame) -> list[tuple[float, pd.DataFrame, int]]:
    """Per target: its uncensored critical counts at α > 0, and how many were censored."""
    out = []
    for target in TARGETS:
        points = critical_points(s, target)
        points = points[points.index > 0]
        out.append((target, points[points["censored"] == ""], int((points["censored"] != "").sum())))
    return out


def pooled_slope(s: pd.DataFrame) -> tuple[float, float, float, int] | None:
    """One growth exponent p for all targets: log n_crit = c_target + p·log α by least squares (an intercept
    per target, so nothing assumes zero clean labels at α = 0), with its 95% Student-t interval.
    (p, low, high, points); None with fewer points than parameters + 1."""
    parts = [(i, exact) for i, (_, exact, _) in enumerate(uncensored(s)) if len(exact)]
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
    growth well below linear); censored critical counts are left out of the fit, never clamped into it."""
    if "n_clean" not in s or not (s["alpha"] > 0).any():
        return None
    fits, censored = growth(s)
    left_out = f"; {censored} censored point{'s' * (censored != 1)} left out"
    fit = pooled_slope(s)
    if fit is None:
        return f"too few uncensored critical counts at α > 0 to fit the growth{left_out}", None
    p, low, high, points = fit
    each = ", ".join(f"{100 * target:.0f}%: {q:.2f} ({k} α)" for target, (q, k) in fits.items())
    return (f"exponent of n_crit in α: {p:.2f} (95% interval {low:.2f} to {high:.2f}, {points} points) "
            f"[per target {each}]{left_out}", bool(high >= 1 - SLOPE_PRECISION and band.holds(low)))


def larger_batch_better(s: pd.DataFrame, t: pd.DataFrame, band: None) -> Measured:
    if "loss" not in s or "batch_size" not in s:
        return None
    noisy = s[(s["loss"] == "ce") & (s["alpha"] == s["alpha"].max())]
    by = noisy.groupby("batch_size")["test_acc"].mean()
    if len(by) < 2:
        return None
    rho = pd.Series(by.index).rank().corr(pd.Series(by.values).rank())  # Spearman: Pearson on ranks
    return f"α={noisy['alpha'].max():g}: " + ", ".join(f"batch {b}: {pct(a)}" for b, a in by.items()), bool(rho > 0)


def h_alpha_flat(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    if "loss" not in s:
        return None
    h = s[s["loss"] == "h_alpha"].groupby("alpha")["test_acc"].mean()
    if len(h) < 2:
        return None
    return f"H_α accuracy range over α: {100 * (h.max() - h.min()):.1f} points", band.holds(h.max() - h.min())


def optimal_lr_falls(s: pd.DataFrame, t: pd.DataFrame, band: None) -> Measured:
    ok = t[t["status"] == "ok"]
    if ok["lr"].nunique() < 2 or ok["alpha"].nunique() < 2:
        return None
    key = s["selected_on"].iloc[0].split()[0] if "selected_on" in s and len(s) else "test_acc"  # the selection split
    best = ok.groupby(["alpha", "lr"])[key].mean().groupby(level="alpha").idxmax().map(lambda k: k[1])
    return "best lr by α: " + ", ".join(f"{a:g}→{lr:g}" for a, lr in best.items()), bool(best.iloc[-1] < best.iloc[0])


def per_image_hurts_more(s: pd.DataFrame, t: pd.DataFrame, band: Band) -> Measured:
    """exp=human_noise: accuracy with the annotators' class-conditional matrix minus accuracy with their own
    per-image labels, paired at each (architecture, α > 0) both kinds ran at, with a 95% Student-t interval
    over those pairs: held when the interval lies above the band's floor, contradicted when it lies at or
    below it, inconclusive when it straddles it (or one pair gives no interval)."""
    table = noise_kind(s)
    noisy = table[(table["alpha"] > 0) & table["kind"].isin(["matrix", "labels"])]
    by = noisy.pivot_table(index=["arch", "alpha"], columns="kind", values="test_acc").dropna()
    if not {"matrix", "labels"} <= set(by.columns) or by.empty:
        return None
    gaps = by["matrix"] - by["labels"]
    half = t975(len(gaps) - 1) * gaps.std(ddof=1) / math.sqrt(len(gaps)) if len(gaps) > 1 else math.nan
    low, high = gaps.mean() - half, gaps.mean() + half
    each = ", ".join(f"{arch} α={a:g}: {pct(r['labels'])} vs {pct(r['matrix'])}" for (arch, a), r in by.iterrows())
    interval = f"95% CI {100 * low:+.1f} to {100 * high:+.1f}" if not math.isnan(half) else "one pair: no interval"
    held = None if math.isnan(half) or (low <= band.low < high) else bool(low > band.low)
    return (f"matrix − per-image: {100 * gaps.mean():+.1f} points over {len(gaps)} (arch, α) pairs, {interval} "
            f"(per-image vs matrix: {each})"), held


CLAIMS = [
    Claim("fig1", "MNIST: ConvNet {} at α = 100",
          lambda s, t, band: one(at(s, arch=["conv2", "conv4", "conv6"], alpha=100), band.holds), Band(0.9, unit="%", strict=True)),
    Claim("fig1", "MNIST: perceptron ≈ 40% at α = 100 ({})",
          lambda s, t, band: one(at(s, arch="perceptron", alpha=100), band.holds), Band(0.3, 0.5, "%")),
    Claim("fig1", "MNIST: larger architectures are more robust (ConvNet ≥ MLP ≥ perceptron at the largest α)", architectures_ordered),
    Claim("fig2", "CIFAR-10: ResNet {} at α = 10",
          lambda s, t, band: one(at(s, arch=["resnet18", "resnet101"], alpha=10), band.holds), Band(0.85, unit="%")),
    Claim("fig3", "ImageNet: ResNet-18 {} top-5 at α = 5",
          lambda s, t, band: one(at(s, "test_top5", arch="resnet18", alpha=5), band.holds), Band(0.7, unit="%")),
    Claim("fig5", "Structured noise performs like uniform noise except δ ≈ 1 (drop {} for δ < 0.9)", structured_like_uniform,
          Band(high=0.05, unit="points")),
    Claim("fig6", "CIFAR-100 noise costs about half the drop of CIFAR-10 noise (ratio {})", cifar100_half_drop, Band(0.25, 0.75)),
    Claim("fig6", "White-noise examples do not appreciably lower accuracy (drop {})", white_no_drop, Band(high=0.03, unit="points")),
    Claim("fig7", "Novel vs repeated noisy images: essentially no difference ({})", novel_like_repeated,
          Band(high=0.02, unit="points")),
    threshold(10, 2_000),
    threshold(50, 10_000),
    Claim("fig9", "Clean labels needed grow slightly faster than linearly in α (exponent's 95% interval "
                  "reaching 1, lower end {})", superlinear, Band(0.85)),
    Claim("fig11", "Larger batches are more robust to noise (accuracy rises with batch size at the largest α)", larger_batch_better),
    Claim("fig11", "With H_α (infinite batch) accuracy does not fall as α rises (range {})", h_alpha_flat,
          Band(high=0.03, unit="points")),
    Claim("fig12", "The optimal learning rate falls as noise rises", optimal_lr_falls),
    Claim("human", "Beyond the paper (CIFAR-10N): at equal α, the annotators' own per-image labels hurt more than "
                   "their class-conditional matrix (accuracy gap {})", per_image_hurts_more,
          Band(0, unit="points", strict=True)),
]


HELD, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "held", "contradicted", "inconclusive", "not run"
VERDICTS = (HELD, CONTRADICTED, INCONCLUSIVE, NOT_RUN)


def verdict(held: bool | None) -> str:
    """The verdict word of a measured claim: held, contradicted (the value lies outside the band, or the
    claim's premise fails: the measured text gives the numbers), or inconclusive (the data bound the value
    only, e.g. a censored critical count, and the bound does not settle it). "not run" is for no data."""
    return INCONCLUSIVE if held is None else HELD if held else CONTRADICTED


def evaluate(run_dirs: list[Path], select: str | None = None) -> pd.DataFrame:
    """One row per claim, measured in the latest given run whose study drew its figure (each run's LR
    chosen on `select`, by default val where the run has a held-out split, else test)."""
    return evaluate_runs([(Path(run_dir), *read_run(run_dir, select)) for run_dir in run_dirs])


def evaluate_runs(runs: list[tuple[Path, dict, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """evaluate() over runs already read: (run_dir, study, trials, summary) each."""
    rows = []
    for claim in CLAIMS:
        row = {"figure": claim.figure, "claim": claim.claim, "measured": "", "scale": "", "run": "", "selected_on": "",
               "verdict": NOT_RUN, "figure_file": ""}
        for run_dir, study, trials, summary in runs:
            result = claim.check(summary, trials, claim.tolerance) if claim.figure in study["figures"] else None
            if result is not None:
                chosen = sorted(summary["selected_on"].dropna().unique()) if "selected_on" in summary else []
                row.update(measured=result[0], scale=f"exp={study['exp']} preset={study['preset']}",
                           run=run_dir.name, selected_on=", ".join(chosen), verdict=verdict(result[1]),
                           figure_file=str(Path(run_dir).resolve() / f"{claim.figure}.png"))
        rows.append(row)
    return pd.DataFrame(rows)


def link(row: object, out: Path) -> str:
    """The figure cell of claims.md: a link to the figure file, relative to claims.md, where it was measured."""
    if not row.figure_file:
        return row.figure
    return f"[{row.figure}]({os.path.relpath(row.figure_file, Path(out).resolve())})"


def write(claims: pd.DataFrame, out: Path) -> None:
    rundir.write_csv(claims, out / "claims.csv")
    header = ("| figure | claim | measured | scale | selected on | verdict |\n|---|---|---|---|---|---|\n")
    body = "".join(f"| {link(r, out)} | {r.claim} | {r.measured} | {r.scale} | {r.selected_on} | {r.verdict} |\n"
                   for r in claims.itertuples())
    note = ("Verdicts: held; contradicted (outside the band, or the claim's premise fails: numbers given); "
            "inconclusive (censored data bound the value only); not run (no data). `selected on`: the metric the "
            "learning rate of each cell was chosen on (test_acc: the paper's rule; val_acc: the held-out split).\n\n")
    with rundir.atomic_path(out / "claims.md") as tmp:
        tmp.write_text("# The paper's claims against this study\n\n" + note + header + body)


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
