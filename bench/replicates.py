"""What replicates cost in fused groups: one group per replicate (today) against one group of every replicate
whose members each train on their own batch (per-member gathers), side by side in one run:

    python -m bench.replicates [--archs perceptron mlp1 conv4] [--replicates 3] [--n 1000] [--alpha 1] [--rounds 3]

Replicates differ in example order and clean subset (study.groups.replicate), so members of two replicates
cannot share a batch. Per architecture, with §3.4's 4 learning rates per replicate:
  separate    today's groups: one per replicate (K = 4), trained one after another;
  per-member  one group of all 4 x R members; each replicate's loader gathers its own batch, which is copied to
              its members as x (K, B, ...), vmapped like the weights (study.train.Fused.X_DIM = 0);
  shared      for reference, one group of 4 x R members on one shared batch: replicates pinned to one order and
              subset (replicate_pin), so the intervals leave out subset-sampling variance;
  unfused     every config its own trial (K = 1): what train.fuse=auto runs on a CPU where fusing was measured
              slower (study.groups.cpu_gains).
Each variant trains a warm-up epoch, then one timed epoch per round, rounds interleaved so that all share the
machine's load; the median of the rounds is kept. On a CPU the ratios use this process's CPU time (one
intra-op thread: `--threads`), which other processes on a shared machine do not inflate; on CUDA, wall time
(the device synchronised). Both clocks are recorded.
Writes bench/results/replicates-<host>.json atomically: model-images/s (training images through a group x K)
of each variant and each one's ratio to `separate`.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from bench.train import LRS, RESULTS, device_name, member
from rundir import write_json
from study.groups import replicate
from study.train import Fused, Net
from study.trial import Trial, compile_mode

VARIANTS = ("separate", "per-member", "shared", "unfused")
PINNED = ("data.order_seed", "data.subset_seed")  # what replicate_pin holds fixed for the `shared` reference


class PerMember(Fused):
    """A fused group whose members each train on their own batch: x (K, B, ...)."""

    X_DIM = 0


class PerMemberBatches:
    """One batch per member from one loader per replicate: each replicate's batch copied to its `members` members."""

    def __init__(self, loaders: list[Any], members: int) -> None:
        self.loaders, self.members = loaders, members

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in zip(*self.loaders):
            x = torch.stack([x for x, _ in batch]).repeat_interleave(self.members, 0)
            yield x, torch.cat([y for _, y in batch])


Run = tuple[Net, Any, Callable[[torch.Tensor], torch.Tensor], int]  # (net, batches, targets, members)


def runs(arch: str, replicates: int, n: int, alpha: float, device: str,
         compile_setting: str = "auto") -> dict[str, list[Run]]:
    """Per variant, the groups it trains one after another: each as (net, batches, targets, members)."""
    base = [member("mnist", arch, 128, n, device, k, alpha, compile_mode=compile_setting) for k in range(len(LRS))]
    configs = replicate(base, replicates)
    trials = [Trial(configs[r * len(LRS):(r + 1) * len(LRS)]) for r in range(replicates)]
    first = trials[0]
    nets = [trial.model(c) for trial in trials for c in trial.configs]
    per_member = PerMember(nets, [c["train"]["lr"] for c in configs], first.device,
                           compile_mode(compile_setting, first.device))
    shared = Trial(replicate(base, replicates, PINNED))
    unfused = Trial(base[0])  # every config costs the same: one stands for all 4 x R
    return {"separate": [(t.net, t.loader, t.to_target, len(LRS)) for t in trials],
            "per-member": [(per_member, PerMemberBatches([t.loader for t in trials], len(LRS)), first.to_target,
                            len(configs))],
            "shared": [(shared.net, shared.loader, shared.to_target, len(configs))],
            "unfused": [(unfused.net, unfused.loader, unfused.to_target, 1)]}


def epoch(groups: list[Run]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, model-images) of one epoch of every group, one after another."""
    cpu, wall, images = time.process_time(), time.perf_counter(), 0
    for net, batches, to_target, members in groups:
        for x, y in batches:
            net.step(x, to_target(y))
            images += y.shape[-1] * y.shape[0]
        if net.device.type == "cuda":
            torch.cuda.synchronize(net.device)
    return time.process_time() - cpu, time.perf_counter() - wall, images


def measure(arch: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every variant's model-images/s (CPU and wall clock): medians over interleaved rounds after a warm-up."""
    variants = runs(arch, args.replicates, args.n, args.alpha, args.device, args.compile)
    for groups in variants.values():
        epoch(groups)  # warm-up: allocator, first-call paths
    times: dict[str, list[tuple[float, float, int]]] = {v: [] for v in VARIANTS}
    for _ in range(args.rounds):
        for name, groups in variants.items():
            times[name].append(epoch(groups))
    row: dict[str, Any] = {"arch": arch}
    for name, rounds in times.items():  # unfused: one config timed, each of the 4 x R takes as long
        row[name] = {clock: round(rounds[0][2] / statistics.median(r[i] for r in rounds), 1)
                     for i, clock in enumerate(("cpu", "wall"))}
    clock = "wall" if args.device == "cuda" else "cpu"  # the CPU clock misses a GPU's work
    for name in VARIANTS:
        row[name]["vs_separate"] = round(row[name][clock] / row["separate"][clock], 2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicates", description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["perceptron", "mlp1", "conv4"])
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000, help="clean MNIST training images per replicate")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per variant, interleaved")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", default="auto", help="train.compile: auto (eager on a CPU)|none|<mode>")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for replicates-<host>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out / f"replicates-{socket.gethostname()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    clock = "wall" if args.device == "cuda" else "cpu"
    print(f"model-images/s ({clock} clock), {len(LRS)} lrs x {args.replicates} replicates; ratio to separate groups")
    print("| arch | " + " | ".join(VARIANTS) + " |\n|---|" + "---|" * len(VARIANTS), flush=True)
    for arch in args.archs:
        row = measure(arch, args)
        rows.append(row)
        print(f"| {arch} | " + " | ".join(f"{row[v][clock]:,.0f} ({row[v]['vs_separate']:.2f}x)" for v in VARIANTS)
              + " |", flush=True)
        write_json({"host": socket.gethostname(), "device": device_name(args.device), "torch": torch.__version__,
                    "threads": args.threads, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": "python -m bench.replicates " + " ".join(sys.argv[1:] if argv is None else argv),
                    "lrs": len(LRS), "replicates": args.replicates, "n_clean": args.n, "alpha": args.alpha,
                    "rounds": args.rounds, "compile": args.compile, "rows": rows}, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
