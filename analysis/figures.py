"""One function per paper figure: each takes a run's summary (best LR per cell) and trials, writes figN.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rundir import atomic_path
from analysis.summary import TARGETS, critical_clean

ALPHA = "Number of noisy labels per clean label (α)"
ARCH_LABELS = {"perceptron": "Perceptron", "mlp1": "MLP1", "mlp2": "MLP2", "mlp4": "MLP4", "conv2": "Conv2",
               "conv4": "Conv4", "conv6": "Conv6", "resnet18": "ResNet-18", "resnet101": "ResNet-101"}
Figure = Callable[[pd.DataFrame, pd.DataFrame, Path, str], None]


def save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


def lines(table: pd.DataFrame, x: str, hue: str, title: str, *, xlabel: str = ALPHA,
          metric: str = "test_acc", logx: bool = False, label: Callable[[object], str] = str,
          chance: float | None = None) -> plt.Axes:
    """Accuracy (%) against x, one line per value of hue (the shape of most of the paper's figures)."""
    _, ax = plt.subplots(figsize=(6, 4.2))
    for key, rows in table.groupby(hue, sort=True):
        rows = rows.groupby(x, as_index=False)[metric].mean().sort_values(x)  # other cell keys: averaged
        ax.plot(rows[x], 100 * rows[metric], marker="o", label=label(key))
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


def fig1(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    save(lines(summary, "alpha", "arch", f"MNIST, uniform label noise ({scale})",
          label=arch_label, chance=0.1).figure, out / "fig1.png")


def fig2(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    save(lines(summary, "alpha", "arch", f"CIFAR-10, uniform label noise ({scale})",
          label=arch_label, chance=0.1).figure, out / "fig2.png")


def fig3(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    save(lines(summary, "alpha", "arch", f"ImageNet, uniform label noise ({scale})",
          metric="test_top5", label=arch_label).figure, out / "fig3.png")


def fig5(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    alpha = ", ".join(f"{a:g}" for a in sorted(summary["alpha"].unique()))
    save(lines(summary, "delta", "order", f"MNIST, structured noise, α = {alpha} ({scale})",
          xlabel="Structure of the noise (δ)", label=lambda o: f"{o} order", chance=0.1).figure, out / "fig5.png")


def fig6(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    names = {"same": "CIFAR-10 (same dataset)", "cifar100": "CIFAR-100", "white": "White noise"}
    save(lines(summary, "alpha", "source", f"CIFAR-10, sources of noisy examples ({scale})",
          label=lambda s: names.get(str(s), str(s)), chance=0.1).figure, out / "fig6.png")


def fig7(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    names = {"same": "Repeated images", "novel": "Novel images"}
    save(lines(summary, "alpha", "source", f"MNIST, repeated vs novel noisy images ({scale})",
          label=lambda s: names.get(str(s), str(s)), chance=0.1).figure, out / "fig7.png")


def fig8(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    save(lines(summary, "n_clean", "alpha", f"MNIST, accuracy vs clean labels ({scale})",
          xlabel="Number of clean training labels", logx=True, label=lambda a: f"α = {a:g}").figure, out / "fig8.png")


def fig9(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    """Critical clean labels for a target accuracy, interpolated from the Figure 8 curves."""
    _, ax = plt.subplots(figsize=(6, 4.2))
    for target in TARGETS:
        crit = critical_clean(summary, target).dropna()
        ax.plot(crit.index, crit.values, marker="o", label=f"{100 * target:.0f}% accuracy")
    ax.set(xlabel=ALPHA, ylabel="Critical number of clean labels", title=f"MNIST, clean data needed ({scale})")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(ax.figure, out / "fig9.png")


def fig10(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    save(lines(summary, "n_clean", "alpha", f"ImageNet, accuracy vs clean labels ({scale})",
          xlabel="Number of clean training labels", logx=True, metric="test_top5", label=lambda a: f"α = {a:g}").figure, out / "fig10.png")


def fig11(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    """Batch-size lines on noisy labels, plus the infinite-batch limit (H_alpha on clean labels)."""
    noisy = summary[summary["loss"] == "ce"]
    ax = lines(noisy, "alpha", "batch_size", f"MNIST, Conv2, batch size ({scale})",
               label=lambda b: f"batch {b}", chance=0.1)
    h = summary[summary["loss"] == "h_alpha"].groupby("alpha", as_index=False)["test_acc"].mean()
    ax.plot(h["alpha"], 100 * h["test_acc"], "k--", marker="s", label="H_α (infinite batch)")
    ax.legend(fontsize=8)
    save(ax.figure, out / "fig11.png")


def fig12(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    """Every learning rate separately (no selection): the optimum moves down as alpha rises."""
    ok = trials[trials["status"] == "ok"]
    save(lines(ok, "alpha", "lr", f"CIFAR-10, Conv4, learning rate ({scale})",
          label=lambda lr: f"lr {lr:g}", chance=0.1).figure, out / "fig12.png")


def confusion(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
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
    save(fig, out / "confusion.png")


FIGURES: dict[str, Figure] = {"confusion": confusion, "fig1": fig1, "fig2": fig2, "fig3": fig3, "fig5": fig5, "fig6": fig6, "fig7": fig7,
                              "fig8": fig8, "fig9": fig9, "fig10": fig10, "fig11": fig11, "fig12": fig12}
