"""Analysis from result files alone: model selection, Figure 9 interpolation, every figure, claims."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rundir
from analysis import claims
from analysis.figures import FIGURES
from analysis.summary import critical_clean, summarize


def trials_frame(**grid: list) -> pd.DataFrame:
    """A trials.csv-shaped table over a grid, with an accuracy that depends on the grid values."""
    rows = []
    for values in itertools.product(*grid.values()):
        row = dict(zip(grid, values))
        row = {"alpha": 0, "arch": "conv4", "lr": 0.1, "batch_size": 128, "seed": 0, **row}
        acc = 0.95 - 0.004 * row["alpha"] * (0.1 / row["lr"]) ** 0.1
        if "n_clean" in row:
            acc = min(0.99, 0.5 + 0.1 * np.log10(row["n_clean"]) - 0.003 * row["alpha"])
        rows.append({**row, "trial_id": len(rows), "status": "ok", "epochs": 1, "test_acc": acc,
                     "best_test_acc": acc, "test_top5": min(1, acc + 0.05), "best_test_top5": min(1, acc + 0.05),
                     "train_loss": 1.0, "images_per_s": 100.0, "node_id": "n"})
    return pd.DataFrame(rows)


def test_summary_picks_best_lr_per_cell() -> None:
    trials = trials_frame(alpha=[10, 50], lr=[0.05, 0.5], arch=["mlp1", "conv4"])
    summary = summarize(trials)
    assert len(summary) == 4 and set(summary["lr"]) == {0.5}
    assert list(summary.columns[:3]) == ["alpha", "arch", "batch_size"]


def test_critical_clean_interpolates_in_log_n() -> None:
    summary = pd.DataFrame({"alpha": [10] * 3 + [50] * 2, "n_clean": [1000, 10000, 100000, 1000, 10000],
                            "test_acc": [0.8, 0.9, 0.95, 0.5, 0.6]})
    crit = critical_clean(summary, 0.85)
    assert crit[10] == pytest.approx(10 ** 3.5)  # halfway between 1e3 and 1e4 in log n
    assert np.isnan(crit[50])
    assert critical_clean(summary, 0.8)[10] == pytest.approx(1000)


@pytest.mark.parametrize("figure,grid", [
    ("fig1", {"alpha": [0, 10, 100], "arch": ["perceptron", "conv4"], "lr": [0.1, 0.5]}),
    ("fig3", {"alpha": [0, 5], "arch": ["resnet18"]}),
    ("fig5", {"alpha": [20], "delta": [0, 0.5, 1.0], "order": ["confusing", "random"]}),
    ("fig6", {"alpha": [0, 10], "source": ["same", "cifar100", "white"]}),
    ("fig7", {"alpha": [0, 10], "source": ["same", "novel"]}),
    ("fig8", {"alpha": [10, 50], "n_clean": [1000, 10000, 60000]}),
    ("fig9", {"alpha": [5, 10, 50], "n_clean": [1000, 10000, 60000]}),
    ("fig11", {"alpha": [0, 50], "batch_size": [32, 256], "loss": ["ce", "h_alpha"]}),
    ("fig12", {"alpha": [0, 10], "lr": [0.01, 0.1, 1.0]}),
])
def test_every_figure_draws_a_png(figure: str, grid: dict, tmp_path: Path) -> None:
    trials = trials_frame(**grid)
    FIGURES[figure](summarize(trials), trials, tmp_path, "test")
    png = tmp_path / f"{figure}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == [png.name]  # nothing half-written left beside it


def test_confusion_figure_from_the_saved_matrix(tmp_path: Path) -> None:
    counts = np.diag(np.full(10, 90)) + np.random.default_rng(0).integers(0, 5, (10, 10))
    np.save(tmp_path / "confusion.npy", counts)
    FIGURES["confusion"](pd.DataFrame(), pd.DataFrame(), tmp_path, "test")
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_claims_verdicts_from_a_run_dir(tmp_path: Path) -> None:
    trials = trials_frame(alpha=[0, 100], arch=["perceptron", "mlp1", "conv4"])
    trials.loc[trials["arch"] == "perceptron", "test_acc"] = [0.9, 0.4]
    rundir.write_csv(trials, tmp_path / rundir.TRIALS)
    rundir.write_json({"exp": "uniform_mnist", "preset": "paper", "figures": ["fig1"]}, tmp_path / rundir.STUDY)
    table = claims.evaluate([tmp_path]).set_index("claim")
    assert table.loc["MNIST: ConvNet > 90% at α = 100", "verdict"] == "not held"  # 0.95 - 0.4 = 55%
    assert table.loc["MNIST: perceptron ≈ 40% at α = 100 (30–50%)", "verdict"] == "held"
    assert (table[table["figure"] != "fig1"]["verdict"] == "not run").all()
    claims.write(claims.evaluate([tmp_path]), tmp_path)
    assert "| fig1 | MNIST: perceptron" in (tmp_path / "claims.md").read_text()
