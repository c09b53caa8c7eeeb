"""One function per paper figure: each takes the summary (and trials) of a run and writes a PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt
import pandas as pd

from analysis.files import atomic_path

ARCH_LABELS = {"perceptron": "Perceptron", "mlp1": "MLP1", "mlp2": "MLP2", "mlp4": "MLP4",
               "conv2": "Conv2", "conv4": "Conv4", "conv6": "Conv6"}


def save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format="png")
    plt.close(fig)


def fig1(summary: pd.DataFrame, trials: pd.DataFrame, out: Path, scale: str) -> None:
    """Figure 1: test accuracy vs noisy labels per clean label, one line per architecture."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for arch, rows in summary.groupby("arch", sort=False):
        rows = rows.sort_values("alpha")
        ax.plot(rows["alpha"], 100 * rows["test_acc"], marker="o", label=ARCH_LABELS.get(arch, arch))
    ax.axhline(10, color="grey", ls=":", lw=1, label="chance")
    ax.set(xlabel="Number of noisy labels per clean label (α)", ylabel="Prediction accuracy (%)",
           ylim=(0, 100), title=f"MNIST, uniform label noise ({scale})")
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, out / "fig1.png")


FIGURES: dict[str, Callable[[pd.DataFrame, pd.DataFrame, Path, str], None]] = {"fig1": fig1}
