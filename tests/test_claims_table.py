"""Every claim of analysis/claims.py on synthetic trials whose 95% intervals lie inside, across and outside its
band: the verdict (held, contradicted, inconclusive where the interval straddles an edge or a bound settles
nothing, not run where nothing was measured), the measured text (the interval, its basis, the selection
split), one replicate against the noise floor, and the interval arithmetic of analysis/intervals.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rundir
from analysis import bands, claims, clean_counts
from analysis.intervals import NOISE_FLOOR, Cells, Interval, number, t_at
from analysis.summary import summarize, t975

BASE = {"alpha": 0, "arch": "conv4", "lr": 0.1, "batch_size": 128, "seed": 0, "noise_seed": 0}
CI_HALF = 0.005  # each cell's 95% half-width with 3 replicates: 0.5 points
SPREAD = CI_HALF * math.sqrt(3) / t975(2)  # the replicates' std that gives it: accuracies acc - SPREAD, acc, acc + SPREAD


def trials(rows: list[dict], replicates: int = 3) -> pd.DataFrame:
    """A trials.csv-shaped frame (rundir's COLUMNS, the given extra config columns, then TRIAL_METRICS): each
    row gives its config values and `acc` (test_acc), optionally `top5`, `val`, `status` and `spread`, and
    becomes `replicates` trials (seeds 0, 1000, ...) around acc with mean acc and sample std `spread` (one
    replicate: acc itself). A row that names its `seed` is one trial as given."""
    out = []
    for row in rows:
        single = "seed" in row or replicates == 1
        row = {**BASE, **row}
        acc, top5, val, status = row.pop("acc"), row.pop("top5", None), row.pop("val", np.nan), row.pop("status", "ok")
        top5 = min(1.0, acc + 0.05) if top5 is None else top5
        z = np.linspace(-1, 1, replicates)
        shifts = [0.0] if single else row.pop("spread", SPREAD) * z / z.std(ddof=1)
        row.pop("spread", None)
        for r, shift in enumerate(shifts):
            seeds = {} if single else {"seed": row["seed"] + 1000 * r, "noise_seed": row["noise_seed"] + 1000 * r}
            out.append({**row, **seeds, "trial_id": len(out), "group": len(out), "status": status, "epochs": 1,
                        "test_acc": acc + shift, "best_test_acc": acc + shift, "test_top5": top5 + shift,
                        "best_test_top5": top5 + shift, "train_loss": 1.0, "images_per_s": 1.0, "node_id": "n",
                        "val_acc": val + shift, "best_val_acc": val + shift})
    frame = pd.DataFrame(out)
    assert set(rundir.TRIAL_METRICS) <= set(frame.columns)
    return frame


def claim(prefix: str) -> bands.Claim:
    (found,) = [c for c in claims.CLAIMS if c.claim.startswith(prefix)]
    return found


def evaluated(prefix: str, rows: list[dict], column: str, replicates: int = 3) -> str:
    """One column of the claims table row of the claim starting with `prefix`, through evaluate_runs, on a
    run that drew its figure."""
    t = trials(rows, replicates)
    c = claim(prefix)
    table = claims.evaluate_runs([(Path("run"), {"exp": "x", "preset": "paper", "figures": [c.figure]}, t, summarize(t))])
    (value,) = table.loc[table["claim"] == c.claim, column]
    return value


def verdict(prefix: str, rows: list[dict], replicates: int = 3) -> str:
    return evaluated(prefix, rows, "verdict", replicates)


def with_worse_lr(rows: list[dict]) -> list[dict]:
    """Each row and a second learning rate 0.2 worse: the summary must pick the better one."""
    return [*rows, *({**r, "lr": 0.01, "acc": r["acc"] - 0.2, "top5": r.get("top5", r["acc"] + 0.05) - 0.2} for r in rows)]


CONV = "MNIST: ConvNet"
PERCEPTRON = "MNIST: perceptron"
ORDERED = "MNIST: larger architectures"
RESNET = "CIFAR-10: ResNet"
TOP5 = "ImageNet: ResNet-18"
STRUCTURED = "Structured noise"
HALF = "CIFAR-100 noise"
WHITE = "White-noise"
NOVEL = "Novel vs repeated"
ALPHA10 = "α = 10 needs"
ALPHA50 = "α = 50 needs"
GROWTH = "Clean labels needed grow"
BATCH = "Larger batches"
H_ALPHA = "With H_α"
LR = "The optimal learning rate"


def test_every_claim_is_in_this_table_and_states_its_band() -> None:
    prefixes = [CONV, PERCEPTRON, ORDERED, RESNET, TOP5, STRUCTURED, HALF, WHITE, NOVEL, ALPHA10, ALPHA50, GROWTH,
                BATCH, H_ALPHA, LR]
    assert sorted(claim(p).claim for p in prefixes) == sorted(c.claim for c in claims.CLAIMS[:15])
    assert [c.figure for c in claims.CLAIMS] == ["fig1"] * 3 + ["fig2", "fig3", "fig5", "fig6", "fig6", "fig7", "fig8",
                                                           "fig8", "fig9", "fig11", "fig11", "fig12", "human", "human"]
    assert [claim(p).claim for p in (CONV, PERCEPTRON, RESNET, TOP5, WHITE)] == [
        "MNIST: ConvNet > 90% at α = 100", "MNIST: perceptron ≈ 40% at α = 100 (30–50%)",
        "CIFAR-10: ResNet ≥ 85% at α = 10", "ImageNet: ResNet-18 ≥ 70% top-5 at α = 5",
        "White-noise examples do not appreciably lower accuracy (drop ≤ 3 points)"]
    assert "(within 2x)" in claim(ALPHA10).claim and "lower end ≥ 0.85, upper end ≤ 1.5" in claim(GROWTH).claim
    assert "within ±2 points at every α" in claim(NOVEL).claim and "> 0 points per doubling" in claim(BATCH).claim


def fig1(conv: float, mlp: float = 0.8, perceptron: float = 0.4) -> list[dict]:
    """α = 100 (conv2 weaker than conv4), and α = 10 in the opposite order: only the largest α counts."""
    return with_worse_lr([{"alpha": 100, "arch": "conv4", "acc": conv}, {"alpha": 100, "arch": "conv2", "acc": 0.3},
                          {"alpha": 100, "arch": "mlp1", "acc": mlp}, {"alpha": 100, "arch": "perceptron", "acc": perceptron},
                          {"alpha": 10, "arch": "conv4", "acc": 0.2}, {"alpha": 10, "arch": "perceptron", "acc": 0.99}])


@pytest.mark.parametrize("rows,expected", [
    (fig1(0.906), "held"),  # 95% CI 90.1 to 91.1%
    (fig1(0.904), "inconclusive"),  # 89.9 to 90.9%: straddles the edge
    (fig1(0.895), "contradicted"),  # 89.0 to 90.0%: strict, so an interval ending at 90% lies outside
    ([{"alpha": 10, "arch": "conv4", "acc": 0.99}, {"alpha": 100, "arch": "mlp1", "acc": 0.99}], "not run"),
], ids=["0.906", "0.904", "0.895", "no-conv-at-100"])
def test_fig1_convnet_above_90(rows: list[dict], expected: str) -> None:
    assert verdict(CONV, rows) == expected


@pytest.mark.parametrize("acc,expected", [(0.306, "held"), (0.494, "held"), (0.303, "inconclusive"),
                                          (0.498, "inconclusive"), (0.294, "contradicted"), (0.506, "contradicted")])
def test_fig1_perceptron_about_40(acc: float, expected: str) -> None:
    assert verdict(PERCEPTRON, fig1(0.95, perceptron=acc)) == expected


def test_fig1_perceptron_not_run_without_it_at_100() -> None:
    assert verdict(PERCEPTRON, [{"alpha": 10, "arch": "perceptron", "acc": 0.4}]) == "not run"


@pytest.mark.parametrize("conv,mlp,perceptron,expected", [
    (0.9, 0.8, 0.4, "held"), (0.8, 0.8, 0.4, "inconclusive"),  # a tie: its gap's interval straddles 0
    (0.79, 0.8, 0.4, "contradicted"), (0.9, 0.39, 0.4, "contradicted")])
def test_fig1_architectures_ordered_at_the_largest_alpha(conv: float, mlp: float, perceptron: float, expected: str) -> None:
    assert verdict(ORDERED, fig1(conv, mlp, perceptron)) == expected


def test_fig1_order_not_run_without_every_family() -> None:
    assert verdict(ORDERED, [r for r in fig1(0.9) if r["arch"] != "mlp1"]) == "not run"


@pytest.mark.parametrize("rows,expected", [
    ([{"alpha": 10, "arch": "resnet18", "acc": 0.855}], "held"),  # the bound is inclusive: 85.0 to 86.0%
    ([{"alpha": 10, "arch": "resnet18", "acc": 0.85}], "inconclusive"),
    ([{"alpha": 10, "arch": "resnet18", "acc": 0.844}], "contradicted"),
    ([{"alpha": 10, "arch": "resnet18", "acc": 0.5}, {"alpha": 10, "arch": "resnet101", "acc": 0.86}], "held"),
    ([{"alpha": 5, "arch": "resnet18", "acc": 0.99}, {"alpha": 10, "arch": "conv4", "acc": 0.99}], "not run"),
], ids=["0.855", "0.850", "0.844", "resnet101", "none-at-10"])
def test_fig2_resnet_at_alpha_10(rows: list[dict], expected: str) -> None:
    assert verdict(RESNET, with_worse_lr(rows)) == expected


@pytest.mark.parametrize("rows,expected", [
    ([{"alpha": 5, "arch": "resnet18", "acc": 0.3, "top5": 0.705}], "held"),  # top-5, not top-1
    ([{"alpha": 5, "arch": "resnet18", "acc": 0.9, "top5": 0.694}], "contradicted"),
    ([{"alpha": 5, "arch": "conv4", "acc": 0.9, "top5": 0.99}, {"alpha": 0, "arch": "resnet18", "acc": 0.9, "top5": 0.99}],
     "not run"),
], ids=["top5-0.705", "top5-0.694", "no-resnet18-at-5"])
def test_fig3_top5_at_alpha_5(rows: list[dict], expected: str) -> None:
    assert verdict(TOP5, rows) == expected


def fig5(drop: float, deltas: tuple[float, ...] = (0.0, 0.5, 0.9, 1.0), base: tuple[float, float] = (0.9, 0.9)) -> list[dict]:
    """δ = 0 at `base` in the two orders (mean 90%); at δ = 0.5 the confusing order drops `drop` (the worst),
    random less; δ = 0.9 and δ = 1 collapse (the claim is for δ < 0.9)."""
    acc = {0.0: base, 0.25: (0.9 - drop, 0.9), 0.5: (0.9 - drop, 0.895), 0.9: (0.5, 0.5), 1.0: (0.2, 0.3)}
    return [{"alpha": 20, "delta": d, "order": order, "acc": acc[d][i]} for d in deltas
            for i, order in enumerate(("confusing", "random"))]


@pytest.mark.parametrize("rows,expected", [(fig5(0.04), "held"), (fig5(0.05), "inconclusive"), (fig5(0.06), "contradicted"),
                                           (fig5(0.04, (0.0, 0.5)), "held"),  # δ up to 0.5 is enough to measure
                                           (fig5(0.01, base=(0.84, 0.96)), "held"),  # the baseline is δ = 0's mean
                                           (fig5(0.3, (0.0, 0.25)), "not run")],  # no δ ≥ 0.5 measured
                         ids=["0.04", "0.05", "0.06", "up-to-0.5", "spread-baseline", "small-deltas"])
def test_fig5_structured_drop_below_delta_09(rows: list[dict], expected: str) -> None:
    assert verdict(STRUCTURED, rows) == expected


def fig6(same: float = 0.2, cifar100: float | None = 0.1, white: float | None = 0.01) -> list[dict]:
    """Clean 90% at α = 0; at α = 10 each source drops by the given amount (α = 5 drops nothing: only the top α counts)."""
    drops = {"same": same, "cifar100": cifar100, "white": white}
    sources = [s for s, d in drops.items() if d is not None]
    return [*({"alpha": 0, "source": s, "acc": 0.9} for s in sources),
            *({"alpha": 5, "source": s, "acc": 0.9} for s in sources),
            *({"alpha": 10, "source": s, "acc": 0.9 - drops[s]} for s in sources)]


@pytest.mark.parametrize("rows,expected", [
    (fig6(0.2, 0.2 * 0.7), "held"), (fig6(0.2, 0.2 * 0.3), "held"), (fig6(0.2, 0.2 * 0.74), "inconclusive"),
    (fig6(0.2, 0.2 * 0.8), "contradicted"), (fig6(0.2, 0.2 * 0.2), "contradicted"),
    (fig6(0.0, 0.05), "inconclusive"),  # no drop to halve, but not clearly none either: its interval straddles 0
    (fig6(-0.01, -0.005), "contradicted"),  # the premise fails: a gain, no drop to halve
    (fig6(cifar100=None), "not run"),
], ids=["0.7", "0.3", "0.74", "0.8", "0.2", "no-drop", "a-gain", "no-cifar100"])
def test_fig6_cifar100_half_drop(rows: list[dict], expected: str) -> None:
    assert verdict(HALF, rows) == expected


@pytest.mark.parametrize("rows,expected", [(fig6(white=0.02), "held"), (fig6(white=0.03), "inconclusive"),
                                           (fig6(white=0.04), "contradicted"), (fig6(white=None), "not run")],
                         ids=["0.02", "0.03", "0.04", "no-white"])
def test_fig6_white_noise_no_drop(rows: list[dict], expected: str) -> None:
    assert verdict(WHITE, rows) == expected


def fig7(gap1: float, gap10: float) -> list[dict]:
    """Repeated minus novel accuracy is gap1 at α = 1 and gap10 at α = 10; at α = 0 a large gap the claim ignores."""
    return [{"alpha": 0, "source": "same", "acc": 0.9}, {"alpha": 0, "source": "novel", "acc": 0.5},
            {"alpha": 1, "source": "same", "acc": 0.8}, {"alpha": 1, "source": "novel", "acc": 0.8 - gap1},
            {"alpha": 10, "source": "same", "acc": 0.7}, {"alpha": 10, "source": "novel", "acc": 0.7 - gap10}]


@pytest.mark.parametrize("rows,expected", [
    (fig7(0.01, -0.01), "held"), (fig7(0.015, 0.02), "inconclusive"), (fig7(0.03, 0.03), "contradicted"),
    (fig7(0.03, -0.03), "contradicted"),  # gaps of opposite sign do not cancel
    (fig7(0.0, 0.03), "contradicted"),  # every α > 0 must be within the band
    ([r for r in fig7(0.0, 0.0) if r["source"] == "same"], "not run"),
], ids=["0.01", "0.02", "0.03", "opposite-signs", "one-alpha-out", "no-novel"])
def test_fig7_novel_like_repeated(rows: list[dict], expected: str) -> None:
    assert verdict(NOVEL, rows) == expected


def measured(prefix: str, rows: list[dict], replicates: int = 3) -> str:
    return evaluated(prefix, rows, "measured", replicates)


VAL = "; selected on val (val_acc, the held-out split)"
TEST = "; selected on test (test_acc: no held-out split, data.n_val=0; the test set both chose and scored)"


def test_measured_values_state_the_interval_its_basis_and_the_split() -> None:
    assert measured(CONV, fig1(0.95)) == f"conv4: 95.0% (95% CI 94.5 to 95.5%, 3 replicates){TEST}"
    assert measured(CONV, [{**r, "val": r["acc"]} for r in fig1(0.95)]) == f"conv4: 95.0% (95% CI 94.5 to 95.5%, 3 replicates){VAL}"
    assert measured(CONV, fig1(0.95), replicates=1) == (
        f"conv4: 95.0% (95% CI 93.0 to 97.0%, one replicate: each accuracy ± the 2-point noise floor){TEST}")
    assert measured(WHITE, fig6(white=0.025)).startswith("α=10: drop +2.5 points (95% CI +2.1 to +2.9 points, 3 replicates)")
    assert measured(HALF, fig6(0.2, 0.1)).startswith("α=10: CIFAR-100 drop / CIFAR-10 drop = 0.50 (95% CI 0.48 to 0.52, "
                                                     "3 replicates) (10.0 / 20.0 points)")
    assert measured(ORDERED, fig1(0.95)).startswith("α=100: conv4 95.0%, mlp1 80.0%, perceptron 40.0%; ConvNet − MLP +15.0 "
                                                    "points (95% CI +14.5 to +15.5 points, 3 replicates); MLP − perceptron +40.0")
    assert measured(STRUCTURED, fig5(0.04)).startswith("for δ < 0.9: worst drop +4.0 points (95% CI +3.6 to +4.4 points, "
                                                       "3 replicates) at δ=0.5 (confusing); 2 of 2 within the band; at δ = 1: 70.0 points")
    assert measured(NOVEL, fig7(0.01, 0.015)).startswith("repeated − novel, largest at α=10: +1.5 points (95% CI +1.0 to "
                                                         "+1.96 points, 3 replicates) (α=1: +1.0 points, α=10: +1.5 points)")
    assert "CIFAR-10 noise drop +0.0 points (95% CI -0.4 to +0.4 points" in measured(HALF, fig6(0.0, 0.05))
    assert measured(H_ALPHA, fig11({32: 0.1, 256: 0.9}, {0: 0.9, 50: 0.88})).startswith(
        "fall from α=0: worst drop +2.0 points (95% CI +1.5 to +2.5 points, 3 replicates) at α=50; 1 of 1 within the band")
    assert measured(BATCH, fig11({32: 0.5, 256: 0.7}, {0: 0.9})).startswith(
        "slope over α > 0: +6.7 points (95% CI +6.5 to +6.8 points, 3 replicates) per batch doubling (α=50: +6.7 points)")
    assert measured(LR, fig12({0: 1.0, 10: 0.1})).startswith(
        "change of log10 optimal lr from α=0 to 10: -1.00 decades (95% CI -1.00 to -1.00 decades, 3 replicates); "
        "clean optimum 1 (the grid's largest, as the paper's 1); best lr by α: 0→1, 10→0.1")
    assert measured(ALPHA10, fig8(10, SIZES, crit=3000)).startswith(
        "3,000 clean labels (95% CI 2,674 to 3,366, 3 replicates): 1.50x the paper's 2,000 (95% CI 1.34x to 1.68x)")
    assert measured(ALPHA10, fig8(10, SIZES, crit=3570)).startswith(  # the high end, 2.003x, lies above the band's 2x
        "3,570 clean labels (95% CI 3,182 to 4,006, 3 replicates): 1.78x the paper's 2,000 (95% CI 1.59x to 2.003x)")
    assert measured(ALPHA10, fig8(10, [1500, *SIZES[4:]], flat=0.95)).startswith(  # met at the smallest size measured
        "≤ 1,500 clean labels (95% CI ≤ 1,500 to ≤ 1,500, 3 replicates): ≤ 0.75x the paper's 2,000 (95% CI 0 to 0.75x)")
    assert "> 3,000 clean labels (95% CI > 3,000 to > 3,000, 3 replicates): > 1.50x the paper's 2,000 (95% CI 1.50x to ∞)" \
        in measured(ALPHA10, fig8(10, [*SIZES[:3], 3000], flat=0.8))  # never met up to the largest size measured
    one_clean = [r for r in fig8(10, SIZES, crit=3000) if r["alpha"]] + [{"alpha": 0, "n_clean": 250, "acc": 0.99,
                                                                        "seed": 0}]
    assert measured(ALPHA10, one_clean).startswith(  # the basis is that of the α = 10 cells, not of α = 0's one trial
        "3,000 clean labels (95% CI 2,674 to 3,366, 3 replicates): 1.50x")


def test_one_replicate_settles_only_beyond_the_noise_floor() -> None:
    """With one replicate there is no spread: each accuracy counts as ± NOISE_FLOOR (2 points), propagated."""
    assert NOISE_FLOOR == 0.02
    cases = {0.921: "held", 0.919: "inconclusive", 0.881: "inconclusive", 0.879: "contradicted"}
    assert {acc: verdict(CONV, fig1(acc), replicates=1) for acc in cases} == cases
    # a difference of two one-replicate cells: ± 2·√2 = 2.83 points
    assert verdict(WHITE, fig6(white=0.002), replicates=1) == "held"  # 0.2 + 2.83 ≤ 3 (the clean mean is of 3 cells)
    assert verdict(WHITE, fig6(white=0.01), replicates=1) == "inconclusive"
    assert verdict(WHITE, fig6(white=0.07), replicates=1) == "contradicted"


def test_numbers_near_an_edge_print_which_side_they_are_on() -> None:
    percent, points = bands.Band(0.9, unit="%", strict=True), bands.Band(high=0.03, unit="points")
    assert [percent.number(x) for x in (0.9005, 0.8995, 0.9, 0.95, 0.90004)] == ["90.05%", "89.95%", "90.0%", "95.0%",
                                                                               "90.004%"]
    assert [points.number(x) for x in (0.03004, 0.02996, 0.0295, -0.01)] == ["+3.004 points", "+2.996 points",
                                                                            "+2.9 points", "-1.0 points"]
    assert number(2.0, decimals=2, edges=(0.5, 2.0)) == "2.00" and number(1.999, decimals=2, edges=(2,)) == "1.999"
    text = measured(CONV, [{"alpha": 100, "arch": "conv4", "acc": 0.9055}])
    assert text.startswith("conv4: 90.5% (95% CI 90.05 to 91.0%, 3 replicates)")  # the low end lies above 90%


def test_an_interval_end_within_edge_of_a_band_edge_counts_as_on_it() -> None:
    """Band.judge at the exact points EDGE either side of each edge: an end on an edge lies inside a closed band
    and outside an open one; just past EDGE it is off the edge."""
    closed, open_ = bands.Band(0.3, 0.5, "%"), bands.Band(0.3, 0.5, "%", strict=True)
    e, at = bands.EDGE, lambda low, high: Interval((low + high) / 2, low, high, "")
    for band, on_edge in ((closed, True), (open_, None)):  # each end in turn EDGE outside and EDGE inside its edge
        assert band.judge(at(0.3 - e, 0.4)) is on_edge and band.judge(at(0.4, 0.5 + e)) is on_edge
        assert band.judge(at(0.3 + e, 0.4)) is on_edge and band.judge(at(0.4, 0.5 - e)) is on_edge
    assert closed.judge(at(0.3 - 2 * e, 0.4)) is None and open_.judge(at(0.3 + 2 * e, 0.5 - 2 * e)) is True
    # wholly outside: touching an open band's edge within EDGE is outside; a closed band's edge is still in it
    for band, touching in ((closed, None), (open_, False)):
        assert band.judge(at(0.2, 0.3 + e)) is touching and band.judge(at(0.5 - e, 0.6)) is touching
        assert band.judge(at(0.2, 0.3 - e)) is touching and band.judge(at(0.5 + e, 0.6)) is touching
    assert closed.judge(at(0.2, 0.3 - 2 * e)) is False and closed.judge(at(0.5 + 2 * e, 0.6)) is False
    assert open_.judge(at(0.2, 0.3 + 2 * e)) is None and closed.judge(at(float("nan"), 0.4)) is None


def test_a_band_states_its_bounds() -> None:
    assert [str(b) for b in (bands.Band(0.9, unit="%", strict=True), bands.Band(0.85, unit="%"),
                             bands.Band(high=0, unit="decades", strict=True), bands.Band(high=0.03, unit="points"),
                             bands.Band(-0.02, 0.02, unit="points"), bands.Band(0.5, 2, "x"), bands.Band(0.85, 1.5))] == \
        ["> 90%", "≥ 85%", "< 0 decades", "≤ 3 points", "within ±2 points", "within 2x", "0.85–1.5"]
    iv = Interval(0.391, 0.252, 0.523, "3 replicates")
    assert bands.Band(0.3, 0.5, "%").show(iv) == "39.1% (95% CI 25.2 to 52.3%, 3 replicates)"


def test_intervals_welch_and_fieller_by_hand() -> None:
    rows = pd.DataFrame({"test_acc": [0.8, 0.7], "test_acc_std": [0.01, 0.03], "replicates": [3, 4]})
    cells = Cells.of(rows)
    a, b = 0.01 ** 2 / 3, 0.03 ** 2 / 4
    dof = (a + b) ** 2 / (a ** 2 / 2 + b ** 2 / 3)  # Welch–Satterthwaite
    gap = cells.linear([1, -1])
    assert gap.value == pytest.approx(0.1) and gap.basis == "3–4 replicates"
    assert gap.high - gap.value == pytest.approx(t_at(dof) * math.sqrt(a + b))
    assert t975(4) < t_at(3.5) < t975(3) and t_at(4) == t975(4) and t_at(1e6) == 1.96
    ratio = cells.ratio([0, 1], [1, 0])  # 0.7 / 0.8: the r whose contrast 0.7 - r·0.8 lies within t·sd of 0
    t = t_at(cells.spread([-ratio.value, 1])[1])
    for r, inside in ((ratio.low + 1e-6, True), (ratio.high - 1e-6, True), (ratio.low - 1e-3, False), (ratio.high + 1e-3, False)):
        assert (abs(0.7 - r * 0.8) <= t * math.sqrt(r * r * a + b)) is inside
    one = Cells.of(rows.assign(replicates=1)).linear([1, -1])
    assert one.high - one.value == pytest.approx(NOISE_FLOOR * math.sqrt(2)) and one.basis.startswith("one replicate")


def fig8(alpha: float, sizes: list[int], crit: float | None = None, flat: float | None = None) -> list[dict]:
    """Accuracy linear in log10 n at `alpha`, reaching 90% at exactly `crit` clean labels (the log-n interpolation
    is exact), or `flat` accuracy at every size; α = 0 at 99% throughout."""
    rows = []
    for n in sizes:
        acc = flat if crit is None else float(np.clip(0.9 + 0.1 * np.log10(n / crit), 0.1, 0.999))
        rows += [{"alpha": alpha, "n_clean": n, "acc": acc}, {"alpha": 0, "n_clean": n, "acc": 0.99}]
    return rows


SIZES = [250, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]


@pytest.mark.parametrize("prefix,alpha,paper", [(ALPHA10, 10, 2_000), (ALPHA50, 50, 10_000)])
@pytest.mark.parametrize("case,expected", [
    # each cell ± 0.5 points at 10 points per decade: the count's interval spans a factor 10^±0.05 = 1.12
    (("crit", 1.7), "held"), (("crit", 0.6), "held"), (("crit", 1.95), "inconclusive"), (("crit", 0.52), "inconclusive"),
    (("crit", 2.5), "contradicted"), (("crit", 0.4), "contradicted"),
    (("above", 1.5), "inconclusive"),   # never met up to 1.5x the paper's count: might still be met below 2x
    (("above", 2.5), "contradicted"),   # not met even at 2.5x: outside the band already
    (("below", 0.75), "inconclusive"),  # met at the smallest size, 0.75x: the true count may be anywhere below
    (("below", 0.4), "contradicted"),   # met already at 0.4x: below the band
])
def test_fig8_critical_count_within_2x(prefix: str, alpha: float, paper: int, case: tuple[str, float], expected: str) -> None:
    kind, factor = case
    if kind == "crit":
        rows = fig8(alpha, SIZES, crit=factor * paper)
    elif kind == "above":
        rows = fig8(alpha, [s for s in SIZES if s < factor * paper] + [round(factor * paper)], flat=0.8)
    else:
        rows = fig8(alpha, [round(factor * paper)] + [s for s in SIZES if s > factor * paper], flat=0.95)
    assert verdict(prefix, rows) == expected


@pytest.mark.parametrize("prefix,alpha", [(ALPHA10, 10), (ALPHA50, 50)])
def test_fig8_not_run_without_that_alpha_or_n_clean(prefix: str, alpha: float) -> None:
    assert verdict(prefix, fig8(alpha * 2, SIZES, crit=1000)) == "not run"
    assert verdict(prefix, [{"alpha": alpha, "acc": 0.95}, {"alpha": 0, "acc": 0.99}]) == "not run"


GROWTH_ALPHAS = [0, 1, 2, 5, 10, 20, 50]


def fig9(p: float, scatter: float = 0.0, alphas: list[float] = GROWTH_ALPHAS) -> list[dict]:
    """Critical counts 100·α^p for 90% (÷ √10 for 85%, ÷ 10 for 80%), each α's count off the law by a factor
    exp(±scatter) (alternating signs): the pooled exponent's interval widens with the scatter."""
    rows = []
    for i, alpha in enumerate(alphas):
        crit = 100 * alpha ** p * np.exp(scatter * (-1) ** i) if alpha else 25
        rows += [{"alpha": alpha, "n_clean": n, "acc": float(np.clip(0.9 + 0.1 * np.log10(n / crit), 0.1, 0.999))}
                 for n in [10, 30, 100, 300, 1000, 3000, 10_000, 30_000, 100_000, 300_000]]
    return rows


def test_fig9_exponent_just_inside_and_outside_its_band() -> None:
    assert verdict(GROWTH, fig9(1.0)) == "held"
    assert verdict(GROWTH, fig9(0.995)) == "held"  # the interval must reach 1 to within SLOPE_PRECISION (0.01)
    assert verdict(GROWTH, fig9(0.985)) == "contradicted"
    assert verdict(GROWTH, fig9(1.5)) == "held"  # "slightly": at most 1.5
    assert verdict(GROWTH, fig9(1.6)) == "contradicted" and verdict(GROWTH, fig9(2.0)) == "contradicted"


@pytest.mark.parametrize("scatter,expected", [(0.65, "held"), (0.7, "inconclusive")])
def test_fig9_interval_lower_end_against_085(scatter: float, expected: str) -> None:
    """p = 1.05 with scatter: the interval reaches 1 either way; its lower end lies just above or below 0.85."""
    summary = summarize(trials(fig9(1.05, scatter)))
    p, low, high, _ = clean_counts.pooled_slope(summary)
    assert high >= 1 and abs(low - 0.85) < 0.02 and (low >= 0.85) == (expected == "held")
    assert verdict(GROWTH, fig9(1.05, scatter)) == expected


def test_fig9_inconclusive_with_too_few_points_and_not_run_without_noise() -> None:
    assert verdict(GROWTH, fig9(1.0, alphas=[0, 10])) == "inconclusive"  # one count per target: no interval
    assert verdict(GROWTH, fig9(1.0, alphas=[0])) == "not run"
    assert verdict(GROWTH, [{"alpha": 10, "acc": 0.9}]) == "not run"


def test_fig9_measured_text_by_hand() -> None:
    """The growth claim's measured text: the pooled exponent, its interval (printed to the side of 0.99 it lies on),
    the points, each target's own slope and α count (a target needs 2 uncensored α), the censored points left out."""
    tail = TEST
    # 100·α for 90%: at α = 1 the 80% count (10) is met at the smallest size, 10: censored
    assert measured(GROWTH, fig9(1.0)) == ("exponent of n_crit in α: 1.00 (95% interval 1.00 to 1.00, 17 points) "
                                           "[per target 80%: 1.00 (5 α), 85%: 1.00 (6 α), 90%: 1.00 (6 α)]; "
                                           f"1 censored point left out{tail}")
    # α ≤ 1 only: still noisy data; 80% censored at both α, each other target fitted on exactly 2 α
    assert measured(GROWTH, fig9(1.0, alphas=[0, 0.5, 1])) == (
        "exponent of n_crit in α: 1.00 (95% interval 1.00 to 1.00, 4 points) [per target 85%: 1.00 (2 α), "
        f"90%: 1.00 (2 α)]; 2 censored points left out{tail}")
    assert measured(GROWTH, fig9(1.0, alphas=[0, 10, 50])).startswith(
        "exponent of n_crit in α: 1.00 (95% interval 1.00 to 1.00, 6 points) [per target 80%: 1.00 (2 α), "
        "85%: 1.00 (2 α), 90%: 1.00 (2 α)]; 0 censored points left out;")
    assert measured(GROWTH, fig9(1.0, alphas=[0, 10])) == \
        f"too few uncensored critical counts at α > 0 to fit the growth; 0 censored points left out{tail}"
    # the upper end 0.9885 lies below 1 - SLOPE_PRECISION: printed with the digit that shows it
    assert measured(GROWTH, fig9(0.8, 0.3)).startswith(
        "exponent of n_crit in α: 0.85 (95% interval 0.71 to 0.988, 17 points) [per target 80%: 0.80 (5 α), ")
    assert verdict(GROWTH, fig9(0.8, 0.3)) == "contradicted"


def test_fig8_curve_bounds_without_intervals_are_the_noise_floor() -> None:
    """A summary without the CI columns (or with NaN in them: one replicate) bounds each cell at ± NOISE_FLOOR."""
    s = pd.DataFrame({"alpha": [10, 10], "n_clean": [100, 1000], "test_acc": [0.5, 0.9]})
    got = clean_counts.curves(s)
    assert got.to_dict("list") == {"alpha": [10, 10], "n_clean": [100.0, 1000.0], "test_acc": [0.5, 0.9],
                                   "acc_low": [0.5 - NOISE_FLOOR, 0.9 - NOISE_FLOOR],
                                   "acc_high": [0.5 + NOISE_FLOOR, 0.9 + NOISE_FLOOR]}
    s = s.assign(test_acc_ci_low=[0.4, np.nan], test_acc_ci_high=[0.6, np.nan])
    got = clean_counts.curves(s)
    assert got["acc_low"].tolist() == [0.4, 0.9 - NOISE_FLOOR] and got["acc_high"].tolist() == [0.6, 0.9 + NOISE_FLOOR]


def fig11(ce: dict[int, float], h_alpha: dict[float, float], ce_alphas: tuple[float, ...] = (50,)) -> list[dict]:
    """Cross-entropy per batch size at each of `ce_alphas` (α = 0 in the opposite order), H_α (batch 128) per α."""
    return [*({"alpha": alpha, "batch_size": b, "loss": "ce", "acc": a} for alpha in ce_alphas for b, a in ce.items()),
            *({"alpha": 0, "batch_size": b, "loss": "ce", "acc": 1 - a} for b, a in ce.items()),
            *({"alpha": alpha, "batch_size": 128, "loss": "h_alpha", "acc": a} for alpha, a in h_alpha.items())]


@pytest.mark.parametrize("ce,expected", [
    ({32: 0.5, 64: 0.6, 256: 0.7}, "held"), ({32: 0.5, 64: 0.7, 256: 0.6}, "held"),  # least-squares slope +2.1 points
    ({32: 0.7, 64: 0.6, 256: 0.5}, "contradicted"), ({32: 0.6, 256: 0.6}, "inconclusive"),  # flat: straddles 0
    ({32: 0.6, 64: 0.5, 256: 0.55}, "contradicted"),  # slope -1.1 points
], ids=["rising", "mostly-rising", "falling", "flat", "mostly-falling"])
def test_fig11_larger_batches_more_robust(ce: dict[int, float], expected: str) -> None:
    # H_α at batch 128 and α = 50 scores 99%: counted with cross-entropy it would break every order
    assert verdict(BATCH, fig11(ce, {0: 0.99, 50: 0.99})) == expected


def test_fig11_batch_slope_pools_every_alpha_above_0() -> None:
    rising, falling = {32: 0.5, 256: 0.53}, {32: 0.53, 256: 0.5}
    rows = fig11(rising, {0: 0.9, 50: 0.9}, (5, 50)) + [{"alpha": 20, "batch_size": b, "loss": "ce", "acc": a}
                                                          for b, a in falling.items()]
    assert verdict(BATCH, rows) == "held"  # +1 point per doubling at α = 5 and 50, -1 at α = 20: +0.33 pooled
    assert "(α=5: +1.0 points, α=20: -1.0 points, α=50: +1.0 points)" in measured(BATCH, rows)
    rows = fig11(rising, {0: 0.9}, (5,)) + [{"alpha": a, "batch_size": b, "loss": "ce", "acc": c}
                                             for a in (20, 50) for b, c in falling.items()]
    assert verdict(BATCH, rows) == "contradicted"  # the largest α alone would read held


def test_fig11_batch_not_run_with_one_batch_size() -> None:
    assert verdict(BATCH, fig11({32: 0.5}, {0: 0.9, 50: 0.9})) == "not run"
    assert verdict(BATCH, [{"alpha": 50, "batch_size": b, "acc": 0.5} for b in (32, 256)]) == "not run"  # no loss column


@pytest.mark.parametrize("h_alpha,expected", [
    ({0: 0.9, 20: 0.88, 50: 0.875}, "held"), ({0: 0.9, 20: 0.95, 50: 0.96}, "held"),  # a rise is no fall
    ({0: 0.9, 20: 0.88, 50: 0.87}, "inconclusive"), ({0: 0.9, 20: 0.88, 50: 0.864}, "contradicted"),
    ({50: 0.9}, "not run"),
], ids=["fall-2.5", "rise-6", "fall-3", "fall-3.6", "one-alpha"])
def test_fig11_h_alpha_flat(h_alpha: dict[float, float], expected: str) -> None:
    # cross-entropy rows span 0.1 to 0.9: only the H_α rows count
    assert verdict(H_ALPHA, fig11({32: 0.1, 256: 0.9}, h_alpha)) == expected


def fig12(best: dict[float, float], lrs: tuple[float, ...] = (0.01, 0.1, 1.0)) -> list[dict]:
    """At each α the given lr scores 80%, the others 60%; a failed trial at α = 10, lr 1.0 reports 99%."""
    rows = [{"alpha": alpha, "lr": lr, "acc": 0.8 if lr == top else 0.6} for alpha, top in best.items() for lr in lrs]
    return rows + [{"alpha": 10, "lr": 1.0, "acc": 0.99, "status": "error", "seed": 1}]


@pytest.mark.parametrize("best,expected", [
    ({0: 1.0, 10: 0.1}, "held"), ({0: 1.0, 5: 1.0, 10: 0.01}, "held"),
    ({0: 0.1, 10: 0.1}, "contradicted"),  # no fall, and the clean optimum is not the grid's largest
    ({0: 1.0, 10: 1.0}, "contradicted"), ({0: 0.01, 10: 0.1}, "contradicted"),
    ({0: 0.1, 5: 0.01, 10: 1.0}, "contradicted"),  # down, then up: the fitted trend rises
    ({0: 0.1, 2: 0.01, 5: 1.0, 10: 0.01}, "contradicted"),  # falls from first to last, but the clean optimum is 0.1
], ids=["falls", "falls-at-the-end", "same", "stays-at-1", "rises", "back-up", "clean-optimum-0.1"])
def test_fig12_optimal_lr_falls(best: dict[float, float], expected: str) -> None:
    assert verdict(LR, fig12(best)) == expected


def test_fig12_the_trend_is_an_interval_over_replicates() -> None:
    """Replicates whose optima disagree: 1 → 0.1 in two, 1 → 1 in the third: a mean fall of 0.67 decades
    with a t interval (2 dof) that reaches 0; all three falling: held."""
    def replicate(r: int, last: float) -> list[dict]:
        return [{"alpha": a, "lr": lr, "acc": 0.8 if lr == top else 0.6, "seed": 1000 * r, "noise_seed": 1000 * r}
                for a, top in ((0, 1.0), (10, last)) for lr in (0.1, 1.0)]
    rows = replicate(0, 0.1) + replicate(1, 0.1) + replicate(2, 1.0)
    assert verdict(LR, rows) == "inconclusive"
    assert "-0.67 decades (95% CI -2.10 to +0.77 decades, 3 replicates)" in measured(LR, rows)
    assert verdict(LR, replicate(0, 0.1) + replicate(1, 0.1) + replicate(2, 0.1)) == "held"
    one = measured(LR, replicate(0, 0.1))
    assert "one replicate: ± one LR grid step (1.00 decades)" in one and verdict(LR, replicate(0, 0.1)) == "inconclusive"


def test_fig12_chooses_on_the_selection_split_and_needs_two_lrs_and_alphas() -> None:
    # test accuracy says lr 1.0 is best at α = 10 too (no fall); the validation split says 0.1 (a fall)
    rows = [{"alpha": 0, "lr": 1.0, "acc": 0.9, "val": 0.9}, {"alpha": 0, "lr": 0.1, "acc": 0.8, "val": 0.8},
            {"alpha": 10, "lr": 1.0, "acc": 0.7, "val": 0.5}, {"alpha": 10, "lr": 0.1, "acc": 0.6, "val": 0.6}]
    assert summarize(trials(rows))["selected_on"].iloc[0] == "val_acc"
    assert verdict(LR, rows) == "held"
    assert verdict(LR, [{**r, "val": np.nan} for r in rows]) == "contradicted"  # chosen on test
    assert verdict(LR, fig12({0: 1.0, 10: 0.1}, lrs=(0.1,))) == "not run"
    assert verdict(LR, fig12({10: 0.1})) == "not run"


def test_a_claim_is_not_run_when_its_figure_was_not_drawn() -> None:
    t = trials(fig1(0.95))
    table = claims.evaluate_runs([(Path("run"), {"exp": "x", "preset": "paper", "figures": ["fig2"]}, t, summarize(t))])
    assert (table["verdict"] == "not run").all() and (table["measured"] == "").all()


def write_run(run_dir: Path, rows: list[dict], figures: list[str]) -> Path:
    run_dir.mkdir()
    rundir.write_csv(trials(rows), run_dir / rundir.TRIALS)
    rundir.write_json({"exp": "uniform_mnist", "preset": "paper", "figures": figures}, run_dir / rundir.STUDY)
    return run_dir


def test_cli_writes_the_table_and_prints_each_verdict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "run", fig1(0.95, perceptron=0.6), ["fig1"])
    out = tmp_path / "out"
    assert claims.main([str(run), "--out", str(out)]) == 0
    table = pd.read_csv(out / "claims.csv", keep_default_na=False).set_index("claim")
    assert table.loc[claim(CONV).claim, "verdict"] == "held" and table.loc[claim(PERCEPTRON).claim, "verdict"] == "contradicted"
    conv = f"conv4: 95.0% (95% CI 94.5 to 95.5%, 3 replicates){TEST}"
    assert table.loc[claim(CONV).claim, "measured"] == conv and table.loc[claim(CONV).claim, "selected_on"] == "test_acc"
    assert (table[table["figure"] != "fig1"]["verdict"] == "not run").all()
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["figure", "claim", "measured", "verdict"]
    assert len(printed) == 1 + len(claims.CLAIMS)
    assert any("ConvNet" in line and line.rstrip().endswith("held") and "95.0%" in line for line in printed)
    md = (out / "claims.md").read_text()
    assert f"| [fig1](../run/fig1.png) | {claim(CONV).claim} | {conv} | exp=uniform_mnist preset=paper | test_acc | held |" in md
    assert "95% interval lies inside the claim's band" in md and "± 2 points (the noise floor)" in md


def test_cli_later_run_wins_and_val_selection(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = write_run(tmp_path / "a", fig1(0.95), ["fig1"])
    second = write_run(tmp_path / "b", fig1(0.85), ["fig1"])
    assert claims.main([str(first), str(second), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False).set_index("claim")
    assert table.loc[claim(CONV).claim, ["verdict", "run"]].tolist() == ["contradicted", "b"]
    # chosen on val: lr 0.01 has the better validation accuracy (and the worse test accuracy)
    rows = [{"alpha": 100, "arch": "conv4", "lr": 0.1, "acc": 0.95, "val": 0.5},
            {"alpha": 100, "arch": "conv4", "lr": 0.01, "acc": 0.85, "val": 0.9}]
    val = write_run(tmp_path / "v", rows, ["fig1"])
    assert claims.main([str(val), "--out", str(tmp_path), "--select", "val"]) == 0
    table = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False).set_index("claim")
    assert table.loc[claim(CONV).claim, ["verdict", "measured", "selected_on"]].tolist() == [
        "contradicted", f"conv4: 85.0% (95% CI 84.5 to 85.5%, 3 replicates){VAL}", "val_acc"]


def test_cli_help_default_out_and_select_choices(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exit_:
        claims.main(["--help"])
    usage = capsys.readouterr().out
    assert exit_.value.code == 0 and usage.startswith("usage: python -m analysis.claims [-h]")
    assert " ".join(usage.split()).count(claims.__doc__.splitlines()[0]) == 1  # the description, rewrapped
    run = write_run(tmp_path / "run", fig1(0.95), ["fig1"])
    monkeypatch.chdir(tmp_path)
    assert claims.main([str(run)]) == 0 and (tmp_path / "claims.csv").exists()  # --out defaults to "."
    with pytest.raises(SystemExit) as exit_:
        claims.main([str(run), "--select", "train"])
    assert exit_.value.code == 2 and "invalid choice: 'train'" in capsys.readouterr().err


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert claims.main([str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'absent'} is not a finished study run dir (no {rundir.STUDY})\n"
    assert not (tmp_path / "out").exists()  # nothing written
    run = write_run(tmp_path / "run", fig1(0.95), ["fig1"])  # no val_acc measured
    assert claims.main([str(run), "--out", str(tmp_path / "out"), "--select", "val"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: select=val needs val_acc") and err.count("\n") == 1
    assert not (tmp_path / "out" / "claims.csv").exists()


def test_t_at_fractional_dof_and_number_edges_by_hand() -> None:
    """t_at between tabulated dofs (linear in 1/dof), at 1 < dof < 2, at 120 and past it, below 1; number() of
    infinities, of a negative zero, of a value next to a fractional edge, and past three extra places."""
    from analysis.summary import t975

    assert t_at(3.5) == pytest.approx(3.182 + (2.776 - 3.182) * (1 / 3 - 1 / 3.5) / (1 / 3 - 1 / 4), abs=1e-12)
    assert t_at(1.5) == pytest.approx(12.706 + (4.303 - 12.706) * (1 - 1 / 1.5) / (1 - 1 / 2), abs=1e-12)
    assert t_at(29.5) == pytest.approx(2.045 + (2.042 - 2.045) * (1 / 29 - 1 / 29.5) / (1 / 29 - 1 / 30), abs=1e-12)
    assert (t_at(120), t_at(120.5), t_at(45.5)) == (t975(120), 1.96, t975(45)) == (1.98, 1.96, 2.021)
    assert math.isnan(t_at(0.5))
    assert [number(x, sign=s) for x in (math.inf, -math.inf) for s in (False, True)] == ["∞", "+∞", "-∞", "-∞"]
    assert number(0.123456) == "0.1" and number(-0.00001, scale=100) == "0.0"
    assert number(-0.00001, scale=100, sign=True) == "+0.0"
    assert number(0.9549, scale=100, edges=(0.955,)) == "95.49"  # 95.5 would sit on the edge it is below
    assert number(0.90000001, scale=100, edges=(0.9,)) == "90.0000"  # three more places at most, then as it is
