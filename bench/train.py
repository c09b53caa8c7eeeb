"""Training throughput per (dataset, arch, batch, group size K) on this machine's device:

    python -m bench.train [--archs perceptron mlp1 conv2 conv4 conv6] [--fuse 1 4 16 64] [--n 4000]

Each row trains a real Trial of K members (K = 1: the plain, unfused trial; K > 1: one fused group
whose members differ in learning rate and seeds) for a warm-up epoch (allocator, kernels, compilation)
and a measured one, and records model-images/s (images/s through the group times K) and the ratio
to the unfused trial of the same row, all side by side in one run. Writes
bench/results/train-<host>.json atomically; `dry_run=true` costs studies from it (study/cost.py).
Needs only torch and the project (no Ray, Hydra or FFCV), so it runs on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import platform
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from loaders.datasets import resolve_root
from rundir import write_json
from study.config import TRIAL_SECTIONS
from study.trial import Trial

RESULTS = Path(__file__).resolve().parent / "results"
LRS = (0.01, 0.05, 0.1, 0.5)  # §3.4's grid: members of a group cycle through it


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


def measure(configs: list[dict[str, Any]]) -> dict[str, Any]:
    """Train a group for its epochs; the last epoch's images/s (the first ones warm up)."""
    trial = Trial(configs)
    reports: list = []
    trial.run(reports.append)
    rate = reports[-1][0].images_per_s
    return {"images_per_s": round(rate, 1), "model_images_per_s": round(rate * len(configs), 1),
            "test_acc": [round(r.test_acc, 4) for r in reports[-1]]}


def device_name(device: str) -> str:
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine() or "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--archs", nargs="+", default=["perceptron", "mlp1", "conv2", "conv4", "conv6"])
    parser.add_argument("--fuse", nargs="+", type=int, default=[1], help="group sizes K (1 = the unfused trial)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--n", type=int, default=4000, help="clean training images per epoch")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile", default="auto", help="train.compile of the fused groups: auto|none|<mode>")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for train-<host>.json")
    args = parser.parse_args(argv)

    rows = []
    out = args.out / f"train-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    print("| dataset | arch | batch | K | model-images/s | vs unfused |\n|---|---|---|---|---|---|", flush=True)
    for arch in args.archs:
        for batch_size in args.batch_sizes:
            unfused = None
            for k in sorted(set(args.fuse)):
                rate = measure([member(args.dataset, arch, batch_size, args.n, args.device, i,
                                       compile_mode=args.compile) for i in range(k)])
                unfused = rate["model_images_per_s"] if k == 1 else unfused
                ratio = rate["model_images_per_s"] / unfused if unfused else None
                rows.append({"dataset": args.dataset, "arch": arch, "batch_size": batch_size, "fuse": k, **rate,
                             "vs_unfused": ratio and round(ratio, 2)})
                print(f"| {args.dataset} | {arch} | {batch_size} | {k} | {rate['model_images_per_s']:,.0f} | "
                      f"{f'{ratio:.2f}x' if ratio else '-'} |", flush=True)
                write_json({"host": socket.gethostname(), "device": device_name(args.device), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "command": "python -m bench.train " + " ".join(sys.argv[1:] if argv is None else argv),
                            "compile": args.compile, "rows": rows}, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
