"""Null and power tests of every claim, on studies simulated by analysis.power (no Ray, no training):
with no effect, or an effect on the edge of the claim's band, a claim reads "held" in at most 10% of 100
simulated studies; with the paper's effect, in at least 80%, at the paper preset's 3 replicates.

The simulated noise: each trial's test (top-5 for ImageNet) and validation accuracy is its true accuracy
plus independent Gaussian noise, NOISE = 1 point per replicate, and every learning rate of a grid is
equally good (except in Figure 12's), so that choosing one on the test set would inflate the chosen
accuracy most. The nulls use NOISE. The paper's effect uses NOISE too, except for the claims in
PAPER_NOISE: there the paper's value lies so close to the band's edge (1 point above 90%, 85%, 70%;
drops or gaps of 0–2 points against 2–5-point bands at many cells) that 3 replicates, whose 95% t interval
is ± 4.30·σ/√3, resolve it only at that smaller replicate noise (docs/usage.md gives the rates at 1 point).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import power
from tests.conftest import REPO

NOISE = 0.01
REPLICATES = yaml.safe_load((REPO / "study/conf/preset/paper.yaml").read_text())["replicates"]  # 3
SEEDS = 100
PAPER_NOISE = {"MNIST: ConvNet": 0.0025, "CIFAR-10: ResNet": 0.0025, "ImageNet": 0.0025,  # 1 point above the edge
               "Novel": 0.003,  # a ±2-point band at each of 5 α
               "Structured": 0.005, "With H_α": 0.005, "White-noise": 0.005,  # 0–2-point drops, 3–5-point bands
               "The optimal": 0.005}  # the clean optimum, 1, beats 0.5 by 0.45 points only
NULLS = [(scenario, effect, prefix) for scenario in power.SCENARIOS for effect, prefixes in scenario.nulls.items()
         for prefix in prefixes]
PAPER = [(scenario, prefix) for scenario in power.SCENARIOS for prefix in scenario.claims]


@functools.cache
def rates(exp: str, effect: str, noise: float, select: str = "val", only: tuple[str, ...] = ()) -> dict[str, float]:
    """held_rates of one scenario and effect, computed once for every test that reads them."""
    scenario = next(s for s in power.SCENARIOS if s.exp == exp)
    return power.held_rates(scenario, effect, REPLICATES, noise, SEEDS, select, only=only)


def test_every_claim_has_a_null_and_the_paper_effect() -> None:
    assert len({p for _, p in PAPER}) == len(PAPER) == len(power.claims.CLAIMS)  # each claim in one scenario
    assert {power.claim(p).claim for _, p in PAPER} == {c.claim for c in power.claims.CLAIMS}
    assert {p for _, _, p in NULLS} == {p for _, p in PAPER}


@pytest.mark.parametrize("scenario,effect,prefix", NULLS, ids=[f"{p}: {e}" for _, e, p in NULLS])
def test_no_effect_is_rarely_held(scenario: power.Scenario, effect: str, prefix: str) -> None:
    held = rates(scenario.exp, effect, NOISE, only=scenario.nulls[effect])[prefix]
    assert held <= 0.10, f"{prefix} under '{effect}': held in {held:.0%} of {SEEDS} studies"


@pytest.mark.parametrize("scenario,prefix", PAPER, ids=[p for _, p in PAPER])
def test_the_papers_effect_is_usually_held(scenario: power.Scenario, prefix: str) -> None:
    noise = PAPER_NOISE.get(prefix, NOISE)
    same = tuple(p for p in scenario.claims if PAPER_NOISE.get(p, NOISE) == noise)  # one simulation serves them all
    held = rates(scenario.exp, power.PAPER, noise, only=same)[prefix]
    assert held >= 0.80, f"{prefix} under the paper's effect: held in {held:.0%} of {SEEDS} studies"


def test_selected_on_test_with_no_effect_is_rarely_held() -> None:
    """The issue's case: ConvNet at 89.5% at every learning rate, each chosen on the test set (data.n_val=0):
    the best of 4 test accuracies overstates it, but its interval still rarely clears 90%."""
    scenario = power.Scenario("uniform_mnist", power.SCENARIOS[0].grid,
                              lambda g, e: power.uniform_mnist(g, e) - 0.005 * (g["arch"] == "conv4"),
                              {"ConvNet at 90%": ("MNIST: ConvNet",)})
    held = power.held_rates(scenario, "ConvNet at 90%", REPLICATES, NOISE, SEEDS, "test", only=("MNIST: ConvNet",))
    assert held["MNIST: ConvNet"] <= 0.10


def test_cli_prints_the_rates_and_rejects_bad_input(capsys: pytest.CaptureFixture) -> None:
    assert power.main(["--seeds", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["claim", "effect", "held"] and len(out) == 1 + len(PAPER) + len(NULLS)
    for argv, message in ((["--seeds", "0"], "error: --seeds=0 is invalid: it must be ≥ 1\n"),
                          (["--noise", "-1"], "error: --noise=-1.0 is invalid: it must be > 0 points\n")):
        assert power.main(argv) == 2 and capsys.readouterr().err == message


def truth(exp: str, effect: str, **where: object) -> list[float]:
    """The scenario's true accuracy of the grid rows matching `where`, in grid order, rounded to 1e-9."""
    scenario = next(s for s in power.SCENARIOS if s.exp == exp)
    rows = scenario.rows()
    acc = np.asarray(scenario.truth(rows, effect), float)
    keep = np.ones(len(rows), bool)
    for column, value in where.items():
        keep &= (rows[column] == value).to_numpy()
    assert keep.any(), where
    return [round(a, 9) for a in dict.fromkeys(acc[keep])]  # one value per distinct accuracy (lr repeats them)


def test_uniform_mnist_truth_is_figure_1() -> None:
    paper = {"conv4": 0.91, "mlp4": 0.80, "mlp2": 0.75, "mlp1": 0.70, "perceptron": 0.40}  # α = 100; α = 10: +5
    for arch, acc in paper.items():
        assert truth("uniform_mnist", power.PAPER, arch=arch, alpha=100) == [acc]
        assert truth("uniform_mnist", power.PAPER, arch=arch, alpha=10) == [round(acc + 0.05, 9)]
    for effect, arch, acc in (("ConvNet at 90%", "conv4", 0.90), ("perceptron at 30%", "perceptron", 0.30),
                              ("ConvNet = best MLP", "conv4", 0.80)):
        assert truth("uniform_mnist", effect, arch=arch, alpha=100) == [acc]
        assert truth("uniform_mnist", effect, arch="mlp1", alpha=100) == [0.70]


def test_level_is_a_point_above_the_edge_or_on_it() -> None:
    assert power.level(0.85, power.PAPER) == pytest.approx(0.86, abs=1e-12)
    assert power.level(0.85, "ResNet at 85%") == 0.85
    assert truth("uniform_cifar10", power.PAPER, arch="resnet101", alpha=10) == [0.86]
    assert truth("uniform_cifar10", "ResNet at 85%", arch="resnet101", alpha=0) == [0.9]
    assert truth("uniform_cifar10", power.PAPER, arch="conv6", alpha=10) == [0.7]


def test_structured_truth() -> None:
    for order in ("confusing", "reverse", "random"):
        assert truth("structured", power.PAPER, order=order, delta=0.4) == [0.94]  # 2 points · 0.4 / 0.8
        assert truth("structured", power.PAPER, order=order, delta=0.8) == [0.93]
        assert truth("structured", power.PAPER, order=order, delta=0.9) == [0.85]
        assert truth("structured", power.PAPER, order=order, delta=1.0) == [0.35]
    null = "drop 5 points at δ = 0.8"
    assert truth("structured", null, order="confusing", delta=0.8) == [0.90]
    assert truth("structured", null, order="confusing", delta=0.4) == [0.925]
    assert truth("structured", null, order="reverse", delta=0.8) == [0.93]
    assert truth("structured", null, order="confusing", delta=0.9) == [0.85]


def test_noise_source_truth() -> None:
    for alpha in (1, 10):
        assert truth("noise_source", power.PAPER, source="same", alpha=alpha) == [round(0.8 - 0.03 * alpha, 9)]
        assert truth("noise_source", power.PAPER, source="cifar100", alpha=alpha) == [round(0.8 - 0.015 * alpha, 9)]
        assert truth("noise_source", power.PAPER, source="white", alpha=alpha) == [0.8]
        assert truth("noise_source", "ratio 0.75", source="cifar100", alpha=alpha) == [round(0.8 - 0.0225 * alpha, 9)]
        assert truth("noise_source", "white drops 3 points", source="white", alpha=alpha) == [round(0.8 - 0.003 * alpha, 9)]
        assert truth("noise_source", "white drops 3 points", source="same", alpha=alpha) == [round(0.8 - 0.03 * alpha, 9)]


def test_repeated_truth() -> None:
    for source in ("same", "novel"):
        for alpha in (0, 1, 20):
            assert truth("repeated", power.PAPER, source=source, alpha=alpha) == [round(0.97 - 0.002 * alpha, 9)]
    worse = "novel 2 points worse"
    assert truth("repeated", worse, source="novel", alpha=0) == [0.97]
    assert truth("repeated", worse, source="novel", alpha=1) == [0.948]
    assert truth("repeated", worse, source="same", alpha=1) == [0.968]


def test_batchsize_truth() -> None:
    for b, gain in ((32, -0.02), (64, -0.01), (128, 0.0), (256, 0.01)):  # a point per doubling, at α > 0
        assert truth("batchsize", power.PAPER, loss="ce", batch_size=b, alpha=5) == [round(0.98 + gain, 9)]
        assert truth("batchsize", power.PAPER, loss="ce", batch_size=b, alpha=0) == [0.99]
        assert truth("batchsize", "no batch effect", loss="ce", batch_size=b, alpha=5) == [0.98]
    for alpha in (0, 5, 100):
        assert truth("batchsize", power.PAPER, loss="h_alpha", alpha=alpha) == [0.98]
        assert truth("batchsize", "H_α falls 3 points", loss="h_alpha", alpha=alpha) == [0.98 if alpha == 0 else 0.95]
    g = pd.DataFrame({"alpha": [1, 1], "batch_size": [256, 128], "loss": ["ce", "h_alpha"]})  # every α > 0
    assert power.batchsize(g, power.PAPER).round(9).tolist() == [0.998, 0.98]
    assert power.batchsize(g, "H_α falls 3 points").round(9).tolist() == [0.988, 0.95]


def test_learning_rate_truth() -> None:
    # log10 of the optimum: 0 at α = 0, -1.3 at α = 10 (lr 0.05); 5 points per squared decade away from it
    assert truth("learning_rate", power.PAPER, alpha=0, lr=1.0) == [0.8]
    assert truth("learning_rate", power.PAPER, alpha=0, lr=0.1) == [0.75]
    assert truth("learning_rate", power.PAPER, alpha=10, lr=1.0) == [round(0.6 - 0.05 * 1.3 ** 2, 9)]
    assert truth("learning_rate", power.PAPER, alpha=1, lr=1.0) == [
        round(0.78 - 0.05 * (1.3 * np.log10(2) / np.log10(11)) ** 2, 9)]
    assert truth("learning_rate", "clean optimum 0.1", alpha=0, lr=0.1) == [0.8]
    assert truth("learning_rate", "clean optimum 0.1", alpha=10, lr=0.01) == [round(0.6 - 0.05 * 0.3 ** 2, 9)]
    for alpha in (0, 4, 10):
        assert truth("learning_rate", "no optimum", alpha=alpha) == [round(0.8 - 0.02 * alpha, 9)]


def test_human_noise_rows_and_truth() -> None:
    rows = next(s for s in power.SCENARIOS if s.exp == "human_noise").rows()
    assert rows.index.tolist() == list(range(len(rows))) and "index" not in rows and "kind" not in rows
    clean = rows[rows["alpha"] == 0]  # uniform noise only: the clean set every kind shares
    assert len(clean) == 2 * len(power.LRS) and clean[["matrix", "labels"]].isna().all().all()
    assert (clean["draw"] == "copy").all()
    human = rows[rows["alpha"] == 5]
    assert sorted(map(tuple, human[["matrix", "labels", "draw"]].fillna("-").drop_duplicates().to_numpy())) == [
        ("-", "-", "copy"), ("-", "cifar10n:random", "image"),
        ("cifar10n:random", "-", "copy"), ("cifar10n:random", "-", "image")]

    def at(effect: str, alpha: int, matrix: object, labels: object, draw: str) -> list[float]:
        keep = (rows["alpha"] == alpha) & (rows["draw"] == draw) & (rows["matrix"].notna() == (matrix is not None)) \
            & (rows["labels"].notna() == (labels is not None))
        return sorted(set(np.round(power.human_noise(rows[keep], effect), 9)))

    m, tied = "cifar10n:random", "image"
    for effect, matrix_tied, labels_tied in ((power.PAPER, 0.02, 0.04), ("no per-image effect", 0.02, 0.02),
                                             ("no repetition cost", 0.0, 0.02)):
        assert at(effect, 2, None, None, "copy") == [0.75]  # uniform: 5 points per unit α
        assert at(effect, 10, m, None, "copy") == [0.75]  # fresh draws from the matrix: half a point per unit α
        assert at(effect, 10, m, None, tied) == [round(0.75 - matrix_tied, 9)]
        assert at(effect, 10, None, m, tied) == [round(0.75 - labels_tied, 9)]


@pytest.mark.slow  # every scenario simulated (6 s); table's rows are pinned fast in test_power_scenarios.py
def test_table_rows_are_each_scenarios_held_rates(capsys: pytest.CaptureFixture) -> None:
    for select in ("val", "test"):
        table = power.table(3, 0.01, 10, select)
        assert capsys.readouterr().err.splitlines() == [f"{s.exp}: {e}" for s in power.SCENARIOS
                                                        for e in (power.PAPER, *s.nulls)]
        expected = [{"claim": p, "effect": e, "held": r} for s in power.SCENARIOS for e in (power.PAPER, *s.nulls)
                    for p, r in power.held_rates(s, e, 3, 0.01, 10, select,
                                                 only=() if e == power.PAPER else s.nulls[e]).items()]
        assert table.to_dict("records") == expected
        assert 0 < table["held"].mean() < 1 and table["held"].nunique() > 2  # rates that tell effects apart


def test_cli_help_names_every_option_and_its_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        power.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: python -m analysis.power [-h] [--replicates REPLICATES] [--noise NOISE] "
                           "[--seeds SEEDS] [--select {val,test}] How often each claim reads \"held\" on simulated "
                           "studies whose truth is known: rarely under no effect (or an effect on the band's edge), "
                           "usually under the paper's effect, at a given replicate count and noise. options: ")
    for option in ("--replicates REPLICATES replicates of every config in a simulated study (default: 3)",
                   "--noise NOISE accuracy noise per replicate, in points (default: 1.0)",
                   "--seeds SEEDS simulated studies per effect (default: 100)",
                   "--select {val,test} the split the LR is chosen on (default: val)"):
        assert option in text


def test_cli_passes_its_arguments_and_rejects_each_bad_one(capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    table = power.table
    monkeypatch.setattr(power, "table", lambda *args: calls.append(args) or table(*args))  # records, then the real one
    assert power.main(["--noise", "2.5", "--seeds", "1"]) == 0 and calls == [(3, 0.025, 1, "val")]  # points -> fraction
    capsys.readouterr()
    assert power.main(["--replicates", "1", "--seeds", "4", "--noise", "0.5", "--select", "val"]) == 0
    out = capsys.readouterr().out
    assert out == power.table(1, 0.005, 4, "val").to_string(index=False) + "\n"
    capsys.readouterr()  # the table's progress lines
    for argv, message in ((["--replicates", "0"], "error: --replicates=0 is invalid: it must be ≥ 1\n"),
                          (["--noise", "0"], "error: --noise=0.0 is invalid: it must be > 0 points\n")):
        assert power.main(argv) == 2 and capsys.readouterr().err == message
    with pytest.raises(SystemExit) as exit_:
        power.main(["--select", "train"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --select: invalid choice: 'train'" in err and "val" in err


def test_dataset_size_truth() -> None:
    """n90(α) = 200·α clean labels for 90% (α = 0: 100), 30 points per decade, at most 99%."""
    for alpha, n, acc in ((0, 100, 0.9), (0, 1000, 0.99), (10, 2000, 0.9), (10, 200, 0.6), (50, 100, 0.3), (1, 200, 0.9), (1, 100, 0.809691001)):  # 0.9 + 0.3 log10(1/2)
        assert truth("dataset_size", power.PAPER, alpha=alpha, n_clean=n) == [acc], (alpha, n)
    assert truth("dataset_size", "twice the paper's counts", alpha=10, n_clean=2000) == [0.809691001]  # n90 = 4,000
    assert truth("dataset_size", "twice the paper's counts", alpha=0, n_clean=100) == [0.9]
    for effect, p in (("p = 0.85", 0.85), ("p = 1.5", 1.5)):  # n90(10) stays 2,000; n90(50) moves with p
        assert truth("dataset_size", effect, alpha=10, n_clean=2000) == [0.9]
        n90 = 2000 * 5 ** p
        assert truth("dataset_size", effect, alpha=50, n_clean=10000) == [round(0.9 + 0.3 * np.log10(10000 / n90), 9)]


def test_rows_give_every_scenario_an_architecture_and_batch_size() -> None:
    for scenario in power.SCENARIOS:
        rows = scenario.rows()
        assert rows.index.equals(pd.RangeIndex(len(rows))), scenario.exp
        assert {"arch", "batch_size"} <= set(rows) and rows.notna()[["arch", "batch_size"]].all().all()
    structured = next(s for s in power.SCENARIOS if s.exp == "structured").rows()
    assert (structured["arch"] == "conv4").all() and (structured["batch_size"] == 128).all()
    assert len(structured) == 11 * 3 * len(power.LRS)


def test_simulate_adds_independent_noise_and_varies_every_seed() -> None:
    imagenet = next(s for s in power.SCENARIOS if s.exp == "uniform_imagenet")
    grid = imagenet.rows()
    t = power.simulate(imagenet, power.PAPER, 2, 0.0, 3, "val", np.random.default_rng(0))
    truth_ = np.tile(np.asarray(imagenet.truth(grid, power.PAPER), float), 6)
    assert len(t) == 6 * len(grid) and (t["status"] == "ok").all()
    assert np.allclose(t["test_top5"], truth_) and np.allclose(t["test_acc"], truth_ - 0.2)  # top-5 is the truth
    assert np.allclose(t["val_acc"], truth_)
    for column in ("seed", "noise_seed", "order_seed", "subset_seed"):  # replicates differ in every seed
        assert t[column].tolist() == [0] * len(grid) + [1000] * len(grid) + [0] * len(grid) + [1000] * len(grid) \
            + [0] * len(grid) + [1000] * len(grid)
    assert t["study"].tolist() == [i for i in range(3) for _ in range(2 * len(grid))]
    mnist = power.SCENARIOS[0]
    t = power.simulate(mnist, power.PAPER, 1, 0.0, 1, "test", np.random.default_rng(0))
    truth_ = np.asarray(mnist.truth(mnist.rows(), power.PAPER), float)
    assert np.allclose(t["test_acc"], truth_) and np.allclose(t["test_top5"], np.minimum(truth_ + 0.05, 1))
    assert t["val_acc"].isna().all()  # chosen on test: no validation accuracy
    t = power.simulate(mnist, power.PAPER, 3, 1.0, 5, "val", np.random.default_rng(0))  # 100 points of noise: clipped
    for column in ("test_acc", "test_top5", "val_acc"):
        assert t[column].between(0, 1).all() and (t[column] == 1).any(), column
    assert (t["test_acc"] == 0).any() and (t["val_acc"] == 0).any()
    gap = t["val_acc"] - t["test_acc"]  # each drawn on its own, per row
    assert gap.nunique() > len(t) // 2


def test_held_rates_defaults_and_claims() -> None:
    cifar = next(s for s in power.SCENARIOS if s.exp == "uniform_cifar10")
    assert power.held_rates(cifar, power.PAPER) == power.held_rates(cifar, power.PAPER, 3, 0.01, 100, "val", 0)
    assert list(power.held_rates(power.SCENARIOS[0], power.PAPER, seeds=2)) == list(power.SCENARIOS[0].claims)
