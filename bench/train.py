"""Training throughput per (dataset, arch, batch, group size K) on this machine's device:

    python -m bench.train [--archs perceptron mlp1 mlp2 mlp4 conv2 conv4 conv6] [--fuse 1 4 16 64] [--n 4000]
    python -m bench.train --device cpu --threads 1 --clock cpu    # a shared CPU: rates per CPU-second

Each row trains a real Trial of K members (K = 1: the plain, unfused trial; K > 1: one fused group
whose members differ in learning rate and seeds) for a warm-up epoch (allocator, kernels, compilation)
and a measured one, and records model-images/s (images/s through the group times K) and the ratio
to the unfused trial of the same row, all side by side in one run. `--clock cpu` times the measured
epoch's training by this process's CPU time instead of the wall clock (its test pass subtracted): on a
machine other jobs share, the wall clock measures them too, CPU time only this one (with one thread, no
idle spinning either), so the rate is one core's. Writes
bench/results/train-<host>.json atomically; `dry_run=true` costs studies from it (study/cost.py).
Needs only torch and the project (no Ray, Hydra or FFCV), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from loaders.datasets import resolve_root
from rundir import write_json
from study.config import TRIAL_SECTIONS
from study.train import evaluate
from study.trial import Trial

RESULTS = Path(__file__).resolve().parent / "results"
LRS = (0.01, 0.05, 0.1, 0.5)  # §3.4's grid: members of a group cycle through it
CLOCKS = ("wall", "cpu")


def member(dataset: str, arch: str, batch_size: int, n: int | None, device: str, k: int = 0, alpha: float = 0.0,
           epochs: int = 2, compile_mode: str = "auto", n_test: int | None = 2000) -> dict[str, Any]:
    """Member k of a group, from the project's own defaults (study.config's), so rows cost what studies run."""
    config = {name: asdict(section()) for name, section in TRIAL_SECTIONS.items()}
    config["data"].update(dataset=dataset, root=str(resolve_root(None)), n_clean=n, n_test=n_test, download=False,
                          backend="tensor")
    config["noise"].update(alpha=alpha, seed=k // len(LRS))  # replicates: a new noise seed every len(LRS) members
    config["train"].update(lr=LRS[k % len(LRS)], seed=k, batch_size=batch_size, epochs=epochs, device=device,
                           compile=compile_mode, checkpoint_every=0)
    config["model"]["arch"] = arch
    return config


def measure(configs: list[dict[str, Any]], clock: str = "wall",
            prepare: Callable[[Trial], None] | None = None) -> dict[str, Any]:
    """Train a group for its epochs; the last epoch's images/s (the first ones warm up), by the wall clock or
    by this process's CPU time (CLOCKS). `prepare` changes the trial before its first step (an experiment)."""
    trial = Trial(configs)
    if prepare is not None:
        prepare(trial)
    reports: list = []
    cpu_s: list[float] = []

    def on_epoch(epoch: list) -> None:
        reports.append(epoch)
        cpu_s.append(time.process_time())

    trial.run(on_epoch)
    rate = reports[-1][0].images_per_s
    if clock == "cpu":  # the last epoch's CPU time (training and its test pass) less a test pass timed alone
        start = time.process_time()
        evaluate(trial.net, trial.data.test_batches())
        rate = trial.loader.n_virtual / (cpu_s[-1] - cpu_s[-2] - (time.process_time() - start))
    return {"images_per_s": round(rate, 1), "model_images_per_s": round(rate * len(configs), 1),
            "test_acc": [round(r.test_acc, 4) for r in reports[-1]]}


def device_name(device: str) -> str:
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine() or "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--archs", nargs="+", default=["perceptron", "mlp1", "mlp2", "mlp4", "conv2", "conv4", "conv6"])
    parser.add_argument("--fuse", nargs="+", type=int, default=[1], help="group sizes K (1 = the unfused trial)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--n", type=int, default=4000, help="clean training images per epoch")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", default="auto", help="train.compile of the fused groups: auto|none|<mode>")
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's own)")
    parser.add_argument("--clock", default="wall", choices=CLOCKS,
                        help="cpu: rates per CPU-second of this process, for a machine other jobs share")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for train-<host>.json")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rows, load = [], [round(x, 2) for x in os.getloadavg()]  # a shared machine's rates are lower: say how shared
    out = args.out / f"train-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    print("| dataset | arch | batch | K | model-images/s | vs unfused |\n|---|---|---|---|---|---|", flush=True)
    for arch in args.archs:
        for batch_size in args.batch_sizes:
            unfused = None
            for k in sorted(set(args.fuse)):
                rate = measure([member(args.dataset, arch, batch_size, args.n, args.device, i,
                                       compile_mode=args.compile) for i in range(k)], args.clock)
                unfused = rate["model_images_per_s"] if k == 1 else unfused
                ratio = rate["model_images_per_s"] / unfused if unfused else None
                rows.append({"dataset": args.dataset, "arch": arch, "batch_size": batch_size, "fuse": k, **rate,
                             "vs_unfused": ratio and round(ratio, 2)})
                print(f"| {args.dataset} | {arch} | {batch_size} | {k} | {rate['model_images_per_s']:,.0f} | "
                      f"{f'{ratio:.2f}x' if ratio else '-'} |", flush=True)
                write_json({"host": socket.gethostname(), "device": device_name(args.device), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "clock": args.clock, "loadavg_at_start": load, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "command": "python -m bench.train " + " ".join(sys.argv[1:] if argv is None else argv),
                            "compile": args.compile, "rows": rows}, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
