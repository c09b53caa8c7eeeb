"""The cells each claim is judged on, gathered from whichever committed runs hold them: what the reproduction page
(analysis.reproduction) judges and shows as coverage, and what the GPU window plan (bench.paper_window) is
missing.

NEEDS names, per claim, its experiment and the cells of that experiment's paper grid it reads (products of
trials.csv column values; a cell holds every learning rate of the grid). `gather` takes each cell from the runs of
that experiment: a replicate (one tuple of the replicate seeds, rundir.REPLICATE_KEYS) is finished in a run when
every learning rate its study planned finished there, and counts once, from the run that holds the most finished
replicates of the cell (a run that repeats another's seeds adds none; runs of one replicate each add theirs). A
cell is present with one finished replicate. Reads result files only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import rundir
from analysis import bands, claims
from analysis.effects import where
from analysis.summary import SEARCHED, read_run, summarize

MNIST_ALPHAS = (0, 1, 2, 5, 10, 20, 50, 100)  # Figure 1's grid (study/conf/exp/uniform_mnist.yaml)
SIZES = (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)  # Figure 8's clean labels (dataset_size.yaml)
BATCH_ALPHAS = (0, 5, 10, 20, 50, 100)  # Figure 11's (batchsize.yaml)
CIFAR_ALPHAS = (0, 1, 2, 4, 6, 8, 10)  # Figures 2, 6 and 12 (uniform_cifar10, noise_source, learning_rate.yaml)
HUMAN = {"arch": ("conv6", "resnet18"), "alpha": (1, 2, 5, 10)}  # human_noise.yaml's noisy arms


@dataclass(frozen=True)
class Need:
    """The cells of one experiment's paper grid a claim reads: the union of products of column values."""

    exp: str
    grids: tuple[dict[str, tuple], ...]

    def cells(self) -> list[dict[str, Any]]:
        return [dict(zip(grid, values)) for grid in self.grids for values in itertools.product(*grid.values())]


def need(exp: str, *grids: dict[str, tuple]) -> Need:
    return Need(exp, grids)


NEEDS = {  # by claim text (analysis.claims.CLAIMS); tests/test_coverage.py checks each lies in its paper grid
    "MNIST: ConvNet {} at α = 100": need("uniform_mnist", {"arch": ("conv4",), "alpha": (100,)}),
    "MNIST: perceptron ≈ 40% at α = 100 ({})": need("uniform_mnist", {"arch": ("perceptron",), "alpha": (100,)}),
    "MNIST: larger architectures are more robust (at the largest α, ConvNet − MLP and MLP − perceptron each {})":
        need("uniform_mnist", {"arch": ("perceptron", "mlp1", "mlp2", "mlp4", "conv4"), "alpha": (100,)}),
    "CIFAR-10: ResNet {} at α = 10": need("uniform_cifar10", {"arch": ("resnet101",), "alpha": (10,)}),
    "ImageNet: ResNet-18 {} top-5 at α = 5": need("uniform_imagenet", {"arch": ("resnet18",), "alpha": (5,)}),
    "Structured noise performs like uniform noise except δ ≈ 1 (every drop from δ = 0 {} for δ < 0.9)":
        need("structured", {"delta": tuple(round(0.1 * i, 1) for i in range(11)),
                            "order": ("confusing", "reverse", "random")}),
    "CIFAR-100 noise costs about half the drop of CIFAR-10 noise (ratio {})":
        need("noise_source", {"alpha": (0, 10), "source": ("same", "cifar100")}),
    "White-noise examples do not appreciably lower accuracy (drop {})":
        need("noise_source", {"alpha": (0,), "source": ("same",)}, {"alpha": (10,), "source": ("white",)}),
    "Novel vs repeated noisy images: essentially no difference (repeated − novel {} at every α)":
        need("repeated", {"alpha": (1, 2, 5, 10, 20), "source": ("same", "novel")}),
    "α = 10 needs about 2,000 clean labels for 90% ({})": need("dataset_size", {"alpha": (10,), "n_clean": SIZES}),
    "α = 50 needs about 10,000 clean labels for 90% ({})": need("dataset_size", {"alpha": (50,), "n_clean": SIZES}),
    "Clean labels needed grow slightly faster than linearly in α (exponent's 95% interval reaching 1, lower end ≥ "
    "{0.low:g}, upper end ≤ {0.high:g})": need("dataset_size", {"alpha": (1, 5, 10, 20, 50), "n_clean": SIZES}),
    "Larger batches are more robust to noise (accuracy's slope on log2 batch size, pooled over α > 0: {} per "
    "doubling)": need("batchsize", {"alpha": BATCH_ALPHAS[1:], "batch_size": (32, 64, 128, 256), "loss": ("ce",)}),
    "With H_α (infinite batch) accuracy does not fall as α rises (fall from α = 0 {} at every α)":
        need("batchsize", {"alpha": BATCH_ALPHAS, "batch_size": (128,), "loss": ("h_alpha",)}),
    "The optimal learning rate falls as noise rises (its log10's fitted change across the α range {}; the clean "
    "optimum the grid's largest, as the paper's 1)": need("learning_rate", {"alpha": CIFAR_ALPHAS}),
    "Beyond the paper (CIFAR-10N): at equal α, the annotators' own labels hurt more than labels drawn from their "
    "class-conditional matrix, both one label per image kept by all its copies (tied matrix − per-image accuracy {})":
        need("human_noise", {**HUMAN, "matrix": ("cifar10n:random",), "draw": ("image",)},
             {**HUMAN, "labels": ("cifar10n:random",), "draw": ("image",)}),
    "Beyond the paper (CIFAR-10N): repeating an image's one matrix-drawn label on all its copies hurts more than "
    "drawing each copy's afresh (fresh − tied accuracy {})":
        need("human_noise", {**HUMAN, "matrix": ("cifar10n:random",), "draw": ("copy", "image")}),
}


@dataclass
class Run:
    """A committed run's small files: what the page and the plan read."""

    name: str
    study: dict[str, Any]
    trials: pd.DataFrame  # n_clean null as the full size (analysis.summary.full_size)
    device: str
    minutes: dict[str, float]  # "CPU" and "GPU" minutes, every launch

    @property
    def searched(self) -> list[str]:
        return [c for c in self.study.get("searched", SEARCHED) if c in self.trials]


def folders(root: Path) -> list[Path]:
    """The run folders under root (those with a study.json), in name order."""
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / rundir.STUDY).is_file()) if root.is_dir() else []


def read_runs(root: Path) -> list[Run]:
    return [Run(p.name, *read_run(p)[:2], *spent(p)) for p in folders(root)]


CORES = re.compile(r"([\d.]+) cores?\b")  # "2 cores to Ray" in a provenance.json from before `cpus` was recorded


def spent(run_dir: Path) -> tuple[str, dict[str, float]]:
    """A run's device(s) and its minutes per kind: GPU-minutes of launches that held GPUs, CPU-minutes (wall
    time x the cores it was given) of the others; 'unknown' without provenance.json."""
    path = run_dir / rundir.PROVENANCE
    if not path.is_file():
        return "unknown", {}
    prov, minutes = rundir.read_json(path), {"CPU": 0.0, "GPU": 0.0}
    for launch in prov["launches"]:
        if launch.get("gpus") or launch.get("gpu_minutes"):
            minutes["GPU"] += launch.get("gpu_minutes", 0.0)
        elif "cpu_minutes" in launch:
            minutes["CPU"] += launch["cpu_minutes"]
        elif "wall_s" in launch and (cores := CORES.search(launch.get("device", ""))):
            minutes["CPU"] += launch["wall_s"] * float(cores[1]) / 60
    return prov["device"], minutes


def planned(study: dict[str, Any], searched: list[str]) -> set[tuple] | None:
    """The searched values (e.g. every learning rate) a run's study planned per cell: from its grid and grid_extra
    lists; None where study.json does not say (no config, or a key no grid lists)."""
    config = study.get("config") or {}
    grids = [pd.json_normalize(g, sep=".").iloc[0].to_dict()  # {"train": {"lr": [..]}} -> {"train.lr": [..]}
             for g in [config.get("grid") or {}, *(config.get("grid_extra") or [])] if g]
    values = []
    for column in searched:
        lists = [v for grid in grids for path, v in grid.items() if rundir.column(path) == column]
        if not lists:
            return None
        values.append(sorted(set(itertools.chain(*lists))))
    return set(itertools.product(*values))


def replicates(run: Run, cell: dict[str, Any]) -> dict[tuple, pd.DataFrame]:
    """A cell's finished replicates in one run: seed tuple -> its rows, one per planned searched value."""
    t = run.trials
    rows = t[where(t, **cell) & (t["status"] == "ok").to_numpy() & t["test_acc"].notna().to_numpy()]
    keys = [k for k in rundir.REPLICATE_KEYS if k in t]
    wanted = planned(run.study, run.searched)
    if wanted is None:  # every searched value this run finished for the cell
        wanted = set(rows[run.searched].itertuples(index=False, name=None))
    out = {}
    for seeds, group in rows.groupby(keys, dropna=False) if keys else [((), rows)]:
        if wanted <= set(group[run.searched].itertuples(index=False, name=None)):
            out[seeds] = group  # a tuple: groupby over a list of keys (pandas >= 2)
    return out


@dataclass
class Cell:
    values: dict[str, Any]
    taken: dict[str, int]  # run name -> replicates taken from it

    @property
    def replicates(self) -> int:
        return sum(self.taken.values())


def gather(need: Need, runs: Iterable[Run]) -> tuple[pd.DataFrame, list[Cell]]:
    """The rows of every needed cell from the runs of its experiment, each replicate once (the run holding the most
    finished replicates of that cell first; among equals, the later run in name order); and per cell, where its
    replicates came from."""
    runs = [r for r in runs if r.study.get("exp") == need.exp]
    rows, cells = [], []
    for values in need.cells():
        found = sorted(((i, run, replicates(run, values)) for i, run in enumerate(runs)),
                       key=lambda f: (len(f[2]), f[0]), reverse=True)
        taken: dict[tuple, pd.DataFrame] = {}
        counts: dict[str, int] = {}
        for _, run, held in found:
            for seeds, group in held.items():
                if seeds not in taken:
                    taken[seeds] = group
                    counts[run.name] = counts.get(run.name, 0) + 1
        rows += taken.values()
        cells.append(Cell(values, counts))
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), cells


@dataclass
class Judged:
    """A claim judged on its gathered cells: analysis.claims' row, and the cells behind it."""

    claim: bands.Claim
    row: Any  # a row of claims.evaluate_runs (measured, selected_on, verdict); None with no cell present
    cells: list[Cell]
    summary: pd.DataFrame | None = None  # the gathered cells' summary (best LR each); None with no cell present

    @property
    def present(self) -> int:
        return sum(c.replicates > 0 for c in self.cells)

    @property
    def complete(self) -> bool:
        return self.present == len(self.cells)

    @property
    def settled(self) -> bool:
        """Every cell present and the verdict held or contradicted: more of these cells would not change it."""
        return self.complete and self.row is not None and self.row.verdict in (claims.HELD, claims.CONTRADICTED)


def select(trials: pd.DataFrame) -> str:
    """The split gathered cells are chosen on: val where every finished replicate held one out, else test, which
    every run measured (choosing on val would drop the cells of runs without a held-out split)."""
    ok = trials[trials["status"] == "ok"]
    return "val" if "val_acc" in ok and len(ok) and ok["val_acc"].notna().all() else "test"


def judge(runs: list[Run]) -> list[Judged]:
    """Every claim of analysis.claims on the cells it needs, gathered from the runs, in CLAIMS order."""
    out = []
    for i, claim in enumerate(claims.CLAIMS):
        need = NEEDS[claim.text]
        trials, cells = gather(need, runs)
        row = summary = None
        if len(trials):
            searched = list(dict.fromkeys(c for r in runs if r.study.get("exp") == need.exp for c in r.searched))
            study = {"exp": need.exp, "preset": "paper", "figures": [claim.figure]}
            summary = summarize(trials, searched, select(trials))
            row = next(claims.evaluate_runs([(Path(need.exp), study, trials, summary)]).iloc[[i]].itertuples())
        out.append(Judged(claim, row, cells, summary))
    return out
