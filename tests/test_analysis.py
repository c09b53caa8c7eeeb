"""Analysis from result files alone: model selection, Figure 9 interpolation, every figure, claims."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rundir
from analysis import claims, clean_counts, effects
from analysis.describe import Run
from analysis.figures import FIGURES
from analysis.summary import critical_clean, critical_points, read_run, summarize


MNIST = Run.of({"preset": "test", "config": {"data": {"dataset": "mnist"}}})


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
    assert np.isnan(critical_clean(summary, 0.8)[10])  # met at the smallest size: censored, never clamped
    points = critical_points(summary, 0.8)
    assert points.loc[10].tolist() == [1000, "below"] and points.loc[50].tolist() == [10000, "above"]
    assert critical_points(summary, 0.85).loc[10, "censored"] == ""


SIZES = [50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000]
ALPHAS = [0, 1, 2, 5, 10, 20, 50]


def power_law(p: float, coef: float = 100.0, sizes: list[int] = SIZES) -> pd.DataFrame:
    """A summary whose critical count for 90% is exactly coef·α^p (for 80% and 85%, that over 10 and √10):
    accuracy is linear in log10 n, so the log-n interpolation is exact."""
    rows = []
    for alpha in ALPHAS:
        crit = coef * alpha ** p if alpha else coef / 4
        for n in sizes:
            acc = float(np.clip(0.9 + 0.1 * np.log10(n / crit), 0.1, 0.995))
            rows.append({"alpha": alpha, "arch": "conv4", "batch_size": 128, "n_clean": n, "lr": 0.1, "test_acc": acc})
    return pd.DataFrame(rows)


FIG9 = next(c for c in claims.CLAIMS if c.figure == "fig9")


@pytest.mark.parametrize("p,coef,verdict", [(1.3, 100, True),   # slightly faster than linear: held
                                            (1.0, 200, True),   # the paper's own 2,000 at α=10, 10,000 at α=50
                                            (0.8, 100, False)])
@pytest.mark.parametrize("sizes", [SIZES, SIZES[3:]], ids=["from50", "paper_grid_from500"])
def test_fig9_slope_recovers_the_power_law(p: float, coef: float, verdict: bool, sizes: list[int]) -> None:
    summary = power_law(p, coef, sizes)
    if coef == 200:  # the paper's two numbers lie on this law
        crit = critical_clean(summary, 0.9)
        assert crit[10] == pytest.approx(2000) and crit[50] == pytest.approx(10000)
    text, held = FIG9.check(summary, summary, FIG9.tolerance)
    fits, censored = clean_counts.growth(summary)
    assert fits and all(slope == pytest.approx(p, abs=1e-6) for slope, _ in fits.values())
    assert censored > 0 and "censored" in text and f"{p:.2f}" in text
    assert held is verdict
    p_hat, low, high, _ = clean_counts.pooled_slope(summary)
    assert p_hat == pytest.approx(p, abs=1e-6) and low <= p_hat <= high and f"{p:.2f} (95% interval" in text
    assert "lower end ≥ 0.85" in FIG9.claim


def test_fig9_noisy_growth_is_inconclusive_only_when_the_interval_is_wide() -> None:
    """Scatter around p = 1.3: the interval widens with the noise; the verdict follows the interval."""
    rng = np.random.default_rng(0)
    summary = power_law(1.3, 100)
    noisy = summary.assign(test_acc=np.clip(summary["test_acc"] + rng.normal(0, 0.01, len(summary)), 0.1, 0.995))
    p_hat, low, high, _ = clean_counts.pooled_slope(noisy)
    assert low < p_hat < high and high - low > 0.01 and abs(p_hat - 1.3) < 0.3


def test_fig9_verdict_words_and_censored_markers(tmp_path: Path) -> None:
    summary = power_law(0.8, 100)
    trials = summary.assign(seed=0, trial_id=range(len(summary)), status="ok", epochs=1, best_test_acc=summary["test_acc"],
                            test_top5=1.0, best_test_top5=1.0, train_loss=1.0, images_per_s=1.0, node_id="n")
    rundir.write_csv(trials, tmp_path / rundir.TRIALS)
    rundir.write_json({"exp": "dataset_size", "preset": "paper", "figures": ["fig8", "fig9"]}, tmp_path / rundir.STUDY)
    table = claims.evaluate([tmp_path]).set_index("figure")
    assert table.loc["fig9", "verdict"] == "contradicted" and "0.80" in table.loc["fig9", "measured"]
    fig = FIGURES["fig9"](summarize(trials), trials, tmp_path, MNIST)
    hollow = [l for l in fig.axes[0].get_lines() if l.get_markerfacecolor() == "none" and len(l.get_xdata())]
    assert len(hollow) == sum(int((critical_points(summary, t)["censored"] != "").sum()) for t in (0.8, 0.85, 0.9))
    assert fig.axes[0].texts or any(type(c).__name__ == "Annotation" for c in fig.axes[0].get_children())


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
    FIGURES[figure](summarize(trials), trials, tmp_path, MNIST)
    png = tmp_path / f"{figure}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == [png.name]  # nothing half-written left beside it


def test_confusion_figure_from_the_saved_matrix(tmp_path: Path) -> None:
    counts = np.diag(np.full(10, 90)) + np.random.default_rng(0).integers(0, 5, (10, 10))
    np.save(tmp_path / "confusion.npy", counts)
    FIGURES["confusion"](pd.DataFrame(), pd.DataFrame(), tmp_path, MNIST)
    assert (tmp_path / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_claims_verdicts_from_a_run_dir(tmp_path: Path) -> None:
    trials = trials_frame(alpha=[0, 100], arch=["perceptron", "mlp1", "conv4"])
    trials.loc[trials["arch"] == "perceptron", "test_acc"] = [0.9, 0.4]
    rundir.write_csv(trials, tmp_path / rundir.TRIALS)
    rundir.write_json({"exp": "uniform_mnist", "preset": "paper", "figures": ["fig1"]}, tmp_path / rundir.STUDY)
    table = claims.evaluate([tmp_path]).set_index("claim")
    assert table.loc["MNIST: ConvNet > 90% at α = 100", "verdict"] == "contradicted"  # 0.95 - 0.4 = 55%
    assert table.loc["MNIST: perceptron ≈ 40% at α = 100 (30–50%)", "verdict"] == "held"
    assert (table[table["figure"] != "fig1"]["verdict"] == "not run").all()
    claims.write(claims.evaluate([tmp_path]), tmp_path)
    assert "| [fig1](fig1.png) | MNIST: perceptron" in (tmp_path / "claims.md").read_text()


def test_a_failed_premise_is_contradicted_with_the_numbers_and_only_no_data_is_not_run() -> None:
    summary = pd.DataFrame({"alpha": [0, 10, 10, 10], "source": ["same", "same", "cifar100", "white"],
                            "test_acc": [0.80, 0.85, 0.78, 0.80]})  # CIFAR-10 noise: a gain beyond the noise floor
    claim = next(c for c in claims.CLAIMS if c.check is effects.cifar100_half_drop)
    text, held = claim.check(summary, summary, claim.tolerance)
    assert held is False and claims.verdict(held) == "contradicted"
    assert "no drop" in text and "-5.0 points" in text and "2.0 points" in text
    assert claim.check(summary[summary["source"] != "cifar100"], summary, claim.tolerance) is None  # no data
    assert claims.verdict(None) == "inconclusive" and claims.verdict(True) == "held"


def test_fig10_draws_the_full_set_at_its_real_size(tmp_path: Path) -> None:
    trials = trials_frame(alpha=[0, 5], n_clean=[100000, 400000, 1281167], arch=["resnet18"])
    trials["n_clean"] = trials["n_clean"].astype(object).where(trials["n_clean"] < 1281167, None)  # null: full set
    rundir.write_csv(trials, tmp_path / rundir.TRIALS)
    rundir.write_json({"exp": "dataset_size_imagenet", "preset": "paper", "figures": ["fig10"],
                       "config": {"data": {"dataset": "imagenet", "n_clean": None}}}, tmp_path / rundir.STUDY)
    assert pd.read_csv(tmp_path / rundir.TRIALS)["n_clean"].isna().sum() == 2
    study, read, summary = read_run(tmp_path)
    assert sorted(summary["n_clean"].unique()) == [100000, 400000, 1281167]
    fig = FIGURES["fig10"](summary, read, tmp_path, Run.of(study))
    assert all(1281167 in line.get_xdata() for line in fig.axes[0].get_lines() if len(line.get_xdata()) == 3)
    assert sum(len(line.get_xdata()) == 3 for line in fig.axes[0].get_lines()) == 2


def test_full_size_less_the_held_out_rows_and_never_for_a_stand_in() -> None:
    from analysis.summary import full_size

    trials = pd.DataFrame({"n_clean": [1000.0, None], "test_acc": [0.5, 0.9]})
    study = {"config": {"data": {"dataset": "imagenet", "n_clean": None, "n_val": 10000}}}
    assert full_size(trials, study)["n_clean"].tolist() == [1000, 1281167 - 10000]
    study["config"]["data"]["n_val"] = None  # null: no held-out split
    assert full_size(trials, study)["n_clean"].tolist() == [1000, 1281167]
    stand_in = {"config": {"data": {"dataset": "imagenet", "stand_in": True}}}  # generated data: no real size
    assert full_size(trials, stand_in)["n_clean"].isna().tolist() == [False, True]
    assert full_size(trials, {"config": {"data": {"dataset": "svhn"}}})["n_clean"].isna().tolist() == [False, True]
