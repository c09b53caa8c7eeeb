"""The GPU window plan: the paper-scale slices no committed run holds yet, ordered by claims settled per estimated
GPU-minute; as many as fit in the window run through runner=local (no Ray), each finished one's small files
copied into bench/results/paper/.

    python -m bench.paper_window --list [--minutes 11]            # the ordered slices; nothing run
    python -m bench.paper_window --minutes 11 [--out DIR]
    python -m bench.paper_window --smoke --paper DIR --minutes 5   # the same slices at smoke scale, on this CPU

A slice is one launch of `study.launch exp=<exp> preset=paper runner=local`: cells of its experiment's paper grid
that a claim reads (analysis.coverage.NEEDS; each cell with its whole learning-rate grid) at one replicate r, whose
seeds are replicate r's of a full run (r x study.groups.REPLICATE_STRIDE added to each), so the reproduction page
pools them with any run's. Each is at most LIMIT GPU-minutes by the cost model (study.cost: bench/results' CUDA
rates, each fused group's compilation, runner=local's launch); a larger one is split along its longest grid key,
and a single cell over it is marked so. A claim the committed runs settled (every cell present, held or
contradicted) gets no slice; an inconclusive one with every cell present gets REPLICATES more replicates. Order:
greedily, the claim whose missing slices settle the most claims per GPU-minute (cells shared with claims already
planned count once). Data: MNIST (11 MB of .gz) travels with the call; CIFAR-10 (169 MB) does not fit one call of
the lent machine, and CIFAR-100 and ImageNet are not here: those slices wait for a later window (docs/gpu-window.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import rundir
from analysis import coverage
from analysis.coverage import Judged, Need, Run
from errors import UsageError
from rundir.pack import small
from study import config, cost, preflight
from study.config import REPLICATED
from study.groups import REPLICATE_STRIDE
from study.slices import value_at

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "bench" / "results" / "paper"
LIMIT = 10.0  # GPU-minutes a slice may take by the cost model
REPLICATES = 3  # the paper preset's: replicates a claim is planned with, and how many more an inconclusive one gets
LATER = {"cifar10": "later window: CIFAR-10 (169 MB) travels in 3 parts on a warm machine (docs/gpu-window.md)",
         "cifar100": "later window: CIFAR-100 is not in this repository's data",
         "imagenet": "later window: ImageNet is not in this repository's data"}
SMOKE = ["data.n_clean=500", "data.n_val=100", "data.n_test=500", "train.epochs=1", "resources.gpu=0",
         "train.device=cpu"]  # --smoke: every slice small, on this CPU


@dataclass
class Exp:
    """One experiment at paper scale, planned once: each group's estimated GPU-seconds by its cell."""

    name: str
    paths: dict[str, str]  # trials.csv column -> config key of its grid
    groups: list[tuple[dict[str, Any], float]]  # (the group's column values, GPU-seconds with its own overhead)
    launch_s: float  # runner=local's fixed cost per launch
    dataset: str
    blocked: str  # why its slices cannot run in a window ("" when they can)


@functools.cache
def planned_exp(name: str) -> Exp:
    """Compose and plan the experiment at paper scale on one GPU (runner=local, one replicate)."""
    cfg, _ = config.compose([f"exp={name}", "preset=paper", "runner=local", "replicates=1"])
    dataset = cfg.data.dataset
    try:
        plan = preflight.plan(cfg)
    except UsageError as exc:  # e.g. exp=structured before exp=confusion made its matrix
        return Exp(name, {}, [], 0.0, dataset, f"blocked: {exc}")
    paths = {rundir.column(p): p for p in dict.fromkeys(plan.paths)}
    overhead = cost.launch_overhead("local")
    groups = []
    for group in plan.groups(cfg, on_gpu=True):
        seconds = cost.estimate([group], 1.0)["gpu_hours"] * 3600 + cost.fixed_cost([group], "local", True)[0]
        values = {column: value_at(group[0], path) for column, path in paths.items()}
        groups.append((values, seconds - overhead["launch_s"]))
    return Exp(name, paths, groups, overhead["launch_s"], dataset, LATER.get(dataset, ""))


@dataclass
class Slice:
    exp: str
    grid: dict[str, tuple]  # column -> values: the slice's cells are their product
    replicate: int
    minutes: float
    claims: list[str]  # the claims (figure: text) that read its cells
    note: str = ""  # why it cannot run in a window now, or that it is over LIMIT

    @property
    def name(self) -> str:
        """A run folder name, e.g. uniform_mnist-conv4-a100-r0 or dataset_size-a10-n100..50000-r1."""
        short = {"alpha": "a", "n_clean": "n", "batch_size": "b", "delta": "d", "matrix": "matrix_", "labels": "labels_"}
        parts = []
        for column, values in self.grid.items():
            text = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
            text = text if len(text) <= 3 else [text[0], "..", text[-1]]
            parts.append(short.get(column, "") + "+".join(text).replace("+..+", ".."))
        return "-".join([self.exp, *parts, f"r{self.replicate}"]).replace(":", "_")

    def overrides(self) -> list[str]:
        """The launch's command line: this product of cells alone (no grid_extra), replicate r's seeds."""
        exp = planned_exp(self.exp)
        cfg, _ = config.compose([f"exp={self.exp}", "preset=paper"])
        grid = pd.json_normalize(cfg.grid, sep=".").iloc[0].to_dict() if cfg.grid else {}
        out = [f"exp={self.exp}", "preset=paper", "runner=local", "replicates=1", "grid_extra=[]",
               "data.download=false"]  # the lent machine has no internet: the data travels with the call
        for column, values in self.grid.items():
            path = exp.paths[column]
            out.append(f"{'' if path in grid else '+'}grid.{path}=[{','.join(str(v) for v in values)}]")
        tree = dataclasses.asdict(cfg)
        for path in REPLICATED:  # replicate r of a full run: study.groups.replicate's seeds
            seed = value_at(tree, path) + self.replicate * REPLICATE_STRIDE
            out.append(f"{path}={seed % 2**32 if path == 'noise.seed' else seed}")
        return out


def cells_of(grid: dict[str, tuple]) -> list[dict[str, Any]]:
    return Need("", (grid,)).cells()


def seconds_of(exp: Exp, grid: dict[str, tuple]) -> float:
    """GPU-seconds of one launch of these cells: its groups' (each with its overhead) and the launch's."""
    cells = cells_of(grid)
    return exp.launch_s + sum(s for values, s in exp.groups if any(all(values.get(k) == v for k, v in cell.items())
                                                                  for cell in cells))


def split(exp: Exp, grid: dict[str, tuple]) -> list[tuple[dict[str, tuple], float]]:
    """The product as launches of at most LIMIT GPU-minutes: halved along its longest key until each fits (a
    single cell over LIMIT stays one launch)."""
    seconds = seconds_of(exp, grid)
    key = max(grid, key=lambda k: len(grid[k]))
    if seconds <= LIMIT * 60 or len(grid[key]) == 1:
        return [(grid, seconds)]
    half = len(grid[key]) // 2
    return [*split(exp, {**grid, key: grid[key][:half]}), *split(exp, {**grid, key: grid[key][half:]})]


def held(runs: list[Run], need: Need) -> list[set[int]]:
    """Per cell of the need, the replicate numbers the committed runs hold finished (train seed // stride)."""
    return [{int(seeds[0]) // REPLICATE_STRIDE for run in runs if run.study.get("exp") == need.exp
             for seeds in coverage.replicates(run, cell)} for cell in need.cells()]


def missing(need: Need, have: list[set[int]], wanted: int) -> list[tuple[dict[str, tuple], int]]:
    """(product, replicate) launches for the need's cells short of replicates 0..wanted-1: per product of the need,
    only the values of each key some cell of which misses that replicate."""
    out, cells = [], need.cells()
    for r in range(wanted):
        short = [cell for cell, reps in zip(cells, have) if r not in reps]
        for grid in need.grids:
            inside = [c for c in short if c.keys() == grid.keys() and all(c[k] in grid[k] for k in grid)]
            if inside:
                out.append(({k: tuple(v for v in grid[k] if any(c[k] == v for c in inside)) for k in grid}, r))
    return out


def title(judged: Judged) -> str:
    return f"{judged.claim.figure}: {judged.claim.claim}"


def plan(runs: list[Run]) -> list[tuple[list[str], list[Slice]]]:
    """The slices of every claim the runs have not settled, in order: per greedy step, the claims it settles and
    its slices."""
    judged = [j for j in coverage.judge(runs) if not j.settled]
    todo: dict[str, list[tuple[Slice, set]]] = {}
    for j in judged:
        need = coverage.NEEDS[j.claim.text]
        have = held(runs, need)
        wanted = REPLICATES if not j.complete else min(len(h) for h in have) + REPLICATES
        exp, parts = planned_exp(need.exp), []
        for product, r in missing(need, have, wanted):
            for grid, seconds in split(exp, product) if exp.groups else [(product, math.nan)]:  # blocked: unknown
                note = exp.blocked or (f"over {LIMIT:g} GPU-minutes: one cell, cannot be split" if seconds > LIMIT * 60
                                       else "")
                keys = {(need.exp, tuple(sorted(c.items())), r) for c in cells_of(grid)}
                parts.append((Slice(need.exp, grid, r, seconds / 60, [], note), keys))
        todo[title(j)] = parts
    order, done = [], set()
    while todo:
        def rate(name: str) -> tuple[bool, float, list[str]]:
            """Whether a window can run its slices now, the claims doing them settles per GPU-minute, those claims."""
            keys = set().union(*(k for _, k in todo[name])) | done
            settles = [n for n, parts in todo.items() if set().union(*(k for _, k in parts)) <= keys]
            minutes = sum(s.minutes for s, k in todo[name] if not k <= done)
            runnable = not any(s.note for s, _ in todo[name])
            return runnable, 0.0 if math.isnan(minutes) else len(settles) / max(minutes, 1e-9), settles
        best = max(todo, key=lambda name: rate(name)[:2])
        settles = rate(best)[2]
        slices = [s for s, k in todo[best] if not k <= done]
        for name in settles:
            for s, k in todo.pop(name):
                done |= k
        order.append((settles, slices))
    for settles, slices in order:
        for s in slices:
            s.claims = settles
    return order


def listing(order: list[tuple[list[str], list[Slice]]], runs: list[Run], minutes: float | None) -> str:
    overhead = cost.launch_overhead("local")
    lines = [f"GPU window plan: {sum(len(s) for s, _ in order)} claims not settled by the {len(runs)} "
             f"run{'s' * (len(runs) != 1)} under "
             f"{PAPER.relative_to(REPO)}; slices ordered by claims settled per estimated GPU-minute",
             f"cost model: {' or '.join(cost.cuda_devices()) or 'a GPU'} rates, {cost.compile_seconds():.0f} s to "
             f"compile each fused group, {overhead['launch_s']:.0f} s a runner=local launch (measured on "
             f"{overhead['host']}); at most {LIMIT:g} GPU-minutes a slice; replicate r's seeds as a full run's"]
    total, k = 0.0, 0
    for settles, slices in order:
        block = sum(s.minutes for s in slices)
        lines.append(f"\n-> settles {len(settles)} claim{'s' * (len(settles) != 1)} in {block:.1f} GPU-min: "
                     + "; ".join(settles))
        for s in slices:
            k += 1
            fits = minutes is not None and not s.note and total + s.minutes <= minutes
            total += s.minutes if fits or minutes is None and not s.note else 0.0
            lines.append(f"{k:4d} {s.minutes:6.1f} min {'*' if fits else ' '} {s.name}"
                         + (f"  [{s.note}]" if s.note else ""))
    if minutes is not None:
        lines.append(f"\n* runs in a {minutes:g}-minute window ({total:.1f} GPU-minutes by the cost model), in this order")
    return "\n".join(lines)


def run(order: list[tuple[list[str], list[Slice]]], minutes: float, paper: Path, runs_root: Path, extra: list[str],
        log: Any) -> list[str]:
    """Launch the runnable slices in order while each fits the minutes left; copy each finished one's small
    files under `paper`. Their names."""
    deadline, copied = time.monotonic() + minutes * 60, []
    for s in (s for _, slices in order for s in slices if not s.note):
        left = deadline - time.monotonic()
        if s.minutes * 60 > left:
            continue
        run_dir = runs_root / s.name
        argv = [*s.overrides(), *extra, f"run_dir={run_dir}", f"budget={max(1, int(left))}s"]
        print(f"\n== {s.name} ({s.minutes:.1f} min estimated, {left / 60:.1f} left): study.launch {' '.join(argv)}",
              file=log, flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "study.launch", *argv], cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT)
        took = (time.monotonic() - started) / 60
        if done.returncode == 0:
            small(run_dir, paper / s.name)
            copied.append(s.name)
        print(f"== {s.name}: exit {done.returncode} after {took:.1f} min (estimated {s.minutes:.1f})"
              + (f", copied to {paper / s.name}" if done.returncode == 0 else ", not copied"), file=log, flush=True)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paper_window", description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the ordered slices and stop")
    parser.add_argument("--minutes", type=float, default=None, help="the window: run the slices that fit")
    parser.add_argument("--paper", type=Path, default=PAPER, help="the committed runs (and where new ones go)")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "paper_window", help="the slices' run dirs")
    parser.add_argument("--out", type=Path, default=None, help="write the log and the new runs' files here")
    parser.add_argument("--smoke", action="store_true", help="every slice at smoke scale on this CPU (needs --paper)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.minutes is not None and args.minutes <= 0:
        print(f"error: --minutes={args.minutes:g} is invalid: it must be > 0", file=sys.stderr)
        return 2
    if not args.list and args.minutes is None:
        print("error: give --list, or --minutes <the window's minutes> to run the slices that fit", file=sys.stderr)
        return 2
    if args.smoke and args.paper == PAPER:
        print(f"error: --smoke runs are no paper-scale results: give --paper <a scratch folder>, not {PAPER}",
              file=sys.stderr)
        return 2
    runs = coverage.read_runs(args.paper)
    order = plan(runs)
    print(listing(order, runs, args.minutes), flush=True)
    if args.list:
        return 0
    log_path = (args.out or args.runs) / "paper_window.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        copied = run(order, args.minutes, args.paper, args.runs, SMOKE if args.smoke else [], log)
    print(f"\n{len(copied)} slice(s) finished and copied under {args.paper}: {', '.join(copied) or 'none'}; "
          f"log: {log_path}")
    if args.out is not None and copied:
        with tarfile.open(args.out / "paper_window.tar.gz", "w:gz") as tar:
            for name in copied:
                tar.add(args.paper / name, arcname=f"bench/results/paper/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
