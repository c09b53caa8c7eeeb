"""How often each claim reads "held" on simulated studies whose truth is known: rarely under no effect (or
an effect on the band's edge), usually under the paper's effect, at a given replicate count and noise.

    python -m analysis.power [--replicates 3] [--noise 1.0] [--seeds 100] [--select val|test]

A scenario is one experiment's grid (its learning rates included) and the true accuracy of every config
under named effects: "paper" (the paper's effect) and nulls. A simulated trial's test accuracy (top-5 for
ImageNet) and its validation accuracy are the truth plus independent Gaussian noise of `noise` points per
replicate; summary.csv and the verdicts come from analysis.summary and analysis.claims, as for a real run.
Every learning rate of a grid is equally good (except in Figure 12's), so choosing one on the test set
inflates the chosen accuracy as much as it can.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import bands, claims
from analysis.summary import kind_of, summarize

LRS = [0.01, 0.05, 0.1, 0.5]  # the paper's grid (§3.4)
PAPER = "paper"


@dataclass(frozen=True)
class Scenario:
    """An experiment's grid, the truth of each config per effect, and which claims each null is for."""

    exp: str
    grid: dict[str, list]
    truth: Callable[[pd.DataFrame, str], np.ndarray]  # (grid rows, effect) -> true accuracy of `metric` per row
    nulls: dict[str, tuple[str, ...]]  # effect -> the claims (first words) it is a null for
    metric: str = "test_acc"  # test_top5: the truth is top-5 accuracy, top-1 lies 20 points below
    shape: Callable[[pd.DataFrame], pd.DataFrame] = lambda g: g  # the grid's rows as the experiment makes them

    @property
    def claims(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for cs in self.nulls.values() for c in cs))

    def rows(self) -> pd.DataFrame:
        grid = pd.MultiIndex.from_product(list(self.grid.values()), names=list(self.grid)).to_frame(index=False)
        return self.shape(grid.assign(**{k: v for k, v in {"arch": "conv4", "batch_size": 128}.items() if k not in grid}))


def uniform_mnist(g: pd.DataFrame, effect: str) -> np.ndarray:
    """Figure 1 at α = 100: ConvNet 91%, MLPs 70–80%, perceptron 40% (α = 10: 5 points more)."""
    acc = {"conv4": 0.91, "mlp4": 0.80, "mlp2": 0.75, "mlp1": 0.70, "perceptron": 0.40}
    acc.update({"ConvNet at 90%": {"conv4": 0.90}, "perceptron at 30%": {"perceptron": 0.30},
                "ConvNet = best MLP": {"conv4": 0.80}}.get(effect, {}))
    return g["arch"].map(acc).to_numpy() + 0.05 * (g["alpha"] < 100)


def level(edge: float, effect: str) -> float:
    """One cell's accuracy: a point above the claim's edge (the paper's value) or on it (the null)."""
    return edge + (0.01 if effect == PAPER else 0.0)


def structured(g: pd.DataFrame, effect: str) -> np.ndarray:
    """δ < 0.9 costs up to 2 points at δ = 0.8 (the paper: like uniform noise), δ = 0.9 10 points and δ = 1
    60; the null: the confusing order costs 5 points at δ = 0.8, on the band's edge."""
    worst = np.where((g["order"] == "confusing") & (effect != PAPER), 0.05, 0.02)
    drop = np.where(g["delta"] < 0.85, worst * g["delta"] / 0.8, np.where(g["delta"] < 0.95, 0.1, 0.6))
    return 0.95 - drop


def noise_source(g: pd.DataFrame, effect: str) -> np.ndarray:
    """CIFAR-10 noise costs 3 points per unit α, CIFAR-100 noise half that, white noise nothing (the paper);
    the nulls: CIFAR-100 noise costs 0.75 of it, white noise 3 points at the largest α (both on the edge)."""
    ratio = 0.75 if effect == "ratio 0.75" else 0.5
    white = 0.03 * g["alpha"] / 10 if effect == "white drops 3 points" else 0 * g["alpha"]
    cost = g["source"].map({"same": 1.0, "cifar100": ratio, "white": 0.0}) * 0.03 * g["alpha"]
    return (0.8 - cost - white * (g["source"] == "white")).to_numpy()


def repeated(g: pd.DataFrame, effect: str) -> np.ndarray:
    """Novel images exactly as good as repeated ones (the paper), or 2 points worse at every α > 0 (the edge)."""
    gap = 0.02 * ((g["source"] == "novel") & (g["alpha"] > 0)) if effect != PAPER else 0
    return (0.97 - 0.002 * g["alpha"] - gap).to_numpy()


def dataset_size(g: pd.DataFrame, effect: str) -> np.ndarray:
    """Accuracy rising 30 points per decade of clean labels through 90% at n90(α) = c·α^p (α = 0: at 100),
    within 10%–99%. The paper: c = 200, p = 1 (2,000 at α = 10, 10,000 at α = 50); the nulls: twice the
    paper's counts (c = 400), or p on an edge of the exponent's band with n90(10) at 2,000."""
    p = {"p = 0.85": 0.85, "p = 1.5": 1.5}.get(effect, 1.0)
    c = 400 if effect == "twice the paper's counts" else 2000 / 10 ** p
    n90 = np.where(g["alpha"] > 0, c * g["alpha"].clip(lower=1) ** p, 100)
    return np.clip(0.9 + 0.3 * np.log10(g["n_clean"] / n90), 0.1, 0.99)


def batchsize(g: pd.DataFrame, effect: str) -> np.ndarray:
    """Cross-entropy: 1 point more per doubling of the batch at every α > 0 (the paper), or none; H_α: flat
    in α (the paper), or 3 points lower at every α > 0 (the edge)."""
    ce = 0.99 - 0.002 * g["alpha"] + (effect == PAPER) * 0.01 * np.log2(g["batch_size"] / 128) * (g["alpha"] > 0)
    h = 0.98 - 0.03 * (g["alpha"] > 0) * (effect == "H_α falls 3 points")
    return np.where(g["loss"] == "ce", ce, h)


def learning_rate(g: pd.DataFrame, effect: str) -> np.ndarray:
    """Accuracy 5 points lower per squared decade away from the optimum, which falls from 1 at α = 0 to 0.05
    at α = 10 (the paper); nulls: every LR equally good, or the optimum falling from 0.1 instead of 1."""
    if effect == "no optimum":
        return (0.8 - 0.02 * g["alpha"]).to_numpy()
    start = -1.0 if effect == "clean optimum 0.1" else 0.0
    optimum = start - 1.3 * np.log10(1 + g["alpha"]) / np.log10(11)
    return (0.8 - 0.02 * g["alpha"] - 0.05 * (np.log10(g["lr"]) - optimum) ** 2).to_numpy()


def human_noise(g: pd.DataFrame, effect: str) -> np.ndarray:
    """The hypotheses: per-image annotations 2 points worse than tied draws from their matrix, which are 2 points
    worse than fresh draws, at every (arch, α > 0); the nulls: either gap 0."""
    kind = kind_of(g)
    acc = np.where(kind == "uniform", 0.85 - 0.05 * g["alpha"], 0.8 - 0.005 * g["alpha"])
    instance = 0.02 * (kind == "labels tied") * (effect != "no per-image effect")
    repetition = 0.02 * np.isin(kind, ["matrix tied", "labels tied"]) * (effect != "no repetition cost")
    return acc - instance - repetition


def human_kinds(g: pd.DataFrame) -> pd.DataFrame:
    """exp=human_noise's rows: uniform noise at every α, the three human kinds at α > 0, as their config columns."""
    g = g[(g["kind"] == "uniform") | (g["alpha"] > 0)].reset_index(drop=True)
    base = g["kind"].str.split().str[0]
    return g.assign(matrix=np.where(base == "matrix", "cifar10n:random", None),
                    labels=np.where(base == "labels", "cifar10n:random", None),
                    draw=np.where(g["kind"].str.endswith("tied"), "image", "copy")).drop(columns="kind")


CONV, PERCEPTRON, ORDERED = "MNIST: ConvNet", "MNIST: perceptron", "MNIST: larger"
PER_IMAGE, REPETITION = "Beyond the paper (CIFAR-10N): at equal α", "Beyond the paper (CIFAR-10N): repeating"
SCENARIOS = [
    Scenario("uniform_mnist", {"alpha": [10, 100], "arch": ["perceptron", "mlp1", "mlp2", "mlp4", "conv4"], "lr": LRS},
             uniform_mnist, {"ConvNet at 90%": (CONV,), "perceptron at 30%": (PERCEPTRON,), "ConvNet = best MLP": (ORDERED,)}),
    Scenario("uniform_cifar10", {"alpha": [0, 10], "arch": ["conv6", "resnet101"], "lr": LRS},
             lambda g, e: np.where(g["arch"] == "resnet101", level(0.85, e), 0.7) + 0.05 * (g["alpha"] == 0),
             {"ResNet at 85%": ("CIFAR-10: ResNet",)}),
    Scenario("uniform_imagenet", {"alpha": [0, 5], "arch": ["resnet18"], "lr": LRS},
             lambda g, e: np.where(g["alpha"] == 5, level(0.7, e), 0.85), {"top-5 at 70%": ("ImageNet",)}, "test_top5"),
    Scenario("structured", {"alpha": [20], "delta": [round(0.1 * i, 1) for i in range(11)],
                            "order": ["confusing", "reverse", "random"], "lr": LRS},
             structured, {"drop 5 points at δ = 0.8": ("Structured",)}),
    Scenario("noise_source", {"alpha": [0, 1, 2, 4, 6, 8, 10], "source": ["same", "cifar100", "white"], "lr": LRS},
             noise_source, {"ratio 0.75": ("CIFAR-100",), "white drops 3 points": ("White-noise",)}),
    Scenario("repeated", {"alpha": [0, 1, 2, 5, 10, 20], "source": ["same", "novel"], "lr": LRS},
             repeated, {"novel 2 points worse": ("Novel",)}),
    Scenario("dataset_size", {"n_clean": [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000],
                              "alpha": [0, 1, 5, 10, 20, 50], "lr": LRS},
             dataset_size, {"twice the paper's counts": ("α = 10 needs", "α = 50 needs"), "p = 0.85": ("Clean labels",),
                            "p = 1.5": ("Clean labels",)}),
    Scenario("batchsize", {"alpha": [0, 5, 10, 20, 50, 100], "batch_size": [32, 64, 128, 256], "loss": ["ce", "h_alpha"],
                           "lr": LRS}, batchsize, {"no batch effect": ("Larger batches",), "H_α falls 3 points": ("With H_α",)},
             shape=lambda g: g[(g["loss"] == "ce") | (g["batch_size"] == 128)].reset_index(drop=True)),
    Scenario("learning_rate", {"alpha": [0, 1, 2, 4, 6, 8, 10], "lr": [0.01, 0.05, 0.1, 0.5, 1.0]},
             learning_rate, {"no optimum": ("The optimal",), "clean optimum 0.1": ("The optimal",)}),
    Scenario("human_noise", {"alpha": [0, 1, 2, 5, 10], "arch": ["conv6", "resnet18"],
                             "kind": ["uniform", "matrix", "matrix tied", "labels tied"], "lr": LRS}, human_noise,
             {"no per-image effect": (PER_IMAGE,), "no repetition cost": (REPETITION,)}, shape=human_kinds),
]


def claim(prefix: str) -> bands.Claim:
    (found,) = [c for c in claims.CLAIMS if c.claim.startswith(prefix)]
    return found


def simulate(scenario: Scenario, effect: str, replicates: int, noise: float, seeds: int, select: str,
             rng: np.random.Generator) -> pd.DataFrame:
    """trials.csv of `seeds` studies at once (column `study`), `replicates` of every config each."""
    grid = scenario.rows()
    truth = np.asarray(scenario.truth(grid, effect), float)
    copies = seeds * replicates
    out = grid.iloc[np.tile(np.arange(len(grid)), copies)].reset_index(drop=True)
    replicate = np.repeat(np.arange(copies) % replicates, len(grid))
    shape = (copies * len(grid),)
    measured = np.clip(np.tile(truth, copies) + rng.normal(0, noise, shape), 0, 1)
    other = measured - 0.2 if scenario.metric == "test_top5" else np.clip(measured + 0.05, 0, 1)
    top1, top5 = (other, measured) if scenario.metric == "test_top5" else (measured, other)
    val = np.clip(np.tile(truth, copies) + rng.normal(0, noise, shape), 0, 1) if select == "val" else np.nan
    seeds = dict.fromkeys(("seed", "noise_seed", "order_seed", "subset_seed"), 1000 * replicate)  # every seed varies
    return out.assign(**seeds, study=np.repeat(np.arange(copies) // replicates, len(grid)), status="ok",
                      test_acc=top1, test_top5=top5, val_acc=val)


def held_rates(scenario: Scenario, effect: str, replicates: int = 3, noise: float = 0.01, seeds: int = 100,
               select: str = "val", seed: int = 0, only: tuple[str, ...] = ()) -> dict[str, float]:
    """Per claim of the scenario (or those of `only`), the fraction of `seeds` simulated studies in which it
    reads held."""
    trials = simulate(scenario, effect, replicates, noise, seeds, select, np.random.default_rng(seed))
    summaries = dict(tuple(summarize(trials).groupby("study")))
    studies = dict(tuple(trials.groupby("study")))
    rates = {}
    for prefix in only or scenario.claims:
        c = claim(prefix)
        results = [c.check(summaries[k], studies[k], c.tolerance) for k in studies]
        rates[prefix] = float(np.mean([r is not None and r[1] is True for r in results]))
    return rates


def table(replicates: int, noise: float, seeds: int, select: str) -> pd.DataFrame:
    """One row per (claim, effect): the held rate under the paper's effect and under each of its nulls."""
    rows = []
    for scenario in SCENARIOS:
        for effect in (PAPER, *scenario.nulls):
            print(f"{scenario.exp}: {effect}", file=sys.stderr, flush=True)
            only = () if effect == PAPER else scenario.nulls[effect]
            for prefix, rate in held_rates(scenario, effect, replicates, noise, seeds, select, only=only).items():
                rows.append({"claim": prefix, "effect": effect, "held": rate})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.power", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--replicates", type=int, default=3, help="replicates of every config in a simulated study")
    parser.add_argument("--noise", type=float, default=1.0, help="accuracy noise per replicate, in points")
    parser.add_argument("--seeds", type=int, default=100, help="simulated studies per effect")
    parser.add_argument("--select", choices=("val", "test"), default="val", help="the split the LR is chosen on")
    args = parser.parse_args(argv)
    for name, value, low in (("--replicates", args.replicates, 1), ("--seeds", args.seeds, 1)):
        if value < low:
            print(f"error: {name}={value} is invalid: it must be ≥ {low}", file=sys.stderr)
            return 2
    if not args.noise > 0:
        print(f"error: --noise={args.noise} is invalid: it must be > 0 points", file=sys.stderr)
        return 2
    print(table(args.replicates, args.noise / 100, args.seeds, args.select).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
