"""Replicates (rows differing only in train.seed and noise.seed): summary statistics, selection on the
mean, and the confidence intervals every figure draws."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from analysis.describe import Run
from analysis.figures import FIGURES
from analysis.summary import summarize, t975
from tests.test_analysis import trials_frame

RUN = Run.of({"preset": "test", "config": {"data": {"dataset": "mnist"}}})

T_2 = 4.303  # t_{0.975, 2}: 3 replicates

# (alpha, lr) -> test_acc of replicates 0, 1, 2. In each cell the single best row has the LR whose
# replicate mean is worse, so picking the argmax over rows would choose the wrong LR.
ACC = {(0, 0.1): [0.80, 0.82, 0.84], (0, 1.0): [0.70, 0.75, 0.90],      # means 0.82 vs 0.7833; best row 0.90 at lr 1
       (100, 0.1): [0.30, 0.35, 0.55], (100, 1.0): [0.45, 0.46, 0.50]}  # means 0.40 vs 0.47; best row 0.55 at lr 0.1


def replicate_rows(acc: dict[tuple[float, float], list[float]]) -> pd.DataFrame:
    rows = []
    for (alpha, lr), values in acc.items():
        for r, a in enumerate(values):
            rows.append({"alpha": alpha, "arch": "conv4", "lr": lr, "batch_size": 128, "seed": r, "noise_seed": 10 + r,
                         "trial_id": f"t{len(rows)}", "group": f"g{alpha}", "status": "ok", "epochs": 2, "test_acc": a,
                         "best_test_acc": a + 0.01, "test_top5": a + 0.05, "best_test_top5": a + 0.05,
                         "train_loss": 1.0, "images_per_s": 100.0, "node_id": "n"})
    return pd.DataFrame(rows)


# Expected by hand for the chosen configs: (alpha) -> (lr, mean, sample std)
EXPECTED = {0: (0.1, 0.82, math.sqrt((0.02 ** 2 + 0 + 0.02 ** 2) / 2)),
            100: (1.0, 0.47, math.sqrt((0.02 ** 2 + 0.01 ** 2 + 0.03 ** 2) / 2))}


def test_t_quantile_table() -> None:
    assert t975(2) == T_2 and t975(1) == 12.706 and t975(30) == 2.042
    assert t975(35) == 2.042  # between tabulated dfs: the smaller df (wider interval)
    assert t975(1000) == 1.96 and math.isnan(t975(0))


def test_best_lr_is_chosen_on_the_replicate_mean_with_its_ci() -> None:
    trials = replicate_rows(ACC)
    rows_argmax = trials.loc[trials.groupby("alpha")["test_acc"].idxmax()].set_index("alpha")["lr"]
    assert rows_argmax.to_dict() == {0: 1.0, 100: 0.1}  # the trap: the best single rows
    summary = summarize(trials).set_index("alpha")
    assert len(summary) == 2 and "seed" not in summary and "noise_seed" not in summary
    for alpha, (lr, mean, std) in EXPECTED.items():
        row = summary.loc[alpha]
        half = T_2 * std / math.sqrt(3)
        assert row["lr"] == lr
        assert row["replicates"] == 3
        assert row["test_acc"] == pytest.approx(mean)
        assert row["test_acc_std"] == pytest.approx(std)
        assert row["test_acc_ci_low"] == pytest.approx(mean - half)
        assert row["test_acc_ci_high"] == pytest.approx(mean + half)
        assert row["best_test_acc"] == pytest.approx(mean + 0.01)
        assert row["test_top5"] == pytest.approx(mean + 0.05)
        assert row["test_top5_ci_low"] == pytest.approx(mean + 0.05 - half)
        assert row["test_top5_ci_high"] == pytest.approx(mean + 0.05 + half)
    assert summary.loc[0, "test_acc_ci_low"] == pytest.approx(0.770313, abs=1e-6)  # 0.82 - 4.303 * 0.02 / √3


def test_failed_replicates_are_left_out_and_one_replicate_has_no_ci() -> None:
    trials = replicate_rows({(0, 0.1): [0.80, 0.82, 0.84], (10, 0.1): [0.6, 0.9, 0.7]})
    trials.loc[(trials["alpha"] == 10) & (trials["seed"] > 0), "status"] = "error"
    summary = summarize(trials).set_index("alpha")
    assert summary.loc[0, "replicates"] == 3 and summary.loc[10, "replicates"] == 1
    assert summary.loc[10, "test_acc"] == pytest.approx(0.6)
    assert summary.loc[10, ["test_acc_std", "test_acc_ci_low", "test_acc_ci_high"]].isna().all()


def errorbars(fig) -> list[ErrorbarContainer]:
    return [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_fig1_draws_the_ci_as_error_bars(tmp_path: Path) -> None:
    trials = replicate_rows(ACC)
    fig = FIGURES["fig1"](summarize(trials), trials, tmp_path, RUN)
    (bars,) = errorbars(fig)  # one line (one arch), with bars
    _, _, (segments,) = bars.lines
    drawn = {float(x0): (float(lo), float(hi)) for (x0, lo), (_, hi) in segments.get_segments()}
    for alpha, (_, mean, std) in EXPECTED.items():
        half = T_2 * std / math.sqrt(3)
        assert drawn[alpha] == pytest.approx((100 * (mean - half), 100 * (mean + half)))


def with_replicates(trials: pd.DataFrame, n: int) -> pd.DataFrame:
    shifts = [-0.01, 0.0, 0.02][:n]
    copies = [trials.assign(seed=r, noise_seed=10 + r, test_acc=trials["test_acc"] + d,
                            test_top5=(trials["test_top5"] + d).clip(upper=1.0)) for r, d in enumerate(shifts)]
    return pd.concat(copies, ignore_index=True)


@pytest.mark.parametrize("figure,grid", [
    ("fig1", {"alpha": [0, 10, 100], "arch": ["perceptron", "conv4"], "lr": [0.1, 0.5]}),
    ("fig3", {"alpha": [0, 5], "arch": ["resnet18"]}),
    ("fig5", {"alpha": [20], "delta": [0, 0.5, 1.0], "order": ["confusing", "random"]}),
    ("fig6", {"alpha": [0, 10], "source": ["same", "cifar100", "white"]}),
    ("fig7", {"alpha": [0, 10], "source": ["same", "novel"]}),
    ("fig8", {"alpha": [10, 50], "n_clean": [1000, 10000, 60000]}),
    ("fig9", {"alpha": [5, 10, 50], "n_clean": [1000, 10000, 60000]}),
    ("fig10", {"alpha": [0, 5], "n_clean": [1000, 10000, 60000]}),
    ("fig11", {"alpha": [0, 50], "batch_size": [32, 256], "loss": ["ce", "h_alpha"]}),
    ("fig12", {"alpha": [0, 10], "lr": [0.01, 0.1, 1.0]}),
])
def test_every_figure_draws_cis_only_with_replicates(figure: str, grid: dict, tmp_path: Path) -> None:
    base = trials_frame(**grid)
    one = with_replicates(base, 1)
    three = with_replicates(base, 3)
    assert not errorbars(FIGURES[figure](summarize(one), one, tmp_path, RUN))
    fig = FIGURES[figure](summarize(three), three, tmp_path, RUN)
    bars = errorbars(fig)
    drawn = [seg for c in bars for seg in c.lines[2][0].get_segments() if len(seg)]  # a NaN bound draws no bar
    assert drawn and all(np.isfinite(seg).all() and seg[1][1] > seg[0][1] for seg in drawn)
    assert (tmp_path / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
