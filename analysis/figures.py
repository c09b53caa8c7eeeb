"""One function per paper figure: each takes a run's summary (best LR per cell), its trials, its run dir and
what the run was (analysis.describe.Run), writes figN.png and returns the (closed) Figure. Titles, legends, the
chance line and the caption come from the run: its dataset and class count, its noisy labels and their source,
its scale, the split its learning rates were chosen on. Where a point averages several replicates, its 95%
confidence interval (summary's <metric>_ci_low/_ci_high) is drawn as an error bar; with one replicate the CI
is NaN and the line is drawn with no bars."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rundir import atomic_path
from analysis.describe import Run
from analysis.summary import TARGETS, aggregate, critical_clean, critical_points, noise_kind, NOISE_KINDS

ALPHA = "Number of noisy labels per clean label (α)"
ARCH_LABELS = {"perceptron": "Perceptron", "mlp1": "MLP1", "mlp2": "MLP2", "mlp4": "MLP4", "conv2": "Conv2",
               "conv4": "Conv4", "conv6": "Conv6", "resnet18": "ResNet-18", "resnet101": "ResNet-101"}
Figure = Callable[[pd.DataFrame, pd.DataFrame, Path, Run], plt.Figure]
TOP5 = "test_top5"


RULES = {"test_acc": "LR chosen on test_acc (the paper's rule)",
         "val_acc": "LR chosen on held-out val_acc, test_acc shown"}


def caption(out: Path, run: Run, summary: pd.DataFrame | None, rule: str | None = None) -> str:
    """The lines under a figure: the run dir's name and scale; the dataset with its classes and the noise drawn;
    the selection rule and the replicates."""
    if rule is None:
        chosen = sorted(summary["selected_on"].dropna().unique()) if summary is not None and "selected_on" in summary else []
        rule = "; ".join(RULES.get(c, f"chosen on {c}") for c in chosen) or "no selection"
    n = summary["replicates"] if summary is not None and "replicates" in summary else pd.Series(dtype=float)
    reps = ("replicates: n/a" if n.empty else f"replicates: {int(n.min())}" if n.min() == n.max()
            else f"replicates: {int(n.min())}–{int(n.max())}")
    rows = summary if summary is not None and len(summary) else None
    return (f"run {Path(out).resolve().name} · {run.scale} · {run.data} · {run.noise_text(rows)}\n"
            f"{rule} · {reps}")


def save(fig: plt.Figure, path: Path, text: str = "") -> plt.Figure:
    """Write the figure as PNG, atomically, with `text` as a caption under it."""
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


def measured_ticks(ax: plt.Axes, values: object) -> None:
    """x ticks at the values measured only (α = 0, 5, 20: no tick at 2.5); a label closer than 4% of the axis
    to the one before it is left blank (α = 0, 1, 2, 5 crowd one end of 0–100)."""
    values = sorted({float(v) for v in values if np.isfinite(v)})
    log = ax.get_xscale() == "log"
    where = np.log10(values) if log else np.asarray(values)
    span = (where[-1] - where[0]) if len(values) > 1 else 1.0
    labels, last = [], -np.inf
    for v, at in zip(values, where):
        shown = at - last >= 0.04 * span
        labels.append((f"{v:,.0f}" if v.is_integer() else f"{v:g}") if shown else "")
        last = at if shown else last
    ax.set_xticks(values, labels)
    ax.minorticks_off()


def finish(ax: plt.Axes, title: str, xlabel: str, ylabel: str = "Prediction accuracy (%)",
           percent: bool = True) -> None:
    """Labels (a percent axis from 0 to 100), title, grid, and the legend beside the axes, where it covers no line."""
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if percent:
        ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def chance(run: Run, metric: str) -> float | None:
    """A uniform guess's accuracy: 1/m top-1, 5/m top-5."""
    return run.chance * (5 if metric == TOP5 else 1) if run.chance else None


def lines(table: pd.DataFrame, x: str, hue: str, title: str, run: Run, *, xlabel: str = ALPHA,
          metric: str = "test_acc", logx: bool = False, label: Callable[[object], str] = str) -> plt.Axes:
    """Accuracy (%) against x, one line per value of hue (the shape of most of the paper's figures), with the
    run's chance level."""
    _, ax = plt.subplots(figsize=(6, 4.2))
    for key, rows in table.groupby(hue, sort=True):
        rows = by_x(rows, x, metric)  # other cell keys: averaged
        curve(ax, rows[x], 100 * rows["mean"], 100 * rows["low"], 100 * rows["high"], marker="o", label=label(key))
    level = chance(run, metric)
    if level is not None:
        ax.axhline(100 * level, color="grey", ls=":", lw=1, label=f"chance ({100 * level:.3g}%)")
    if logx:
        ax.set_xscale("log")
    measured_ticks(ax, table[x])
    finish(ax, title, xlabel, "Top-5 accuracy (%)" if metric == TOP5 else "Prediction accuracy (%)")
    return ax


def arch_label(arch: object) -> str:
    return ARCH_LABELS.get(str(arch), str(arch))


def archs(table: pd.DataFrame) -> str:
    return ", ".join(arch_label(a) for a in sorted(table["arch"].unique())) if "arch" in table else ""


def by_arch(summary: pd.DataFrame, name: str, out: Path, run: Run, metric: str = "test_acc") -> plt.Figure:
    """Figures 1-3: accuracy against α, a line per architecture, titled with the run's dataset and noise."""
    title = f"{run.dataset}, {run.noise_text(summary)} ({run.scale})"
    return save(lines(summary, "alpha", "arch", title, run, metric=metric, label=arch_label).figure,
                out / f"{name}.png", caption(out, run, summary))


def fig1(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    return by_arch(summary, "fig1", out, run)


def fig2(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    return by_arch(summary, "fig2", out, run)


def top5(run: Run) -> str:
    """Figures 3 and 10 draw top-5 accuracy, and top-1 where the run has 5 classes or fewer."""
    return TOP5 if run.has_top5 else "test_acc"


def fig3(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    return by_arch(summary, "fig3", out, run, top5(run))


def fig5(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    alpha = ", ".join(f"{a:g}" for a in sorted(summary["alpha"].unique()))
    source = run.source(summary)
    title = f"{run.dataset}, structured label noise, α = {alpha}{f', on {source}' if source else ''} ({run.scale})"
    return save(lines(summary, "delta", "order", title, run, xlabel="Structure of the noise (δ)",
                      label=lambda o: f"{o} order").figure, out / "fig5.png", caption(out, run, summary))


def fig6(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    names = {"same": f"{run.dataset} (same dataset)", "cifar100": "CIFAR-100", "white": "White noise",
             "novel": "Novel images"}
    title = f"{run.dataset}, sources of noisy examples, {run.labels(summary)} ({run.scale})"
    return save(lines(summary, "alpha", "source", title, run, label=lambda s: names.get(str(s), str(s))).figure,
                out / "fig6.png", caption(out, run, summary))


def fig7(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    names = {"same": "Repeated images", "novel": "Novel images"}
    title = f"{run.dataset}, repeated vs novel noisy images, {run.labels(summary)} ({run.scale})"
    return save(lines(summary, "alpha", "source", title, run, label=lambda s: names.get(str(s), str(s))).figure,
                out / "fig7.png", caption(out, run, summary))


def fig8(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    return save(lines(summary, "n_clean", "alpha", f"{run.dataset}, accuracy vs clean labels, {run.noise_text(summary)} "
                      f"({run.scale})", run, xlabel="Number of clean training labels", logx=True,
                      label=lambda a: f"α = {a:g}").figure, out / "fig8.png", caption(out, run, summary))


def fig9(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
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
        for k, (alpha, row) in enumerate(points[points["censored"] != ""].iterrows()):
            any_censored = True
            ax.plot([alpha], [row["n_crit"]], "o", mfc="none", mec=color, ms=7,
                    label=None if len(crit) or k else label)  # a target with no bracketed point: named once
            factor = 0.55 if row["censored"] == "below" else 1.8
            ax.annotate("", xy=(alpha, row["n_crit"] * factor), xytext=(alpha, row["n_crit"]),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1})
            ax.plot([alpha], [row["n_crit"] * factor], alpha=0)  # the arrow's tip inside the axes
    if any_censored:
        ax.plot([], [], "o", mfc="none", mec="grey", label="censored: ↓ met at smallest size, ↑ never met")
    ax.set_yscale("log")
    measured_ticks(ax, summary["alpha"])
    finish(ax, f"{run.dataset}, clean data needed, {run.noise_text(summary)} ({run.scale})", ALPHA,
           "Critical number of clean labels", percent=False)
    return save(ax.figure, out / "fig9.png", caption(out, run, summary))


def fig10(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    return save(lines(summary, "n_clean", "alpha", f"{run.dataset}, accuracy vs clean labels, {run.noise_text(summary)} "
                      f"({run.scale})", run, xlabel="Number of clean training labels", logx=True, metric=top5(run),
                      label=lambda a: f"α = {a:g}").figure, out / "fig10.png", caption(out, run, summary))


def fig11(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    """Batch-size lines on noisy labels, plus the infinite-batch limit (H_alpha on clean labels)."""
    noisy = summary[summary["loss"] == "ce"]
    ax = lines(noisy, "alpha", "batch_size", f"{run.dataset}, {archs(summary)}, batch size, {run.noise_text(noisy)} "
               f"({run.scale})", run, label=lambda b: f"batch {b}")
    h = by_x(summary[summary["loss"] == "h_alpha"], "alpha", "test_acc")
    curve(ax, h["alpha"], 100 * h["mean"], 100 * h["low"], 100 * h["high"], "k--", marker="s", label="H_α (infinite batch)")
    measured_ticks(ax, summary["alpha"])
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    return save(ax.figure, out / "fig11.png", caption(out, run, summary))


def fig12(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    """Every learning rate separately (no selection): the optimum moves down as alpha rises."""
    every = aggregate(trials)
    return save(lines(every, "alpha", "lr", f"{run.dataset}, {archs(every)}, learning rate, {run.noise_text(every)} "
                      f"({run.scale})", run, label=lambda lr: f"lr {lr:g}").figure, out / "fig12.png",
                caption(out, run, every, "no selection: every lr drawn (test_acc)"))


def human(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
    """exp=human_noise, drawn like Figure 6: accuracy against alpha per kind of noisy label (uniform, the
    annotators' class-conditional matrix drawn per copy or once per image, their own per-image labels; the
    legend names the annotator set), a panel per architecture."""
    table = noise_kind(summary)
    panels = sorted(table["arch"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, arch in zip(axes[0], panels):
        for kind in NOISE_KINDS:
            rows = table[(table["arch"] == arch) & (table["kind"] == kind)]
            noisy = rows[rows["alpha"] > 0]  # the alpha = 0 rows, shared by every kind, name none
            # a kind that this arch lacks holds only the shared clean copies: no line (uniform owns the clean rows)
            if len(noisy) or (len(rows) and kind == NOISE_KINDS[0]):
                points = by_x(rows, "alpha", "test_acc")
                curve(ax, points["alpha"], 100 * points["mean"], 100 * points["low"], 100 * points["high"], marker="o",
                      label=run.labels(noisy if len(noisy) else rows))
        if run.chance:
            ax.axhline(100 * run.chance, color="grey", ls=":", lw=1, label=f"chance ({100 * run.chance:.3g}%)")
        measured_ticks(ax, table["alpha"])
        finish(ax, f"{run.dataset}, human label noise, {arch_label(arch)} ({run.scale})", ALPHA)
    return save(fig, out / "human.png", caption(out, run, summary))


def confusion(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, run: Run) -> plt.Figure:
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
    ax.set(xlabel="Predicted class", ylabel="True class", xticks=range(m), yticks=range(m))
    ax.set_title(f"{run.dataset}: test confusion, % of each true class ({run.scale})", fontsize=10)
    fig.colorbar(image, ax=ax, label="%")
    return save(fig, out / "confusion.png", caption(out, run, None, "no selection (summed test confusion)"))


FIGURES: dict[str, Figure] = {"confusion": confusion, "human": human, "fig1": fig1, "fig2": fig2, "fig3": fig3, "fig5": fig5,
                              "fig6": fig6, "fig7": fig7, "fig8": fig8, "fig9": fig9, "fig10": fig10, "fig11": fig11,
                              "fig12": fig12}
