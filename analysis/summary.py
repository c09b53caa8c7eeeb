"""The paper's model selection (§3.4): for each cell of the study, the learning rate (or, after an Optuna
search, the searched keys) that gives the best final test accuracy (averaged over seeds first)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rundir

SEARCHED = ("lr",)  # chosen per cell unless study.json names its `searched` keys; other config columns define the cell
AVERAGED = ("seed",)  # config columns averaged over, never a cell key


def cell_columns(trials: pd.DataFrame, searched: Sequence[str] = SEARCHED) -> list[str]:
    return [c for c in trials.columns if c not in (*rundir.TRIAL_METRICS, *AVERAGED, *searched)]


def summarize(trials: pd.DataFrame, searched: Sequence[str] = SEARCHED) -> pd.DataFrame:
    """One row per cell: the best searched values and their (seed-averaged) accuracies."""
    cells = cell_columns(trials, searched)
    ok = trials[trials["status"] == "ok"].dropna(subset=["test_acc"])
    if ok.empty:
        return pd.DataFrame(columns=[*cells, *searched, "test_acc", "best_test_acc", "test_top5", "seeds"])
    per_config = (ok.groupby(cells + list(searched), dropna=False)
                    .agg(test_acc=("test_acc", "mean"), best_test_acc=("best_test_acc", "mean"),
                         test_top5=("test_top5", "mean"), seeds=("test_acc", "size"))
                    .reset_index())
    best = per_config.loc[per_config.groupby(cells, dropna=False)["test_acc"].idxmax()]
    return best.sort_values(cells).reset_index(drop=True)


TARGETS = (0.8, 0.85, 0.9)  # the accuracies Figure 9 finds the critical clean-label counts for


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """A finished run's study.json, trials.csv and summary (with the run's own searched keys)."""
    study = rundir.read_study(run_dir)
    trials = pd.read_csv(Path(run_dir) / rundir.TRIALS)
    return study, trials, summarize(trials, study.get("searched", SEARCHED))


def missing(run_dir: Path) -> str | None:
    """One error line when run_dir is not a finished study run dir, else None."""
    absent = [f for f in (rundir.STUDY, rundir.TRIALS) if not (Path(run_dir) / f).exists()]
    return f"{run_dir} is not a finished study run dir (no {absent[0]})" if absent else None


def critical_clean(summary: pd.DataFrame, target: float, metric: str = "test_acc") -> pd.Series:
    """Per alpha, the fewest clean labels that reach `target` accuracy (Figure 9).

    Interpolated linearly in log(n_clean) between the two measured sizes that bracket the target;
    the smallest size measured when it already reaches it; NaN when no size does.
    """
    critical = {}
    for alpha, rows in summary.groupby("alpha"):
        curve = rows.groupby("n_clean")[metric].mean().sort_index()
        n, acc = np.log(curve.index.to_numpy(float)), curve.to_numpy(float)
        reached = np.flatnonzero(acc >= target)
        if not len(reached):
            critical[alpha] = np.nan
            continue
        i = reached[0]
        if i == 0:
            critical[alpha] = float(np.exp(n[0]))
            continue
        frac = (target - acc[i - 1]) / (acc[i] - acc[i - 1])
        critical[alpha] = float(np.exp(n[i - 1] + frac * (n[i] - n[i - 1])))
    return pd.Series(critical, dtype=float).sort_index()
