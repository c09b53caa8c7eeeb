"""Loader benchmark: images/s of each backend over the diluted training set, side by side in one run.

    python -m bench.loaders [--seconds 2] [--reps 5] [--workers 2] [--alphas 0 10 100] [--batch-sizes 128 512]

Per (dataset, alpha) one child process times every backend, repetitions interleaved so that all share
the same machine load; a measurement times `--seconds` of batches (at most one epoch) from the first batch
on (FFCV's JIT compile, worker start-up and the epoch's permutation are left out for every backend alike);
the median of `--reps` is kept. Peak RSS comes from a fresh child per (dataset, alpha, backend).
torch runs with one intra-op thread everywhere; --workers sets the ffcv threads and DataLoader processes.
Backends: tensor, ffcv (relabel op in the pipeline), ffcv-norelabel (the same loader without it: the
op's cost) and torch (Dataset + DataLoader). End to end, the relabel cost is the
median of interleaved (with, without) pairs, with their range. The op is also timed alone per batch as
FFCV calls it; its share is that time over ffcv's wall time per batch, an upper bound (workers overlap).
Writes bench/results/loaders-<host>.json and prints markdown.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import socket
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import rundir

BACKENDS = ("tensor", "ffcv", "ffcv-norelabel", "torch")
RESULTS = Path(__file__).resolve().parent / "results"


def build(args: dict[str, Any], full, backend: str, alpha: float, batch: int):
    """The loader of one backend over the whole training split diluted by alpha."""
    import torch

    from loaders import backends
    from loaders.noise import NoiseModel, NoiseSpec

    noise = NoiseModel(NoiseSpec(alpha=alpha, seed=0), full.labels, full.num_classes)
    data = {"dataset": args["dataset"], "backend": backend.removesuffix("-norelabel"), "cache": args["cache"],
            "workers": args["workers"]}
    return backends.make(data, args["dataset"], full, torch.arange(len(full)), [noise], batch, 0, torch.device("cpu"),
                         relabel=backend != "ffcv-norelabel")


def load(args: dict[str, Any]):
    import torch

    from loaders import datasets

    torch.set_num_threads(1)  # small per-batch ops: intra-op threads only oversubscribe a 2-core machine
    return datasets.load(args["dataset"], datasets.resolve_root(None), train=True)


def throughput(args: dict[str, Any], alpha: float) -> tuple[dict, dict, dict]:
    """In a child: every backend at every batch size, reps interleaved (A B C D A B C D ...) so that they
    share whatever else the machine is doing. Returns the median images/s of each backend, the relabel
    cost of each interleaved (with, without) pair, and the op's time alone, per batch size."""
    full = load(args)
    rates: dict[str, dict[int, float]] = {b: {} for b in BACKENDS}
    ratios: dict[int, list[float]] = {}  # relabel cost of each interleaved pair of measurements
    for batch in args["batch_sizes"]:
        loaders = {b: build(args, full, b, alpha, batch) for b in BACKENDS}
        runs = {b: [] for b in BACKENDS}
        for _ in range(args["reps"]):
            for b, loader in loaders.items():
                runs[b].append(rate(loader, args["seconds"]))
        for b in BACKENDS:
            rates[b][batch] = statistics.median(runs[b])
        ratios[batch] = [without / with_ - 1 for without, with_ in zip(runs["ffcv-norelabel"], runs["ffcv"])]
    return rates, ratios, {batch: relabel_us(full, alpha, batch) for batch in args["batch_sizes"]}


def relabel_us(full, alpha: float, batch: int) -> float:
    """Time of the relabel op per batch (µs), called as FFCV's pipeline calls it (compiled by FFCV's
    Compiler, dispatch included): the op's cost without the noise of end-to-end timing."""
    import numpy as np
    from ffcv.pipeline.compiler import Compiler

    from loaders.ffcv_ops import Relabel
    from loaders.noise import NoiseModel, NoiseSpec

    noise = NoiseModel(NoiseSpec(alpha=alpha, seed=0), full.labels, full.num_classes)
    op = Compiler.compile(Relabel([noise]).generate_code())
    rng = np.random.default_rng(0)
    labels, indices = full.labels[:batch].numpy().reshape(-1, 1).copy(), rng.integers(0, noise.n_virtual, batch)
    out = np.empty((batch, 1), np.int64)
    op(labels, out, indices)  # compile
    calls, start = 20_000, time.perf_counter()
    for _ in range(calls):
        op(labels, out, indices)
    return (time.perf_counter() - start) / calls * 1e6


def memory(args: dict[str, Any], alpha: float, backend: str) -> float:
    """In a child of its own: peak RSS (MiB) after building one backend's loader and reading a few batches."""
    full = load(args)
    rate(build(args, full, backend, alpha, args["batch_sizes"][0]), 0.2)
    return peak_rss() / 2**20


def rate(loader, seconds: float) -> float:
    """Images/s over `seconds` of batches (at most one epoch), timed from the first batch on."""
    batches = iter(loader)
    next(batches)
    images, start = 0, time.perf_counter()
    for x, y in batches:
        images += y.numel()
        if time.perf_counter() - start >= seconds:
            break
    elapsed = time.perf_counter() - start
    batches.close()
    return images / elapsed


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _child(queue: mp.Queue, fn, *args: Any) -> None:
    queue.put(fn(*args))


def in_child(fn, *args: Any) -> Any:
    ctx = mp.get_context("spawn")  # a fresh process: its own peak RSS, no FFCV/numba threads of earlier runs
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, *args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def table(results: list[dict[str, Any]], batch_sizes: list[int]) -> str:
    """Markdown: images/s per backend, ffcv/torch, relabel cost; then peak RSS and bytes per virtual example."""
    by = {(r["dataset"], r["alpha"], r["backend"]): r for r in results}
    keys = sorted({(r["dataset"], r["alpha"]) for r in results})
    lines = ["| dataset | α | batch | tensor | ffcv + relabel | ffcv, no relabel | torch DataLoader | "
             "ffcv+relabel / torch | relabel cost end to end: median (range) of pairs | relabel op alone: time, share |", "|" + "---|" * 10]
    for dataset, alpha in keys:
        for batch in batch_sizes:
            r = {b: by[dataset, alpha, b]["images_per_s"][batch] for b in BACKENDS}
            ffcv = by[dataset, alpha, "ffcv"]
            pairs, op_us = ffcv["relabel_cost_pairs"][batch], ffcv["relabel_op_us_per_batch"][batch]
            lines.append(f"| {dataset} | {alpha:g} | {batch} | {r['tensor'] / 1e3:,.0f}k | {r['ffcv'] / 1e3:,.0f}k | "
                         f"{r['ffcv-norelabel'] / 1e3:,.0f}k | {r['torch'] / 1e3:,.1f}k | "
                         f"{r['ffcv'] / r['torch']:.0f}× | {100 * statistics.median(pairs):+.1f}% "
                         f"({100 * min(pairs):+.0f} to {100 * max(pairs):+.0f}) | "
                         f"{op_us:.1f} µs/batch = {100 * op_us * 1e-6 * r['ffcv'] / batch:.2f}% |")
    lines += ["", "| dataset | backend | " + " | ".join(f"peak RSS α={a:g}" for a in sorted({k[1] for k in keys}))
              + " | bytes per virtual example |", "|---|---|" + "---|" * (len({k[1] for k in keys}) + 1)]
    for dataset in sorted({k[0] for k in keys}):
        alphas = sorted(a for d, a in keys if d == dataset)
        for b in BACKENDS:
            rs = [by[dataset, a, b] for a in alphas]
            lo, hi = rs[0], rs[-1]
            per = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) * 2**20 / max(hi["n_virtual"] - lo["n_virtual"], 1)
            lines.append(f"| {dataset} | {b} | " + " | ".join(f"{r['peak_rss_mb']:,.0f} MB" for r in rs)
                         + f" | {per:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from loaders import datasets
    from loaders.noise import NoiseSpec

    p = argparse.ArgumentParser(prog="python -m bench.loaders", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=2.0, help="time per measurement (longer: steadier numbers)")
    p.add_argument("--reps", type=int, default=5, help="measurements per point; the median is kept")
    p.add_argument("--workers", type=int, default=2, help="loader workers of every backend (and torch threads)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0, 10, 100])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--datasets", nargs="+", default=[d for d in ("mnist", "cifar10") if d in datasets.DATASETS])
    p.add_argument("--cache", default=None, help="ffcv .beton dir (data.cache); default the user cache")
    p.add_argument("--out", type=Path, default=RESULTS / f"loaders-{socket.gethostname()}.json")
    args = p.parse_args(argv)
    job = {"seconds": args.seconds, "reps": args.reps, "workers": args.workers, "batch_sizes": args.batch_sizes,
           "cache": args.cache}
    results = []
    for dataset in args.datasets:
        datasets.ensure_available(dataset, datasets.resolve_root(None), download=False)
        n = len(datasets.load(dataset, datasets.resolve_root(None), train=True))
        for alpha in args.alphas:
            print(f"{dataset} α={alpha:g}: throughput ...", file=sys.stderr, flush=True)
            rates, ratios, op_us = in_child(throughput, {**job, "dataset": dataset}, alpha)
            for backend in BACKENDS:
                peak = in_child(memory, {**job, "dataset": dataset}, alpha, backend)
                results.append({"dataset": dataset, "alpha": alpha, "backend": backend, "n": n,
                                "n_virtual": NoiseSpec(alpha=alpha).n_virtual(n), "images_per_s": rates[backend],
                                "peak_rss_mb": peak, **({"relabel_cost_pairs": ratios, "relabel_op_us_per_batch": op_us} if backend == "ffcv" else {})})
    import torch

    meta = {"host": socket.gethostname(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": "cpu",
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "cuda": torch.cuda.is_available(), "python": platform.python_version(),
            "versions": {k: version(k) for k in ("torch", "ffcv", "numba", "numpy")}, "args": job,
            "command": "python -m bench.loaders " + " ".join(sys.argv[1:] if argv is None else argv)}
    markdown = table(results, args.batch_sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rundir.write_json({**meta, "results": results, "markdown": markdown}, args.out)
    print(markdown)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
