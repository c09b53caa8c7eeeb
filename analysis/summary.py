"""Model selection: for each cell of the study, the learning rate (or, after an Optuna search, the searched
keys) that gives the best final accuracy, averaged over replicates first, on the test set (the paper's
rule, §3.4) or on the held-out validation split (data.n_val > 0; the default when the run has one).

Replicates are rows that differ only in rundir.REPLICATE_KEYS (train.seed and noise.seed). Per config
(cell and searched values) `aggregate` gives, over its finished replicates, the mean, the sample standard
deviation (ddof=1) and a 95% confidence interval of the mean (Student t: mean ± t_{0.975, n-1} · std / √n).
With one replicate the std and both CI bounds are NaN (no spread can be estimated): figures then draw
no error bar. Failed or unfinished replicates are left out, and `replicates` counts the ones used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rundir

SEARCHED = ("lr",)  # chosen per cell unless study.json names its `searched` keys; other config columns define the cell
REPLICATES = rundir.REPLICATE_KEYS  # config columns averaged over, never a cell key
METRICS = ("test_acc", "best_test_acc", "test_top5", "val_acc", "best_val_acc")  # trials.csv metrics averaged over
# replicates (val_acc, best_val_acc: where trials.csv has them, i.e. runs made since data.n_val exists)
EPOCHS = ("last", "best")  # --epoch: each trial scored at its last epoch (the paper's), or at its best on the selection split
SELECT = {"test": "test_acc", "val": "val_acc"}  # --select: the replicate-mean last-epoch metric the LR is chosen on
WITH_CI = ("test_acc", "test_top5")  # those that also get _std, _ci_low and _ci_high columns

# Student t quantile t_{0.975, df} (two-sided 95%), from standard tables: scipy is no dependency.
# Between tabulated dfs the next smaller df is used (a slightly wider, conservative interval);
# beyond 120 the normal quantile 1.96 (less than 1% narrower than the true t).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def t975(df: int) -> float:
    """t_{0.975, df}; NaN for df < 1 (one replicate: no interval)."""
    if df < 1:
        return float("nan")
    if df > 120:
        return 1.96
    return T975[max(d for d in T975 if d <= df)]


def config_columns(trials: pd.DataFrame) -> list[str]:
    """Every config column but the replicate keys: rows equal on these are replicates of one config."""
    return [c for c in trials.columns if c not in (*rundir.TRIAL_METRICS, *REPLICATES)]


def cell_columns(trials: pd.DataFrame, searched: Sequence[str] = SEARCHED) -> list[str]:
    return [c for c in config_columns(trials) if c not in searched]


def aggregate(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per config over its finished replicates: config columns, then for each METRIC its mean
    (same name), for WITH_CI also <metric>_std, <metric>_ci_low, <metric>_ci_high, and `replicates` (n)."""
    keys = config_columns(trials)
    ok = trials[trials["status"] == "ok"].dropna(subset=["test_acc"])
    metrics = [m for m in METRICS if m in trials]
    columns = [*keys]
    for metric in metrics:
        columns += [metric] + ([f"{metric}_std", f"{metric}_ci_low", f"{metric}_ci_high"] if metric in WITH_CI else [])
    columns.append("replicates")
    if ok.empty:
        return pd.DataFrame(columns=columns)
    groups = ok.groupby(keys, dropna=False, sort=True) if keys else ok.groupby(lambda _: 0)
    out = groups[metrics].mean()
    for metric in WITH_CI:
        n = groups[metric].count()
        std = groups[metric].std(ddof=1)  # NaN when n == 1
        half = n.map(lambda k: t975(k - 1)) * std / np.sqrt(n)
        out[f"{metric}_std"] = std
        out[f"{metric}_ci_low"] = out[metric] - half
        out[f"{metric}_ci_high"] = out[metric] + half
    out["replicates"] = groups["test_acc"].count()
    out = out.reset_index() if keys else out.reset_index(drop=True)
    return out[columns]


def default_select(trials: pd.DataFrame) -> str:
    """"val" when the run measured a held-out validation accuracy (data.n_val > 0), else "test"."""
    return "val" if "val_acc" in trials and trials["val_acc"].notna().any() else "test"


def summarize(trials: pd.DataFrame, searched: Sequence[str] = SEARCHED, select: str | None = None) -> pd.DataFrame:
    """One row per cell: the searched values with the best replicate-mean last-epoch accuracy on the
    selection split, and that config's replicate statistics (see `aggregate`).

    select="test" is the paper's rule (§3.4: the LR with the best test accuracy; optimistic, since the
    test set then both chooses and scores); select="val" chooses on the held-out validation split
    (data.n_val > 0) and reports the test accuracy of that choice. None: `default_select`. The column
    `selected_on` names the metric each row was chosen on."""
    select = select or default_select(trials)
    if select not in SELECT:
        raise ValueError(f"select={select!r} is unknown: choose one of {', '.join(SELECT)}")
    key = SELECT[select]
    if select == "val" and (key not in trials or trials[key].isna().all()):
        raise ValueError(f"select={select} needs {key} in trials.csv, and this run measured none "
                         "(it ran with data.n_val=0): use select=test")
    cells = cell_columns(trials, searched)
    per_config = aggregate(trials)
    keys = [*cells, *(c for c in config_columns(trials) if c not in cells)]  # searched keys after the cell
    per_config = per_config[[*keys, *(c for c in per_config.columns if c not in keys)]].assign(selected_on=key)
    if per_config.empty:
        return per_config
    ranked = per_config.dropna(subset=[key])  # a config whose selection metric is missing cannot be chosen
    if ranked.empty:  # no trial finished: nothing to choose
        return ranked
    if not cells:
        return ranked.loc[[ranked[key].idxmax()]].reset_index(drop=True)
    best = ranked.loc[ranked.groupby(cells, dropna=False)[key].idxmax()]
    return best.sort_values(cells).reset_index(drop=True)


TARGETS = (0.8, 0.85, 0.9)  # the accuracies Figure 9 finds the critical clean-label counts for


# Training-set sizes, for data.n_clean = null (the whole training set): analysis imports no loaders/study
# code, so the table is kept here (the same numbers as study/cost.py's TRAIN_SIZE).
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}


def full_size(trials: pd.DataFrame, study: dict[str, Any]) -> pd.DataFrame:
    """trials with an empty n_clean (null: the full training set, e.g. all of ImageNet in Figure 10)
    replaced by the dataset's real training-set size (less data.n_val, the held-out rows), so that the
    row is drawn at its size instead of vanishing as NaN."""
    data = study.get("config", {}).get("data", {})
    size = TRAIN_SIZE.get(str(data.get("dataset")))
    if "n_clean" not in trials or size is None or data.get("stand_in"):
        return trials
    n = size - int(data.get("n_val") or 0)
    return trials.assign(n_clean=trials["n_clean"].fillna(n))


def at_best_epoch(trials: pd.DataFrame, epochs: pd.DataFrame, key: str) -> pd.DataFrame:
    """trials with each one's per-epoch metrics taken at its epoch of best `key` (early stopping on that
    split) instead of its last epoch."""
    best = epochs.dropna(subset=[key])
    best = best.loc[best.groupby("trial_id")[key].idxmax()].set_index("trial_id")
    out = trials.set_index("trial_id")
    for metric in ("test_acc", "test_top5", "val_acc"):
        if metric in best and metric in out:
            out.loc[best.index.intersection(out.index), metric] = best[metric]
    return out.reset_index()[trials.columns]


def read_run(run_dir: Path, select: str | None = None,
             epoch: str = "last") -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """A finished run's study.json, trials.csv (null n_clean as the full size) and summary (with the run's
    own searched keys, chosen on `select`: see `summarize`). epoch="best": each trial is scored at its
    epoch of best selection accuracy (`at_best_epoch`), and `selected_on` says so."""
    if epoch not in EPOCHS:
        raise ValueError(f"epoch={epoch!r} is unknown: choose one of {', '.join(EPOCHS)}")
    study, trials = rundir.read_trials(run_dir)
    trials = full_size(trials, study)
    if epoch == "best":
        key = SELECT[select or default_select(trials)]
        trials = at_best_epoch(trials, pd.read_csv(Path(run_dir) / rundir.EPOCHS), key)
        summary = summarize(trials, study.get("searched", SEARCHED), select)
        return study, trials, summary.assign(selected_on=summary["selected_on"] + " at its best epoch")
    return study, trials, summarize(trials, study.get("searched", SEARCHED), select)


# exp=human_noise: uniform labels; noise.matrix or noise.labels, each drawn per copy or, with noise.draw=image,
# once per image ("tied": every copy of an image carries its one label)
NOISE_KINDS = ("uniform", "matrix", "matrix tied", "labels", "labels tied")


def kind_of(summary: pd.DataFrame) -> np.ndarray:
    """Each row's noise kind: matrix where noise.matrix is set, labels where noise.labels is, else uniform; to
    those two, " tied" where noise.draw=image (runs from before noise.draw have no `draw` column: per copy)."""
    kind = np.full(len(summary), "uniform", dtype=object)
    for column in ("matrix", "labels"):
        if column in summary:
            kind[(summary[column].notna() & (summary[column].astype(str) != "")).to_numpy()] = column
    if "draw" in summary:
        tied = (summary["draw"] == "image").to_numpy() & (kind != "uniform")
        kind[tied] = kind[tied] + " tied"
    return kind


def noise_kind(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with a `kind` column (see `kind_of`); the alpha = 0 rows, the clean set every kind
    shares, appear once under each kind."""
    kind = kind_of(summary)
    out = summary.assign(kind=kind)
    clean = out[(out["alpha"] == 0) & (out["kind"] == "uniform")]
    return pd.concat([out, *(clean.assign(kind=k) for k in NOISE_KINDS[1:] if k in set(kind))], ignore_index=True)


def missing(run_dir: Path) -> str | None:
    """One error line when run_dir is not a finished study run dir, else None."""
    absent = [f for f in (rundir.STUDY, rundir.TRIALS) if not (Path(run_dir) / f).exists()]
    return f"{run_dir} is not a finished study run dir (no {absent[0]})" if absent else None


CENSORED = ("below", "above")  # target met already at the smallest size measured / never met at the largest


def critical_points(summary: pd.DataFrame, target: float, metric: str = "test_acc") -> pd.DataFrame:
    """Per alpha (the index), the fewest clean labels that reach `target` accuracy (Figure 9), with
    censoring marked: columns `n_crit` and `censored`.

    - bracketed: interpolated linearly in log(n_clean) between the two measured sizes around the target
      (`censored` = "");
    - met already at the smallest size measured: `n_crit` is that size, an upper bound only
      (`censored` = "below": the true count is ≤ it);
    - never met: `n_crit` is the largest size measured, a lower bound only (`censored` = "above").
    """
    points = np.column_stack([summary[c].to_numpy(float) for c in ("alpha", "n_clean", metric)])
    points = points[~np.isnan(points).any(axis=1)]
    points = points[np.lexsort((points[:, 1], points[:, 0]))]  # by alpha, then n_clean
    starts = np.flatnonzero(np.r_[True, (np.diff(points[:, :2], axis=0) != 0).any(axis=1)])[:len(points)]
    alphas, sizes = points[starts, 0], points[starts, 1]  # one curve point per (alpha, n_clean): its rows' mean
    accs = np.add.reduceat(points[:, 2], starts) / np.diff(np.r_[starts, len(points)]) if len(points) else sizes
    first = np.flatnonzero(np.r_[True, alphas[1:] != alphas[:-1]])[:len(alphas)]
    rows = []
    for start, stop in zip(first, [*first[1:], len(alphas)]):
        size, acc = sizes[start:stop], accs[start:stop]
        reached = np.flatnonzero(acc >= target)
        if not len(reached):
            rows.append((size[-1], "above"))
        elif reached[0] == 0:
            rows.append((size[0], "below"))
        else:
            i = reached[0]
            frac = (target - acc[i - 1]) / (acc[i] - acc[i - 1])
            rows.append((float(np.exp(np.log(size[i - 1]) + frac * np.log(size[i] / size[i - 1]))), ""))
    index = pd.Index(alphas[first]).astype(summary["alpha"].dtype) if len(rows) else None
    return pd.DataFrame({"n_crit": np.array([r[0] for r in rows], float),
                         "censored": np.array([r[1] for r in rows], object)}, index=index)


def critical_clean(summary: pd.DataFrame, target: float, metric: str = "test_acc") -> pd.Series:
    """Per alpha, the interpolated critical number of clean labels (see `critical_points`); NaN where it
    is censored (met at the smallest size measured, or never met): no clamped value pretends to be one."""
    points = critical_points(summary, target, metric)
    return points["n_crit"].where(points["censored"] == "").astype(float)
