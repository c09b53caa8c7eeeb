"""What denormals cost a CPU trial, and what flushing them saves (study.train.flushed_denormals), side by side:

    python -m bench.denormals [--arch mlp1] [--dead 0.7] [--steps 300] [--rounds 5]

A unit that gets no gradient (a ReLU left dead by a diverging learning rate, as §3.4's lr = 0.5 does at α = 100)
has its Adadelta averages decay x ρ a step until they stick in the denormal range: 70% of the averages of a
diverged paper-scale MLP1 trial were denormal, and that trial took 2.6x the time of a healthy one. This builds
that state on purpose: a few steps give every unit its averages, then a share `--dead` of the first layer's units
is killed (its bias set far below zero) and warm-up steps run until their averages are denormal. From that one
state, each round times `--steps` steps with IEEE denormals and `--steps` with them flushed, in alternating order;
the median of the rounds' process CPU time (one intra-op thread, so other processes on a shared machine do not
inflate it) is kept. For torch's Adadelta (Single, lr = 0.5) and the fused one (Fused, K = 4, §3.4's rates).
Writes bench/results/denormals-<host>.json atomically: steps/s of each and the ratio flushed / IEEE.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.train import LRS, RESULTS, device_name
from rundir import write_json
from study.models import build
from study.train import Fused, Net, Single, flushed_denormals

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32: below it (and above 0), denormal
CPU = torch.device("cpu")


def averages(net: Net) -> list[torch.Tensor]:
    """Every Adadelta average of the net (square_avg and acc_delta of each weight)."""
    if isinstance(net, Single):
        return [state[key] for state in net.optimizer.state.values() for key in ("square_avg", "acc_delta")]
    return [*net.square_avg.values(), *net.acc_delta.values()]


def denormal_share(net: Net) -> float:
    """The share of the net's Adadelta averages that are denormal (read with IEEE denormals: a flushing thread
    would read them as 0)."""
    values = torch.cat([a.flatten().abs() for a in averages(net)])
    return float(((values > 0) & (values < TINY)).float().mean())


def first_bias(net: Net) -> torch.Tensor:
    params = dict(net.model.named_parameters()) if isinstance(net, Single) else net.params
    return params[next(name for name in params if name.endswith("bias"))]


def prepared(kind: str, arch: str, dead: float, batch: tuple[torch.Tensor, torch.Tensor], warm: int) -> Net:
    """A net whose dead units' Adadelta averages are denormal (see the module's docstring)."""
    torch.manual_seed(0)
    models = [build(arch, (1, 28, 28), 10) for _ in LRS]
    net = Single(models[-1], LRS[-1], CPU) if kind == "single" else Fused(models, LRS, CPU)
    x, y = batch
    y = y[:1] if kind == "single" else y
    for _ in range(5):  # every unit gets nonzero averages first, as in a trial before it diverges
        net.step(x, y)
    bias = first_bias(net)
    with torch.no_grad():
        bias[..., : int(dead * bias.shape[-1])] = -1e4
    for _ in range(warm):
        net.step(x, y)
    return net


def timed(net: Net, batch: tuple[torch.Tensor, torch.Tensor], steps: int, flush: bool) -> float:
    """Process CPU seconds of `steps` steps on a copy of the net."""
    net, (x, y) = copy.deepcopy(net), batch
    y = y[:1] if isinstance(net, Single) else y
    start = time.process_time()
    with flushed_denormals() if flush else contextlib.nullcontext():
        for _ in range(steps):
            net.step(x, y)
    return time.process_time() - start


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(args.batch_size, 1, 28, 28, generator=generator),
             torch.randint(0, 10, (len(LRS), args.batch_size), generator=generator))
    net = prepared(kind, args.arch, args.dead, batch, args.warm)
    share = denormal_share(net)
    seconds: dict[str, list[float]] = {"ieee": [], "flushed": []}
    for r in range(args.rounds):
        for flush in ((False, True) if r % 2 == 0 else (True, False)):
            seconds["flushed" if flush else "ieee"].append(timed(net, batch, args.steps, flush))
            print(f"{kind} round {r + 1}/{args.rounds} {'flushed' if flush else 'ieee'}: "
                  f"{seconds['flushed' if flush else 'ieee'][-1]:.2f} s", file=sys.stderr, flush=True)
    rate = {name: args.steps / statistics.median(s) for name, s in seconds.items()}
    return {"kind": kind, "members": 1 if kind == "single" else len(LRS), "denormal_share": round(share, 4),
            "steps_per_s": {k: round(v, 1) for k, v in rate.items()},
            "flushed_over_ieee": round(rate["flushed"] / rate["ieee"], 2), "cpu_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.denormals", description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mlp1", choices=("mlp1", "mlp2", "mlp4"))
    parser.add_argument("--dead", type=float, default=0.7, help="share of the first layer's units killed")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warm", type=int, default=1000, help="steps after the kill: the averages reach denormals")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per round and setting")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for denormals-<host>.json")
    args = parser.parse_args(argv)
    if not 0 <= args.dead <= 1:
        parser.error(f"--dead={args.dead} is invalid: it must be a share from 0 to 1")
    torch.set_num_threads(1)  # as a CPU trial trains; the flag that flushes denormals is per thread
    rows = [measure(kind, args) for kind in ("single", "fused")]
    out = args.out / f"denormals-{socket.gethostname()}.json"
    write_json({"host": socket.gethostname(), "device": device_name("cpu"), "torch": torch.__version__,
                "command": "python -m bench.denormals " + " ".join(argv if argv is not None else sys.argv[1:]),
                "arch": args.arch, "dead": args.dead, "batch_size": args.batch_size, "warm": args.warm,
                "steps": args.steps, "rounds": args.rounds, "results": rows}, out)
    for row in rows:
        print(f"{row['kind']:6s} denormal share {row['denormal_share']:.2f}: {row['steps_per_s']['ieee']:.0f} steps/s "
              f"IEEE, {row['steps_per_s']['flushed']:.0f} flushed ({row['flushed_over_ieee']:.2f}x)")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
