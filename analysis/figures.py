"""One function per paper figure: each takes a run's summary (best LR per cell) and trials, writes figN.png
and returns the (closed) Figure. Where a point averages several replicates, its 95% confidence interval
(summary's <metric>_ci_low/_ci_high) is drawn as an error bar; with one replicate the CI is NaN and the
line is drawn as before, with no bars."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rundir import atomic_path
from analysis.summary import TARGETS, aggregate, critical_clean, critical_points, noise_kind

ALPHA = "Number of noisy labels per clean label (α)"
ARCH_LABELS = {"perceptron": "Perceptron", "mlp1": "MLP1", "mlp2": "MLP2", "mlp4": "MLP4", "conv2": "Conv2",
               "conv4": "Conv4", "conv6": "Conv6", "resnet18": "ResNet-18", "resnet101": "ResNet-101"}
Figure = Callable[[pd.DataFrame, pd.DataFrame, Path, str], plt.Figure]


RULES = {"test_acc": "LR chosen on test_acc (the paper's rule)",
         "val_acc": "LR chosen on held-out val_acc, test_acc shown"}


def caption(out: Path, scale: str, summary: pd.DataFrame | None, rule: str | None = None) -> str:
    """The line under a figure: the run dir's name, the scale, the selection rule and the replicates."""
    if rule is None:
        chosen = sorted(summary["selected_on"].dropna().unique()) if summary is not None and "selected_on" in summary else []
        rule = "; ".join(RULES.get(c, f"chosen on {c}") for c in chosen) or "no selection"
    n = summary["replicates"] if summary is not None and "replicates" in summary else pd.Series(dtype=float)
    reps = ("replicates: n/a" if n.empty else f"replicates: {int(n.min())}" if n.min() == n.max()
            else f"replicates: {int(n.min())}–{int(n.max())}")
    return f"run {Path(out).resolve().name} · {scale} · {rule} · {reps}"


def save(fig: plt.Figure, path: Path, text: str = "") -> plt.Figure:
    """Write the figure as PNG, atomically, with `text` as a caption line under it."""
    if text:
        fig.text(0.5, 0, text, ha="center", va="top", fontsize=7, color="0.3", transform=fig.transFigure)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)
    return fig


def by_x(table: pd.DataFrame, x: str, metric: str) -> pd.DataFrame:
    """Per x: the mean of `metric` over the rows (other cell keys averaged) and its CI bounds `low`, `high`.

    The CI half-width of a mean of k independent config means is √(Σ h_i²) / k (h_i: each row's
    half-width); NaN when any row has no CI (one replicate) or the table has no CI columns."""
    low, high = f"{metric}_ci_low", f"{metric}_ci_high"
    half = (table[high] - table[low]) / 2 if {low, high} <= set(table.columns) else np.nan
    rows = table.assign(_half2=half ** 2).groupby(x)
    out = pd.DataFrame({"mean": rows[metric].mean(),
                        "half": rows["_half2"].agg(lambda h: np.sqrt(h.sum(min_count=len(h)))) / rows.size()})
    out["low"], out["high"] = out["mean"] - out["half"], out["mean"] + out["half"]
    return out.sort_index().reset_index()


def curve(ax: plt.Axes, x: object, y: object, low: object, high: object, fmt: str = "-", **style: object) -> None:
    """One line through (x, y); with error bars from low to high where those are finite (replicates),
    a plain line where no point has a CI."""
    y, low, high = (np.asarray(v, float) for v in (y, low, high))
    if not (np.isfinite(low) | np.isfinite(high)).any():
        ax.plot(x, y, fmt, **style)
        return
    yerr = np.clip(np.vstack([y - low, high - y]), 0, None)  # NaN (no CI) draws no bar at that point
    ax.errorbar(x, y, yerr=yerr, fmt=fmt, capsize=3, elinewidth=1, **style)


def lines(table: pd.DataFrame, x: str, hue: str, title: str, *, xlabel: str = ALPHA,
          metric: str = "test_acc", logx: bool = False, label: Callable[[object], str] = str,
          chance: float | None = None) -> plt.Axes:
    """Accuracy (%) against x, one line per value of hue (the shape of most of the paper's figures)."""
    _, ax = plt.subplots(figsize=(6, 4.2))
    for key, rows in table.groupby(hue, sort=True):
        rows = by_x(rows, x, metric)  # other cell keys: averaged
        curve(ax, rows[x], 100 * rows["mean"], 100 * rows["low"], 100 * rows["high"], marker="o", label=label(key))
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls=":", lw=1, label="chance")
    ax.set(xlabel=xlabel, ylabel=("Top-5 accuracy (%)" if metric == "test_top5" else "Prediction accuracy (%)"),
           ylim=(0, 100), title=title)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def arch_label(arch: object) -> str:
    return ARCH_LABELS.get(str(arch), str(arch))


def fig1(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    return save(lines(summary, "alpha", "arch", f"MNIST, uniform label noise ({scale})",
                 label=arch_label, chance=0.1).figure, out / "fig1.png", caption(out, scale, summary))


def fig2(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    return save(lines(summary, "alpha", "arch", f"CIFAR-10, uniform label noise ({scale})",
                 label=arch_label, chance=0.1).figure, out / "fig2.png", caption(out, scale, summary))


def fig3(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    return save(lines(summary, "alpha", "arch", f"ImageNet, uniform label noise ({scale})",
                 metric="test_top5", label=arch_label).figure, out / "fig3.png", caption(out, scale, summary))


def fig5(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    alpha = ", ".join(f"{a:g}" for a in sorted(summary["alpha"].unique()))
    return save(lines(summary, "delta", "order", f"MNIST, structured noise, α = {alpha} ({scale})",
                 xlabel="Structure of the noise (δ)", label=lambda o: f"{o} order", chance=0.1).figure, out / "fig5.png", caption(out, scale, summary))


def fig6(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    names = {"same": "CIFAR-10 (same dataset)", "cifar100": "CIFAR-100", "white": "White noise"}
    return save(lines(summary, "alpha", "source", f"CIFAR-10, sources of noisy examples ({scale})",
                 label=lambda s: names.get(str(s), str(s)), chance=0.1).figure, out / "fig6.png", caption(out, scale, summary))


def fig7(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    names = {"same": "Repeated images", "novel": "Novel images"}
    return save(lines(summary, "alpha", "source", f"MNIST, repeated vs novel noisy images ({scale})",
                 label=lambda s: names.get(str(s), str(s)), chance=0.1).figure, out / "fig7.png", caption(out, scale, summary))


def fig8(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    return save(lines(summary, "n_clean", "alpha", f"MNIST, accuracy vs clean labels ({scale})",
                 xlabel="Number of clean training labels", logx=True, label=lambda a: f"α = {a:g}").figure, out / "fig8.png", caption(out, scale, summary))


def fig9(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    """Critical clean labels for a target accuracy, interpolated from the Figure 8 curves. Censored points
    (target met already at the smallest size measured, or never met at the largest) are open markers at
    that size with an arrow towards where the true count lies (down: ≤ it, up: > it), off the line."""
    _, ax = plt.subplots(figsize=(6, 4.2))
    any_censored = False
    for i, target in enumerate(TARGETS):
        color = f"C{i}"
        points = critical_points(summary, target)
        crit = points["n_crit"][points["censored"] == ""]
        # The CI's upper accuracy curve reaches the target first, its lower curve last; where the lower
        # curve never reaches it (no upper bound within the measured sizes) that point gets no bar.
        bounds = {}
        for end, metric in (("low", "test_acc_ci_high"), ("high", "test_acc_ci_low")):
            bounds[end] = (critical_clean(summary, target, metric).reindex(crit.index) if metric in summary
                           else pd.Series(np.nan, index=crit.index))
        label = f"{100 * target:.0f}% accuracy"
        if len(crit):
            curve(ax, crit.index, crit.values, bounds["low"], bounds["high"], marker="o", color=color, label=label)
        for alpha, row in points[points["censored"] != ""].iterrows():
            any_censored = True
            ax.plot([alpha], [row["n_crit"]], "o", mfc="none", mec=color, ms=7,
                    label=None if len(crit) else label)
            factor = 0.55 if row["censored"] == "below" else 1.8
            ax.annotate("", xy=(alpha, row["n_crit"] * factor), xytext=(alpha, row["n_crit"]),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1})
            ax.plot([alpha], [row["n_crit"] * factor], alpha=0)  # the arrow's tip inside the axes
    if any_censored:
        ax.plot([], [], "o", mfc="none", mec="grey", label="censored: ↓ met at smallest size, ↑ never met")
    ax.set(xlabel=ALPHA, ylabel="Critical number of clean labels", title=f"MNIST, clean data needed ({scale})")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(ax.figure, out / "fig9.png", caption(out, scale, summary))


def fig10(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    return save(lines(summary, "n_clean", "alpha", f"ImageNet, accuracy vs clean labels ({scale})",
                 xlabel="Number of clean training labels", logx=True, metric="test_top5", label=lambda a: f"α = {a:g}").figure, out / "fig10.png", caption(out, scale, summary))


def fig11(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    """Batch-size lines on noisy labels, plus the infinite-batch limit (H_alpha on clean labels)."""
    noisy = summary[summary["loss"] == "ce"]
    ax = lines(noisy, "alpha", "batch_size", f"MNIST, Conv2, batch size ({scale})",
               label=lambda b: f"batch {b}", chance=0.1)
    h = by_x(summary[summary["loss"] == "h_alpha"], "alpha", "test_acc")
    curve(ax, h["alpha"], 100 * h["mean"], 100 * h["low"], 100 * h["high"], "k--", marker="s", label="H_α (infinite batch)")
    ax.legend(fontsize=8)
    return save(ax.figure, out / "fig11.png", caption(out, scale, summary))


def fig12(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    """Every learning rate separately (no selection): the optimum moves down as alpha rises."""
    return save(lines(aggregate(trials), "alpha", "lr", f"CIFAR-10, Conv4, learning rate ({scale})",
                 label=lambda lr: f"lr {lr:g}", chance=0.1).figure, out / "fig12.png",
                caption(out, scale, aggregate(trials), "no selection: every lr drawn (test_acc)"))


HUMAN = {"uniform": "Uniform labels (the paper's noise)",  # one per analysis.summary.NOISE_KINDS
         "matrix": "Annotators' class-conditional matrix, a draw per copy", "matrix tied": "Annotators' matrix, one draw per image",
         "labels": "Annotators' own labels, one per copy", "labels tied": "Annotators' own labels, one per image"}


def human(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    """exp=human_noise, drawn like Figure 6: accuracy against alpha per kind of noisy label, a panel per
    architecture (CIFAR-10N's three annotators: their per-image labels vs their class-conditional matrix)."""
    table = noise_kind(summary)
    archs = sorted(table["arch"].unique())
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.2), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for kind, label in HUMAN.items():
            rows = table[(table["arch"] == arch) & (table["kind"] == kind)]
            if len(rows):
                rows = by_x(rows, "alpha", "test_acc")
                curve(ax, rows["alpha"], 100 * rows["mean"], 100 * rows["low"], 100 * rows["high"], marker="o", label=label)
        ax.axhline(10, color="grey", ls=":", lw=1, label="chance")
        ax.set(xlabel=ALPHA, ylabel="Prediction accuracy (%)", ylim=(0, 100),
               title=f"CIFAR-10, human label noise (CIFAR-10N), {arch_label(arch)} ({scale})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save(fig, out / "human.png", caption(out, scale, summary))


def confusion(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> plt.Figure:
    """exp=confusion: the summed test confusion matrix that orders structured noise (§3.2), row-normalised."""
    counts = np.load(out / "confusion.npy")
    rates = counts / counts.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(100 * rates, cmap="Blues")
    m = len(counts)
    for i in range(m):
        for j in range(m):
            if i != j and rates[i, j] >= 0.01:  # off-diagonal confusions of at least 1% are labelled
                ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=7)
    ax.set(xlabel="Predicted class", ylabel="True class", xticks=range(m), yticks=range(m),
           title=f"Test confusion, % of each true class ({scale})")
    fig.colorbar(image, ax=ax, label="%")
    return save(fig, out / "confusion.png", caption(out, scale, None, "no selection (summed test confusion)"))


FIGURES: dict[str, Figure] = {"confusion": confusion, "human": human, "fig1": fig1, "fig2": fig2, "fig3": fig3, "fig5": fig5, "fig6": fig6, "fig7": fig7,
                              "fig8": fig8, "fig9": fig9, "fig10": fig10, "fig11": fig11, "fig12": fig12}
