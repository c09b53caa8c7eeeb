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
