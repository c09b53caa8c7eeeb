"""Training throughput per (dataset, arch, batch) on this machine's device:

    python -m bench.train [--archs perceptron mlp1 conv2 conv4 conv6] [--batch-sizes 128] [--n 4000]

Each row trains one epoch of a real Trial (tensor loader, Adadelta, bf16 on CUDA) after a warm-up
epoch and records the trainer's own images/s. Writes bench/results/train-<host>.json atomically;
on a CUDA device, `dry_run=true` uses these numbers instead of the cost model (study/cost.py).
"""

from __future__ import annotations

import argparse
import platform
import socket
import sys
import time
from pathlib import Path

import torch

from rundir import write_json
from study import launch
from study.grid import trial_base
from study.trial import Trial

RESULTS = Path(__file__).resolve().parent / "results"


def config(dataset: str, arch: str, batch_size: int, n: int, device: str) -> dict:
    """One trial's config from the project's own defaults (config.yaml), so the rows cost what studies run."""
    cfg, _ = launch.compose([f"data.dataset={dataset}", f"model.arch={arch}", f"train.batch_size={batch_size}",
                             f"data.n_clean={n}", "data.n_test=1000", "data.download=false", "data.backend=tensor",
                             "train.lr=0.1", "train.epochs=2", "train.checkpoint_every=0", f"train.device={device}"])
    return trial_base(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--archs", nargs="+", default=["perceptron", "mlp1", "conv2", "conv4", "conv6"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--n", type=int, default=4000, help="clean training images per epoch")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for train-<host>.json")
    args = parser.parse_args(argv)

    rows = []
    for arch in args.archs:
        for batch_size in args.batch_sizes:
            trial = Trial(config(args.dataset, arch, batch_size, args.n, args.device))
            reports = []
            trial.run(reports.append)  # epoch 1 warms up (allocator, kernels); epoch 2 is measured
            rows.append({"dataset": args.dataset, "arch": arch, "batch_size": batch_size,
                         "images_per_s": round(reports[-1].images_per_s, 1)})
            print(f"| {args.dataset} | {arch} | {batch_size} | {reports[-1].images_per_s:,.0f} |", flush=True)
    device_name = torch.cuda.get_device_name(trial.device) if trial.device.type == "cuda" else platform.processor() or "cpu"
    out = args.out / f"train-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json({"host": socket.gethostname(), "device": device_name, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": "python -m bench.train " + " ".join(sys.argv[1:] if argv is None else argv), "rows": rows}, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
