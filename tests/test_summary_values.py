"""analysis.summary by exact values: the t quantile at the table's end (df 120 vs 121), `aggregate`'s rows and
their order (sorted by config, a NaN config value kept and last, as read_trials gives every run from before
noise.matrix), a table with no config column at all, `summarize` with no cell column, with searched keys other
than the default and with a NaN cell, its two error messages word for word, and `read_run` taking the searched
keys from study.json at the last and at the best epoch; `kind_of` for every noise kind (NaN and "" unset, uniform
never tied, frames without draw or without the matrix/labels columns) and `noise_kind`'s rows, order and fresh
index (the alpha = 0 uniform rows copied once under each kind present, none under an absent one);
`critical_points` averaging replicates given out of order, bracketing sizes 1 apart, the NaN, censored and
empty cases, object-dtype n_clean, and its dtypes (the index keeps alpha's, n_crit float, censored object when
empty). Inputs are tiny hand-made tables; no stand-ins."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rundir
from analysis.summary import NOISE_KINDS, aggregate, critical_points, kind_of, noise_kind, read_run, summarize, t975


def rows(configs: list[dict], accs: list[list[float]]) -> pd.DataFrame:
    """A trials.csv-shaped table: per config, one finished replicate per accuracy (seed 0, 1, ...)."""
    out = []
    for config, values in zip(configs, accs):
        for seed, acc in enumerate(values):
            out.append({**config, "seed": seed, "noise_seed": 10 + seed, "trial_id": f"t{len(out)}", "status": "ok",
                        "test_acc": acc, "test_top5": acc + 0.05})
    return pd.DataFrame(out)


def test_t975_at_the_end_of_the_table() -> None:
    assert t975(119) == 2.000  # between 60 and 120: the smaller tabulated df
    assert t975(120) == 1.980  # tabulated: not yet the normal quantile
    assert t975(121) == 1.96  # beyond the table: the normal quantile


def test_aggregate_rows_are_sorted_by_config_and_keep_a_nan_config_value() -> None:
    """Rows in the order of their config (NaN last), whatever the input order; a NaN config value (a run read
    from before noise.matrix existed) is a config of its own, not dropped."""
    nan = math.nan
    trials = rows([{"alpha": 50, "matrix": nan}, {"alpha": 10, "matrix": "m.npy"}, {"alpha": 10, "matrix": nan},
                   {"alpha": 0, "matrix": nan}],
                  [[0.5, 0.7], [0.8], [0.6, 0.9, 0.9], [0.95]])
    out = aggregate(trials)
    assert out["alpha"].tolist() == [0, 10, 10, 50]
    assert out["matrix"].isna().tolist() == [True, False, True, True]  # within alpha 10: "m.npy", then NaN
    assert out["replicates"].tolist() == [1, 1, 3, 2]
    assert out["test_acc"].tolist() == pytest.approx([0.95, 0.8, 0.8, 0.6])
    std = math.sqrt((0.2 ** 2 + 0.1 ** 2 + 0.1 ** 2) / 2)  # alpha 10, no matrix: 0.6, 0.9, 0.9 around 0.8
    assert out.loc[2, "test_acc_std"] == pytest.approx(std)
    assert out.loc[2, "test_acc_ci_low"] == pytest.approx(0.8 - 4.303 * std / math.sqrt(3))
    assert out.loc[3, "test_top5_ci_high"] == pytest.approx(0.65 + 12.706 * math.sqrt(0.02) / math.sqrt(2))


def test_aggregate_with_no_config_column_is_one_row() -> None:
    """Only replicate keys and metrics: every finished row is a replicate of the one config."""
    trials = rows([{}], [[0.6, 0.8, 0.7]])
    out = aggregate(trials)
    assert out.columns.tolist() == ["test_acc", "test_acc_std", "test_acc_ci_low", "test_acc_ci_high", "test_top5",
                                    "test_top5_std", "test_top5_ci_low", "test_top5_ci_high", "replicates"]
    assert out.index.tolist() == [0]
    assert out.loc[0, "replicates"] == 3
    assert out.loc[0, "test_acc"] == pytest.approx(0.7)
    assert out.loc[0, "test_acc_ci_high"] == pytest.approx(0.7 + 4.303 * 0.1 / math.sqrt(3))


def test_summarize_with_no_cell_column_is_the_best_config_alone() -> None:
    trials = rows([{"lr": 0.1}, {"lr": 1.0}, {"lr": 0.01}], [[0.5, 0.6], [0.9, 0.8], [0.7]])
    out = summarize(trials)
    assert out.columns.tolist() == ["lr", "test_acc", "test_acc_std", "test_acc_ci_low", "test_acc_ci_high",
                                    "test_top5", "test_top5_std", "test_top5_ci_low", "test_top5_ci_high",
                                    "replicates", "selected_on"]
    assert out.index.tolist() == [0]
    assert out.loc[0, "lr"] == 1.0 and out.loc[0, "test_acc"] == pytest.approx(0.85)
    assert out.loc[0, "selected_on"] == "test_acc"


def test_summarize_chooses_over_the_searched_keys_given() -> None:
    """searched=("lr", "batch_size"): one row per alpha, the best of both; by default batch_size is a cell key."""
    configs = [{"alpha": a, "lr": lr, "batch_size": b} for a in (0, 10) for lr in (0.1, 1.0) for b in (32, 128)]
    accs = [[0.1 * i / 8 + (0.5 if c["alpha"] == 0 else 0.2)] for i, c in enumerate(configs)]
    trials = rows(configs, accs)  # the best per alpha: lr 1.0 and batch_size 128 (the last of its four)
    out = summarize(trials, ("lr", "batch_size"))
    assert out.columns.tolist()[:3] == ["alpha", "lr", "batch_size"]
    assert out[["alpha", "lr", "batch_size"]].values.tolist() == [[0, 1.0, 128], [10, 1.0, 128]]
    by_default = summarize(trials)
    assert by_default[["alpha", "batch_size", "lr"]].values.tolist() == [[0, 32, 1.0], [0, 128, 1.0],
                                                                          [10, 32, 1.0], [10, 128, 1.0]]


def test_summarize_keeps_a_cell_whose_value_is_nan() -> None:
    """A NaN cell value (no noise matrix, as read_trials fills runs from before it) is a cell of its own."""
    trials = rows([{"matrix": "m.npy", "lr": 0.1}, {"matrix": "m.npy", "lr": 1.0},
                   {"matrix": math.nan, "lr": 0.1}, {"matrix": math.nan, "lr": 1.0}],
                  [[0.4], [0.3], [0.6], [0.9]])
    out = summarize(trials)
    assert len(out) == 2
    assert out["matrix"].isna().tolist() == [False, True]
    assert out["lr"].tolist() == [0.1, 1.0] and out["test_acc"].tolist() == pytest.approx([0.4, 0.9])


def test_summarize_error_messages() -> None:
    trials = rows([{"lr": 0.1}], [[0.5]])
    with pytest.raises(ValueError, match="^" + re.escape("select='best' is unknown: choose one of test, val") + "$"):
        summarize(trials, select="best")
    with pytest.raises(ValueError, match="^" + re.escape(
            "select=val needs val_acc in trials.csv, and this run measured none "
            "(it ran with data.n_val=0): use select=test") + "$"):
        summarize(trials, select="val")


@pytest.mark.parametrize("epoch", ["last", "best"])
def test_read_run_uses_the_searched_keys_of_study_json(tmp_path: Path, epoch: str) -> None:
    """study.json's `searched` (an Optuna search over lr and batch_size): one row per alpha, not per batch size.
    At epoch=best each trial is scored at its best epoch: trial t1 peaks at 0.9 in epoch 1, the best of alpha 0."""
    configs = [{"alpha": 0, "lr": 0.1, "batch_size": 32}, {"alpha": 0, "lr": 0.1, "batch_size": 128},
               {"alpha": 0, "lr": 1.0, "batch_size": 32}]
    trials = rows(configs, [[0.7], [0.6], [0.8]])
    rundir.write_csv(trials, tmp_path / rundir.TRIALS)
    rundir.write_json({"exp": "uniform_mnist", "preset": "test", "searched": ["lr", "batch_size"]},
                      tmp_path / rundir.STUDY)
    epochs = pd.DataFrame({"trial_id": ["t0", "t0", "t1", "t1", "t2", "t2"], "epoch": [1, 2] * 3,
                           "test_acc": [0.5, 0.7, 0.9, 0.6, 0.75, 0.8], "test_top5": [1.0] * 6})
    rundir.write_csv(epochs, tmp_path / rundir.EPOCHS)
    _, _, summary = read_run(tmp_path, epoch=epoch)
    assert len(summary) == 1
    best = {"last": (1.0, 32, 0.8, "test_acc"), "best": (0.1, 128, 0.9, "test_acc at its best epoch")}[epoch]
    row = summary.loc[0]
    assert (row["lr"], row["batch_size"], row["test_acc"], row["selected_on"]) == pytest.approx(best)


def test_kind_of_every_noise_kind() -> None:
    """matrix/labels where the column holds a non-empty value (NaN and "" are unset), " tied" added where
    draw=image but never to uniform: an object array of the full names, every one of NOISE_KINDS."""
    nan = math.nan
    summary = pd.DataFrame({"matrix": [nan, "m.npy", "m.npy", "", nan, "", nan],
                            "labels": [nan, nan, nan, "l.npy", "l.npy", "", nan],
                            "draw": ["copy", "copy", "image", "copy", "image", "image", "image"]})
    kind = kind_of(summary)
    assert isinstance(kind, np.ndarray) and kind.dtype == object
    assert kind.tolist() == ["uniform", "matrix", "matrix tied", "labels", "labels tied", "uniform", "uniform"]
    assert sorted(set(kind)) == sorted(NOISE_KINDS)


def test_kind_of_without_the_draw_or_noise_columns() -> None:
    """No draw column (a run from before noise.draw): per copy, never tied; no matrix/labels columns (a uniform
    study), or columns of NaN alone (read_trials' fill for runs from before them): uniform throughout."""
    untied = kind_of(pd.DataFrame({"matrix": ["m.npy", math.nan], "labels": [math.nan, "l.npy"]}))
    assert untied.tolist() == ["matrix", "labels"]
    assert kind_of(pd.DataFrame({"alpha": [0, 50], "draw": ["image", "copy"]})).tolist() == ["uniform"] * 2
    assert kind_of(pd.DataFrame({"matrix": [math.nan] * 2, "labels": [math.nan] * 2,
                                 "draw": ["copy", "image"]})).tolist() == ["uniform"] * 2
    assert kind_of(pd.DataFrame({"alpha": []})).tolist() == []


def test_noise_kind_copies_the_clean_rows_under_each_kind_present() -> None:
    """Every row with its kind, in order; then the alpha = 0 uniform rows (not the uniform alpha 50 one) once
    under matrix and once under matrix tied, the kinds present, in NOISE_KINDS order, none under the labels kinds
    (absent); a fresh index 0..n-1 whatever the summary's."""
    nan = math.nan
    summary = pd.DataFrame({"alpha": [0, 50, 50, 0, 50], "arch": ["a", "a", "a", "b", "b"],
                            "matrix": [nan, nan, "m.npy", nan, "m.npy"], "labels": [nan] * 5,
                            "draw": ["copy", "copy", "image", "copy", "copy"],
                            "test_acc": [0.99, 0.9, 0.7, 0.98, 0.8]}, index=[7, 3, 9, 1, 4])
    out = noise_kind(summary)
    assert out.columns.tolist() == ["alpha", "arch", "matrix", "labels", "draw", "test_acc", "kind"]
    assert out.index.tolist() == list(range(9))
    assert out["kind"].tolist() == ["uniform", "uniform", "matrix tied", "uniform", "matrix",
                                    "matrix", "matrix", "matrix tied", "matrix tied"]
    assert out["alpha"].tolist() == [0, 50, 50, 0, 50, 0, 0, 0, 0]
    assert out["arch"].tolist() == ["a", "a", "a", "b", "b", "a", "b", "a", "b"]
    assert out["test_acc"].tolist() == [0.99, 0.9, 0.7, 0.98, 0.8, 0.99, 0.98, 0.99, 0.98]
    assert out["draw"].tolist() == ["copy", "copy", "image", "copy", "copy"] + ["copy"] * 4  # the copies unchanged


def test_noise_kind_of_labels_only_and_of_uniform_only() -> None:
    """Labels kinds present (no matrix column): the clean row under labels and labels tied; a uniform study
    (no noise columns at all): the summary and its kind column alone, no copies."""
    summary = pd.DataFrame({"alpha": [0, 50, 50], "labels": ["", "l.npy", "l.npy"], "draw": ["copy", "image", "copy"]})
    out = noise_kind(summary)
    assert out["kind"].tolist() == ["uniform", "labels tied", "labels", "labels", "labels tied"]
    assert out["alpha"].tolist() == [0, 50, 50, 0, 0] and out.index.tolist() == list(range(5))
    uniform = noise_kind(pd.DataFrame({"alpha": [50, 0], "test_acc": [0.5, 0.9]}, index=[5, 6]))
    assert uniform.values.tolist() == [[50, 0.5, "uniform"], [0, 0.9, "uniform"]]
    assert uniform.index.tolist() == [0, 1]


def test_critical_points_averages_replicates_and_keeps_the_alpha_dtype() -> None:
    """Replicate rows (same alpha and n_clean) given out of order are averaged before interpolating in
    log(n_clean): at alpha 10 the curve is 10 -> (0.5 + 0.2) / 2 = 0.35, 100 -> (0.9 + 0.45) / 2 = 0.675,
    1000 -> 0.95 (a NaN accuracy dropped), so 0.6 lies 0.25 / 0.325 = 10/13 of the way from log 10 to log 100;
    at alpha 0, sizes 10 and 11 at 0.7 and 0.9: 0.8 is halfway, at sqrt(10 * 11). Integer alpha and n_clean:
    the index keeps int64, n_crit is float throughout, also where it is a measured size."""
    summary = pd.DataFrame({"alpha": [10, 10, 10, 10, 10, 0, 10, 0], "n_clean": [100, 10, 1000, 10, 100, 11, 10000, 10],
                            "test_acc": [0.9, 0.5, 0.95, 0.2, 0.45, 0.9, math.nan, 0.7]})
    out = critical_points(summary, 0.6)
    assert out.index.dtype == np.dtype("int64") and out.index.tolist() == [0, 10]
    assert out["n_crit"].dtype == np.dtype("float64")
    assert out["censored"].tolist() == ["below", ""]
    assert out["n_crit"].tolist() == pytest.approx([10.0, 10 * 10 ** (10 / 13)], rel=1e-12)
    mid = critical_points(summary, 0.8)  # alpha 10: between 100 (0.675) and 1000 (0.95)
    assert mid["censored"].tolist() == ["", ""]
    assert mid["n_crit"].tolist() == pytest.approx([math.sqrt(110), 100 * 10 ** (0.125 / 0.275)], rel=1e-12)
    below, above = critical_points(summary, 0.3), critical_points(summary, 0.96)
    assert below["censored"].tolist() == ["below"] * 2 and below["n_crit"].tolist() == [10.0, 10.0]
    assert above["censored"].tolist() == ["above"] * 2  # alpha 10's largest size measured is 1000: 10000 has NaN
    assert above["n_crit"].tolist() == [11.0, 1000.0] and above["n_crit"].dtype == np.dtype("float64")
    assert critical_points(summary.astype({"alpha": float}), 0.6).index.dtype == np.dtype("float64")


def test_critical_points_of_an_empty_summary() -> None:
    """No measured point (no row, or none with an accuracy): an empty frame, float n_crit and object censored
    columns on the default RangeIndex, whatever the alpha dtype."""
    empty = pd.DataFrame({"alpha": [], "n_clean": [], "test_acc": []})
    unmeasured = pd.DataFrame({"alpha": [0, 10], "n_clean": [10, 10], "test_acc": [math.nan] * 2})
    for summary in (empty, unmeasured, empty.astype({"alpha": "int64"})):
        out = critical_points(summary, 0.8)
        assert out.columns.tolist() == ["n_crit", "censored"] and len(out) == 0
        assert type(out.index) is pd.RangeIndex
        assert out.dtypes.tolist() == [np.dtype("float64"), np.dtype(object)]


def test_critical_points_reads_object_columns_as_numbers() -> None:
    """n_clean of object dtype (Python ints, and None for a null size, as from JSON configs): read as floats,
    the None row dropped like a NaN one."""
    summary = pd.DataFrame({"alpha": [0, 0, 0], "n_clean": pd.Series([10, None, 100], dtype=object),
                            "test_acc": [0.5, 0.9, 0.7]})
    out = critical_points(summary, 0.6)
    assert out["censored"].tolist() == [""]
    assert out["n_crit"].tolist() == pytest.approx([10 * math.sqrt(10)], rel=1e-12)
