"""analysis.power's parts one by one, on exact values: each scenario's grid rows (Scenario.rows and the
shapes), each scenario's true accuracy under the paper's effect and every null, recomputed row by row from
the docstrings' formulas, the trials.csv that simulate makes of them (columns, replicate and study
structure, seeds, top-1/top-5 and the clip to [0, 1], the noise drawn per row), held_rates' arguments and
keys, table's rows and progress lines, and main's command line. No claim is judged on more than a few
simulated studies, so the file runs in seconds; test_claims_power.py holds the null and power rates.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import power

SCENARIO = {s.exp: s for s in power.SCENARIOS}
EFFECTS = [(s.exp, e) for s in power.SCENARIOS for e in (power.PAPER, *s.nulls)]
TOL = 1e-12  # the truths are sums of a few floats: equal to this, or a constant of the model has changed
SEEDS = ["seed", "noise_seed", "order_seed", "subset_seed"]
TRIAL_COLUMNS = [*SEEDS, "study", "status", "test_acc", "test_top5", "val_acc"]


# --- each scenario's truth, row by row, as its docstring states it -----------------------------------------

def mnist(r: dict, effect: str) -> float:
    acc = {"conv4": 0.91, "mlp4": 0.80, "mlp2": 0.75, "mlp1": 0.70, "perceptron": 0.40}[r["arch"]]
    acc = {("ConvNet at 90%", "conv4"): 0.90, ("perceptron at 30%", "perceptron"): 0.30,
           ("ConvNet = best MLP", "conv4"): 0.80}.get((effect, r["arch"]), acc)
    return acc + (0.05 if r["alpha"] == 10 else 0.0)  # α = 10: 5 points above α = 100


def cifar10(r: dict, effect: str) -> float:
    acc = (0.86 if effect == power.PAPER else 0.85) if r["arch"] == "resnet101" else 0.70
    return acc + (0.05 if r["alpha"] == 0 else 0.0)


def imagenet(r: dict, effect: str) -> float:
    return (0.71 if effect == power.PAPER else 0.70) if r["alpha"] == 5 else 0.85


def structured(r: dict, effect: str) -> float:
    if r["delta"] == 0.9:
        return 0.85
    if r["delta"] == 1.0:
        return 0.35
    worst = 0.05 if r["order"] == "confusing" and effect != power.PAPER else 0.02  # the drop at δ = 0.8
    return 0.95 - worst * r["delta"] / 0.8


def noise_source(r: dict, effect: str) -> float:
    per_alpha = {"same": 0.03, "cifar100": 0.0225 if effect == "ratio 0.75" else 0.015,
                 "white": 0.003 if effect == "white drops 3 points" else 0.0}[r["source"]]
    return 0.8 - per_alpha * r["alpha"]


def repeated(r: dict, effect: str) -> float:
    gap = 0.02 if effect != power.PAPER and r["source"] == "novel" and r["alpha"] > 0 else 0.0
    return 0.97 - 0.002 * r["alpha"] - gap


def dataset_size(r: dict, effect: str) -> float:
    p = {"p = 0.85": 0.85, "p = 1.5": 1.5}.get(effect, 1.0)
    c = 400 if effect == "twice the paper's counts" else 2000 / 10 ** p  # n90(10) = 2,000 but for the doubling
    n90 = c * r["alpha"] ** p if r["alpha"] > 0 else 100
    return min(max(0.9 + 0.3 * math.log10(r["n_clean"] / n90), 0.1), 0.99)


def batchsize(r: dict, effect: str) -> float:
    if r["loss"] == "h_alpha":
        return 0.95 if effect == "H_α falls 3 points" and r["alpha"] > 0 else 0.98
    gain = 0.01 * math.log2(r["batch_size"] / 128) if effect == power.PAPER and r["alpha"] > 0 else 0.0
    return 0.99 - 0.002 * r["alpha"] + gain


def learning_rate(r: dict, effect: str) -> float:
    flat = 0.8 - 0.02 * r["alpha"]
    if effect == "no optimum":
        return flat
    start = -1.0 if effect == "clean optimum 0.1" else 0.0
    optimum = start - 1.3 * math.log10(1 + r["alpha"]) / math.log10(11)  # log10 of the optimal LR
    return flat - 0.05 * (math.log10(r["lr"]) - optimum) ** 2


def human(r: dict, effect: str) -> float:
    human_kind = isinstance(r["matrix"], str) or isinstance(r["labels"], str)
    acc = 0.8 - 0.005 * r["alpha"] if human_kind else 0.85 - 0.05 * r["alpha"]
    tied = human_kind and r["draw"] == "image"
    per_image = 0.02 if isinstance(r["labels"], str) and tied and effect != "no per-image effect" else 0.0
    repetition = 0.02 if tied and effect != "no repetition cost" else 0.0
    return acc - per_image - repetition


BY_HAND = {"uniform_mnist": mnist, "uniform_cifar10": cifar10, "uniform_imagenet": imagenet,
           "structured": structured, "noise_source": noise_source, "repeated": repeated,
           "dataset_size": dataset_size, "batchsize": batchsize, "learning_rate": learning_rate,
           "human_noise": human}


def expected(exp: str, effect: str, rows: pd.DataFrame | None = None) -> np.ndarray:
    rows = SCENARIO[exp].rows() if rows is None else rows
    return np.array([BY_HAND[exp](r, effect) for r in rows.to_dict("records")])


def truth(exp: str, effect: str) -> np.ndarray:
    scenario = SCENARIO[exp]
    return np.asarray(scenario.truth(scenario.rows(), effect), float)


def test_every_scenario_is_checked_by_hand() -> None:
    assert set(BY_HAND) == set(SCENARIO)


@pytest.mark.parametrize("exp,effect", EFFECTS, ids=[f"{x}: {e}" for x, e in EFFECTS])
def test_truth_of_every_row_is_the_docstrings(exp: str, effect: str) -> None:
    got = truth(exp, effect)
    want = expected(exp, effect)
    assert got.shape == want.shape and np.isfinite(got).all()
    bad = np.flatnonzero(~np.isclose(got, want, rtol=0, atol=TOL))
    assert not len(bad), SCENARIO[exp].rows().iloc[bad[:5]].assign(got=got[bad[:5]], want=want[bad[:5]])


def test_truth_spot_values() -> None:
    """A few values worked out by hand (not through the formulas above)."""
    rows = {exp: SCENARIO[exp].rows() for exp in SCENARIO}

    def at(exp: str, effect: str, **where: object) -> float:
        g = rows[exp]
        keep = np.logical_and.reduce([(g[k] == v).fillna(False).to_numpy(bool) for k, v in where.items()])
        values = set(np.round(np.asarray(SCENARIO[exp].truth(g, effect), float)[keep], 12))
        assert len(values) == 1, (exp, effect, where, values)
        return values.pop()

    assert at("uniform_mnist", power.PAPER, arch="mlp2", alpha=100) == 0.75
    assert at("uniform_mnist", power.PAPER, arch="mlp1", alpha=10) == 0.75
    assert at("uniform_mnist", power.PAPER, arch="mlp4", alpha=10) == 0.85
    assert at("uniform_mnist", "perceptron at 30%", arch="perceptron", alpha=10) == 0.35
    assert at("uniform_mnist", "ConvNet at 90%", arch="conv4", alpha=10) == 0.95
    assert at("uniform_imagenet", power.PAPER, alpha=5) == 0.71
    assert at("uniform_imagenet", "top-5 at 70%", alpha=0) == 0.85
    assert at("structured", "drop 5 points at δ = 0.8", order="confusing", delta=0.2) == 0.9375
    assert at("structured", "drop 5 points at δ = 0.8", order="random", delta=0.2) == 0.945
    assert at("noise_source", "ratio 0.75", source="cifar100", alpha=8) == 0.62
    assert at("noise_source", "white drops 3 points", source="white", alpha=10) == 0.77
    assert at("noise_source", "white drops 3 points", source="cifar100", alpha=10) == 0.65
    assert at("repeated", "novel 2 points worse", source="novel", alpha=20) == 0.91
    assert at("repeated", "novel 2 points worse", source="same", alpha=20) == 0.93
    assert at("dataset_size", power.PAPER, alpha=0, n_clean=100) == 0.9  # n90(0) = 100
    assert at("dataset_size", power.PAPER, alpha=0, n_clean=10000) == 0.99  # capped
    assert at("dataset_size", power.PAPER, alpha=50, n_clean=1000) == 0.6  # n90 = 10,000: a decade short
    assert at("dataset_size", power.PAPER, alpha=50, n_clean=100) == 0.3
    assert at("dataset_size", "p = 1.5", alpha=10, n_clean=200) == 0.6  # n90(10) = 2,000 whatever p
    assert at("dataset_size", "p = 0.85", alpha=1, n_clean=100) == round(0.9 + 0.3 * (2 - math.log10(2000) + 0.85), 12)
    assert at("dataset_size", "twice the paper's counts", alpha=1, n_clean=100) == round(0.9 + 0.3 * math.log10(0.25), 12)
    assert at("dataset_size", "twice the paper's counts", alpha=50, n_clean=100) == round(0.9 + 0.3 * math.log10(0.005), 12)
    assert at("dataset_size", "p = 1.5", alpha=50, n_clean=50000) == 0.99  # the cap
    assert at("batchsize", power.PAPER, loss="ce", alpha=100, batch_size=256) == 0.8
    assert at("batchsize", power.PAPER, loss="ce", alpha=100, batch_size=32) == 0.77
    assert at("batchsize", power.PAPER, loss="ce", alpha=0, batch_size=32) == 0.99
    assert at("batchsize", "no batch effect", loss="ce", alpha=50, batch_size=32) == 0.89
    assert at("batchsize", "H_α falls 3 points", loss="ce", alpha=50, batch_size=32) == 0.89
    assert at("batchsize", "no batch effect", loss="h_alpha", alpha=50) == 0.98
    assert at("learning_rate", "no optimum", alpha=10, lr=0.01) == 0.6
    assert at("learning_rate", power.PAPER, alpha=0, lr=0.01) == 0.6  # two decades from 1: 4 · 5 points
    assert at("learning_rate", "clean optimum 0.1", alpha=0, lr=1.0) == 0.75
    assert at("learning_rate", "clean optimum 0.1", alpha=0, lr=0.01) == 0.75
    assert at("learning_rate", power.PAPER, alpha=10, lr=0.5) == round(0.6 - 0.05 * (math.log10(0.5) + 1.3) ** 2, 12)
    assert at("human_noise", power.PAPER, alpha=10, labels="cifar10n:random") == 0.71  # 75% − 2 − 2 points
    assert at("human_noise", "no per-image effect", alpha=10, labels="cifar10n:random") == 0.73
    assert at("human_noise", "no repetition cost", alpha=10, labels="cifar10n:random") == 0.73
    assert at("human_noise", power.PAPER, alpha=1, matrix="cifar10n:random", draw="image") == 0.775
    assert at("human_noise", "no repetition cost", alpha=1, matrix="cifar10n:random", draw="image") == 0.795
    assert at("human_noise", "no per-image effect", alpha=1, matrix="cifar10n:random", draw="copy") == 0.795


def test_truth_at_alpha_one_off_the_grids() -> None:
    """'at every α > 0' holds at α = 1 too, which the batch-size grid skips."""
    g = pd.DataFrame({"alpha": [0, 1, 1, 1, 0, 1], "batch_size": [256, 256, 64, 128, 128, 128],
                      "loss": ["ce", "ce", "ce", "ce", "h_alpha", "h_alpha"]})
    assert np.round(power.batchsize(g, power.PAPER), 12).tolist() == [0.99, 0.998, 0.978, 0.988, 0.98, 0.98]
    assert np.round(power.batchsize(g, "no batch effect"), 12).tolist() == [0.99, 0.988, 0.988, 0.988, 0.98, 0.98]
    assert np.round(power.batchsize(g, "H_α falls 3 points"), 12).tolist() == [0.99, 0.988, 0.988, 0.988, 0.98, 0.95]


def test_level() -> None:
    assert power.level(0.9, power.PAPER) == pytest.approx(0.91, abs=TOL)
    assert power.level(0.7, power.PAPER) == pytest.approx(0.71, abs=TOL)
    assert power.level(0.7, "top-5 at 70%") == 0.7


# --- rows ---------------------------------------------------------------------------------------------------

COLUMNS = {"uniform_mnist": ["alpha", "arch", "lr", "batch_size"], "uniform_cifar10": ["alpha", "arch", "lr", "batch_size"],
           "uniform_imagenet": ["alpha", "arch", "lr", "batch_size"],
           "structured": ["alpha", "delta", "order", "lr", "arch", "batch_size"],
           "noise_source": ["alpha", "source", "lr", "arch", "batch_size"],
           "repeated": ["alpha", "source", "lr", "arch", "batch_size"],
           "dataset_size": ["n_clean", "alpha", "lr", "arch", "batch_size"],
           "batchsize": ["alpha", "batch_size", "loss", "lr", "arch"],
           "learning_rate": ["alpha", "lr", "arch", "batch_size"],
           "human_noise": ["alpha", "arch", "lr", "batch_size", "matrix", "labels", "draw"]}
LENGTHS = {"uniform_mnist": 2 * 5 * 4, "uniform_cifar10": 2 * 2 * 4, "uniform_imagenet": 2 * 4, "structured": 11 * 3 * 4,
           "noise_source": 7 * 3 * 4, "repeated": 6 * 2 * 4, "dataset_size": 9 * 6 * 4,
           "batchsize": 6 * (4 + 1) * 4,  # H_α at batch 128 only
           "learning_rate": 7 * 5, "human_noise": 2 * 4 * (1 + 4 * 4)}  # α = 0: uniform only


@pytest.mark.parametrize("exp", list(SCENARIO))
def test_rows_columns_and_defaults(exp: str) -> None:
    rows = SCENARIO[exp].rows()
    assert list(rows.columns) == COLUMNS[exp] and len(rows) == LENGTHS[exp]
    assert isinstance(rows.index, pd.RangeIndex) and rows.index.equals(pd.RangeIndex(len(rows)))
    if "arch" not in SCENARIO[exp].grid:
        assert rows["arch"].tolist() == ["conv4"] * len(rows)
    if "batch_size" not in SCENARIO[exp].grid:
        assert rows["batch_size"].tolist() == [128] * len(rows)
    if exp not in ("batchsize", "human_noise"):  # the grid's product in order, the last key fastest
        first = list(SCENARIO[exp].grid)
        assert rows[first].iloc[0].tolist() == [v[0] for v in SCENARIO[exp].grid.values()]
        assert rows[first].iloc[-1].tolist() == [v[-1] for v in SCENARIO[exp].grid.values()]
        assert rows[first[-1]].tolist()[: len(SCENARIO[exp].grid[first[-1]])] == SCENARIO[exp].grid[first[-1]]


def test_rows_of_a_grid_that_names_its_arch_and_batch() -> None:
    s = power.Scenario("x", {"lr": [0.1, 1.0], "arch": ["mlp1"]}, lambda g, e: 0.5 + 0 * g["lr"], {"n": ("MNIST: ConvNet",)})
    assert s.rows().to_dict("records") == [{"lr": 0.1, "arch": "mlp1", "batch_size": 128},
                                           {"lr": 1.0, "arch": "mlp1", "batch_size": 128}]
    s = power.Scenario("x", {"batch_size": [64]}, lambda g, e: 0.5 + 0 * g["batch_size"], {"n": ("MNIST: ConvNet",)})
    assert s.rows().to_dict("records") == [{"batch_size": 64, "arch": "conv4"}]
    assert s.claims == ("MNIST: ConvNet",)
    assert SCENARIO["dataset_size"].claims == ("α = 10 needs", "α = 50 needs", "Clean labels")


def test_batchsize_rows() -> None:
    rows = SCENARIO["batchsize"].rows()
    assert sorted(set(rows.loc[rows["loss"] == "ce", "batch_size"])) == [32, 64, 128, 256]
    assert set(rows.loc[rows["loss"] == "h_alpha", "batch_size"]) == {128}
    assert (rows["arch"] == "conv4").all()


def test_human_noise_rows_exactly() -> None:
    rows = SCENARIO["human_noise"].rows()
    kinds = rows[["matrix", "labels", "draw"]].astype(object).where(rows[["matrix", "labels", "draw"]].notna(), "-")
    kind = [tuple(k) for k in kinds.to_numpy()]
    uniform, matrix, matrix_tied, labels_tied = (("-", "-", "copy"), ("cifar10n:random", "-", "copy"),
                                                 ("cifar10n:random", "-", "image"), ("-", "cifar10n:random", "image"))
    assert set(kind) == {uniform, matrix, matrix_tied, labels_tied}
    counts = pd.Series(list(zip(rows["alpha"], kind))).value_counts()
    for alpha in (0, 1, 2, 5, 10):
        assert counts[(alpha, uniform)] == 2 * 4  # 2 architectures × 4 learning rates
        for k in (matrix, matrix_tied, labels_tied):
            assert counts.get((alpha, k), 0) == (8 if alpha > 0 else 0), (alpha, k)
    assert rows["draw"].notna().all() and rows["matrix"].notna().sum() == rows["labels"].notna().sum() * 2 == 64


# --- simulate -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("exp,effect", EFFECTS, ids=[f"{x}: {e}" for x, e in EFFECTS])
def test_simulate_without_noise_is_the_truth(exp: str, effect: str) -> None:
    scenario = SCENARIO[exp]
    rows = scenario.rows()
    t = power.simulate(scenario, effect, 2, 0.0, 3, "val", np.random.default_rng(0))
    n = len(rows)
    assert list(t.columns) == list(rows.columns) + TRIAL_COLUMNS and len(t) == 6 * n
    assert t.index.equals(pd.RangeIndex(6 * n))
    pd.testing.assert_frame_equal(t[list(rows.columns)], pd.concat([rows] * 6, ignore_index=True))
    want = np.tile(np.clip(expected(exp, effect), 0, 1), 6)
    if scenario.metric == "test_top5":  # the truth is top-5; top-1 lies 20 points below
        assert np.allclose(t["test_top5"], want, rtol=0, atol=TOL) and np.allclose(t["test_acc"], want - 0.2, rtol=0, atol=TOL)
    else:  # top-5 5 points above top-1, at most 100%
        assert np.allclose(t["test_acc"], want, rtol=0, atol=TOL)
        assert np.allclose(t["test_top5"], np.minimum(want + 0.05, 1), rtol=0, atol=TOL)
    assert np.allclose(t["val_acc"], want, rtol=0, atol=TOL)
    assert (t["status"] == "ok").all()


def test_simulate_replicates_studies_and_seeds() -> None:
    scenario = SCENARIO["uniform_imagenet"]
    n = len(scenario.rows())
    t = power.simulate(scenario, power.PAPER, 3, 0.0, 2, "test", np.random.default_rng(0))
    assert len(t) == 6 * n
    replicate = [0] * n + [1000] * n + [2000] * n
    for column in SEEDS:  # every seed of a replicate differs from the other replicates'
        assert t[column].tolist() == replicate * 2 and t[column].dtype.kind == "i", column
    assert t["study"].tolist() == [0] * 3 * n + [1] * 3 * n and t["study"].dtype.kind == "i"
    assert t["val_acc"].isna().all()  # chosen on test: no validation split
    t = power.simulate(scenario, power.PAPER, 1, 0.0, 3, "val", np.random.default_rng(0))
    assert t["seed"].tolist() == [0] * 3 * n and t["study"].tolist() == [0] * n + [1] * n + [2] * n


@pytest.mark.parametrize("exp", ["uniform_mnist", "uniform_imagenet"])
def test_simulate_draws_test_then_validation_noise_per_row_and_clips(exp: str) -> None:
    """Test noise first, then validation noise, one draw per row from the generator it is given; both clipped to
    [0, 1] (with noise of 100 points many rows fall on either end); top-1 (or top-5) follows the test draw."""
    scenario = SCENARIO[exp]
    base = np.tile(np.clip(expected(exp, power.PAPER), 0, 1), 2 * 2)
    rng = np.random.default_rng(11)
    test_noise, val_noise = rng.normal(0, 1.0, len(base)), rng.normal(0, 1.0, len(base))
    t = power.simulate(scenario, power.PAPER, 2, 1.0, 2, "val", np.random.default_rng(11))
    measured = np.clip(base + test_noise, 0, 1)
    assert (measured == 0).any() and (measured == 1).any()  # the clip matters on both ends
    assert np.array_equal(t["val_acc"], np.clip(base + val_noise, 0, 1))
    assert ((t["val_acc"] == 0).any() and (t["val_acc"] == 1).any())
    if scenario.metric == "test_top5":
        assert np.array_equal(t["test_top5"], measured) and np.allclose(t["test_acc"], measured - 0.2, rtol=0, atol=TOL)
    else:
        assert np.array_equal(t["test_acc"], measured)
        assert np.array_equal(t["test_top5"], np.clip(measured + 0.05, 0, 1))


# --- held_rates ---------------------------------------------------------------------------------------------

def test_held_rates_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 replicates, 1 point of noise, 100 studies, LR chosen on validation, generator seeded with 0."""
    calls = []
    simulate = power.simulate

    def recording(scenario, effect, replicates, noise, seeds, select, rng):
        calls.append((scenario.exp, effect, replicates, noise, seeds, select, rng.bit_generator.state))
        return simulate(scenario, effect, replicates, noise, 1, select, rng)  # one study suffices here

    monkeypatch.setattr(power, "simulate", recording)
    scenario = SCENARIO["uniform_cifar10"]
    assert list(power.held_rates(scenario, power.PAPER)) == ["CIFAR-10: ResNet"]
    assert calls == [("uniform_cifar10", power.PAPER, 3, 0.01, 100, "val", np.random.default_rng(0).bit_generator.state)]
    calls.clear()
    power.held_rates(scenario, "ResNet at 85%", 2, 0.02, 7, "test", 5)
    assert calls == [("uniform_cifar10", "ResNet at 85%", 2, 0.02, 7, "test", np.random.default_rng(5).bit_generator.state)]


def test_held_rates_keys_follow_only() -> None:
    mnist = SCENARIO["uniform_mnist"]
    everything = power.held_rates(mnist, power.PAPER, 3, 0.001, 2, "val")
    assert list(everything) == ["MNIST: ConvNet", "MNIST: perceptron", "MNIST: larger"] == list(mnist.claims)
    assert power.held_rates(mnist, power.PAPER, 3, 0.001, 2, "val", only=("MNIST: larger",)) == {"MNIST: larger": 1.0}
    assert list(power.held_rates(mnist, power.PAPER, 3, 0.001, 2, "val", only=("MNIST: perceptron", "MNIST: ConvNet"))) \
        == ["MNIST: perceptron", "MNIST: ConvNet"]


@pytest.mark.parametrize("select", ["val", "test"])
def test_held_rates_tell_the_paper_from_its_null(select: str) -> None:
    """At σ = 0.1 point of noise the paper's ResNet (86%) lies 10 σ above the 85% edge: held in every study (the
    t interval, ± 4.30·s/√3 about the mean, reaches 85% only if the replicates' sd s comes near 4 σ:
    P(χ²₂ > 32) = e^-16). On the edge (the null) an interval reads held only when it misses 85% from above
    by chance (2.5% per study chosen on validation, somewhat more on test): the bound, 3 of 10, leaves room
    for any generator stream; at seed 0 it is 0 of 10."""
    cifar = SCENARIO["uniform_cifar10"]
    assert power.held_rates(cifar, power.PAPER, 3, 0.001, 10, select) == {"CIFAR-10: ResNet": 1.0}
    null = power.held_rates(cifar, "ResNet at 85%", 3, 0.001, 10, select)
    assert list(null) == ["CIFAR-10: ResNet"] and null["CIFAR-10: ResNet"] <= 0.3


# --- table and main -----------------------------------------------------------------------------------------

def fake_held_rates(calls: list):
    def held_rates(scenario, effect, replicates, noise, seeds, select, only=()):
        calls.append((scenario.exp, effect, replicates, noise, seeds, select, only))
        return {p: round(0.01 * len(calls) + 0.001 * i, 3) for i, p in enumerate(only or scenario.claims)}
    return held_rates


def test_table_rows_arguments_and_progress(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(power, "held_rates", fake_held_rates(calls))
    table = power.table(2, 0.004, 9, "test")
    runs = [(s, e) for s in power.SCENARIOS for e in (power.PAPER, *s.nulls)]
    assert calls == [(s.exp, e, 2, 0.004, 9, "test", () if e == power.PAPER else s.nulls[e]) for s, e in runs]
    assert capsys.readouterr().err == "".join(f"{s.exp}: {e}\n" for s, e in runs)
    rows = [{"claim": p, "effect": e, "held": round(0.01 * (k + 1) + 0.001 * i, 3)}
            for k, (s, e) in enumerate(runs) for i, p in enumerate(s.nulls[e] if e != power.PAPER else s.claims)]
    assert list(table.columns) == ["claim", "effect", "held"] and table.to_dict("records") == rows
    assert table.index.equals(pd.RangeIndex(len(rows)))
    assert table.iloc[0].tolist() == ["MNIST: ConvNet", "paper", 0.01]
    assert table.iloc[-1].tolist() == [power.REPETITION, "no repetition cost", 0.28]


def test_main_prints_the_table_of_its_arguments(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    calls = []
    monkeypatch.setattr(power, "held_rates", fake_held_rates(calls))
    assert power.main(["--replicates", "2", "--noise", "2.5", "--seeds", "3", "--select", "test"]) == 0
    assert {c[2:6] for c in calls} == {(2, 0.025, 3, "test")}  # the noise in points, passed as a fraction
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["claim", "effect", "held"] and out.endswith("\n")
    assert lines[1].split() == ["MNIST:", "ConvNet", "paper", "0.010"]  # held, printed with the column's digits
    assert lines[-1].split()[-4:] == ["no", "repetition", "cost", "0.280"]
    assert len(lines) == 1 + sum(len(s.claims) + sum(map(len, s.nulls.values())) for s in power.SCENARIOS)
    calls.clear()
    assert power.main(["--noise", "1"]) == 0 and {c[2:6] for c in calls} == {(3, 0.01, 100, "val")}
    calls.clear()
    assert power.main(["--replicates", "1", "--seeds", "1", "--noise", "0.5"]) == 0
    assert {c[2:6] for c in calls} == {(1, 0.005, 1, "val")}


@pytest.mark.parametrize("argv,message", [
    (["--replicates", "0"], "error: --replicates=0 is invalid: it must be ≥ 1\n"),
    (["--replicates", "-2"], "error: --replicates=-2 is invalid: it must be ≥ 1\n"),
    (["--seeds", "0"], "error: --seeds=0 is invalid: it must be ≥ 1\n"),
    (["--noise", "0"], "error: --noise=0.0 is invalid: it must be > 0 points\n"),
    (["--noise", "nan"], "error: --noise=nan is invalid: it must be > 0 points\n"),
])
def test_main_rejects(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert power.main(argv) == 2
    out = capsys.readouterr()
    assert out.err == message and out.out == ""


def test_main_help_is_the_docstrings_first_paragraph(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        power.main(["-h"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    first = " ".join(power.__doc__.split("\n\n")[0].split())
    assert first.endswith("at a given replicate count and noise.")
    assert f"[--select {{val,test}}] {first} options:" in text
    assert "A scenario is" not in text and "python -m analysis.power [--replicates 3]" not in text
