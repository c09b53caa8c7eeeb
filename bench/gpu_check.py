"""The GPU check: one script, one JSON, nothing but the project and torch (no Ray, Hydra or FFCV).

    python -m bench.gpu_check [--budget 480] [--out bench/results]

In order, each section skipped when the time budget (seconds) is spent, the JSON rewritten after
every row so a cut-off run still reports what it measured:
  1. parity: labels made per epoch on the GPU equal the CPU noise model's, bit for bit (uniform,
     structured, white, and virtual indices past 2**32);
  2. the tensor loader alone at alpha=100 on full MNIST: images/s with labels made per epoch (K = 1
     and 8 members) beside the per-batch loop of d0564c1 (hash, gather and normalise per batch);
  3. torch.compile modes of a fused conv4 group (K=16): eager, default, reduce-overhead; then conv4 (K=4, 16) with
     each member's conv weights in channels-last layout beside today's;
  4. the bench.train table: model-images/s per (arch, K) and the ratio to the unfused trial (K=4: the paper
     grid's groups, its learning rates fused; the nets no committed table measured on a GPU first);
  5. the headline slice at paper scale: Figure 1's ConvNet on full MNIST, the §3.4 lr grid fused,
     alpha = 100 first (test accuracy per epoch), then alpha = 10 and 0 with 2 replicates.
"""

from __future__ import annotations

import argparse
import csv
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench.train import device_name, measure, member
from loaders.noise import STREAM_LABEL, NoiseModel, NoiseSpec, hash32
from loaders.tensor import TensorLoader, epoch_labels, normalise
from rundir import write_json
from study.trial import Trial

RESULTS = Path(__file__).resolve().parent / "results"


class OutOfTime(Exception):
    pass


class Check:
    def __init__(self, budget: float, out: Path, device: str, n: int | None) -> None:
        self.start, self.budget, self.out, self.device, self.n = time.monotonic(), budget, out, device, n
        self.result: dict[str, Any] = {"host": socket.gethostname(), "device": device_name(device),
                                       "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                       "command": "python -m bench.gpu_check " + " ".join(sys.argv[1:]),
                                       "budget_s": budget}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def save(self, key: str, value: Any) -> None:
        self.result[key] = value
        self.result["elapsed_s"] = round(time.monotonic() - self.start, 1)
        write_json(self.result, self.out / f"gpu_check-{socket.gethostname()}.json")
        print(f"[{self.result['elapsed_s']:6.1f}s] {key}: {value if not isinstance(value, list) else value[-1]}",
              flush=True)


def parity(check: Check, device: torch.device) -> None:
    torch.manual_seed(0)
    clean = torch.randint(0, 10, (5000,))
    rows = []
    for spec in (NoiseSpec(alpha=100, seed=3), NoiseSpec(alpha=20, seed=5, delta=0.5, order="random"),
                 NoiseSpec(alpha=7.5, seed=2**31 + 1, source="white")):
        cpu = NoiseModel(spec, clean, 10)
        v = torch.randperm(cpu.n_virtual)
        source, labels = cpu(v)
        gpu_source, gpu_labels = epoch_labels([NoiseModel(spec, clean.to(device), 10)], v.to(device))
        rows.append({"spec": str(spec), "labels": len(v), "equal": bool(torch.equal(source, gpu_source.cpu())
                                                                         and torch.equal(labels, gpu_labels[0].cpu()))})
    v = torch.arange(2**32 - 50_000, 2**32 + 50_000) * 3  # high words 0..2 of the 64-bit index
    rows.append({"spec": "hash32 past 2**32", "labels": len(v),
                 "equal": bool(torch.equal(hash32(7, v, STREAM_LABEL), hash32(7, v.to(device), STREAM_LABEL).cpu()))})
    check.save("parity", rows)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_batch_epoch(loader: TensorLoader) -> int:
    """d0564c1's loop: noise model, gather and normalise once per batch."""
    seen = 0
    for v in loader.order().split(loader.batch_size):
        source, labels = loader.noises[0](v)
        normalise(loader.images[source.clamp(min=0)], loader.scale, loader.shift)  # timed by the caller's sync
        seen += labels.numel()
    return seen


def loader_alone(check: Check, device: torch.device) -> None:
    from loaders.data import load_split
    from loaders.datasets import resolve_root

    full = load_split("mnist", str(resolve_root(None)), True)
    full = full if check.n is None else full.subset(torch.arange(check.n))
    rows = []
    for name, k in (("per epoch, K=1", 1), ("per epoch, K=8", 8), ("per batch (d0564c1)", 1)):
        noises = [NoiseModel(NoiseSpec(alpha=100, seed=s), full.labels, 10) for s in range(k)]
        loader = TensorLoader(full, noises, 128, 0, device)
        for epoch in range(2):  # the first warms up
            loader.set_epoch(epoch)
            sync(device)
            t = time.perf_counter()
            seen = per_batch_epoch(loader) if "per batch" in name else sum(y.shape[-1] for _, y in loader)
            sync(device)
            rate = seen / (time.perf_counter() - t)
        rows.append({"loader": name, "alpha": 100, "batch_size": 128, "images_per_s": round(rate)})
        check.save("loader_alone", rows)


def compile_modes(check: Check) -> str:
    rows, best = [], ("none", 0.0)
    for mode in ("none", "default", "reduce-overhead"):
        if check.left() < 60:
            break
        try:
            rate = measure([member("mnist", "conv4", 128, check.n, check.device, k, compile_mode=mode) for k in range(16)])
            rows.append({"arch": "conv4", "fuse": 16, "compile": mode, **rate})
            best = max(best, (mode, rate["model_images_per_s"]), key=lambda b: b[1])
        except Exception as exc:  # a mode that fails here must not cost the rest of the check
            rows.append({"arch": "conv4", "fuse": 16, "compile": mode, "error": repr(exc)[:300]})
        check.save("compile_modes", rows)
    return best[0]


def to_channels_last(trial: Trial) -> None:
    """Each member's conv weights (and their optimizer state) in channels-last layout, before the first step: a
    stacked (K, out, in, kh, kw) weight whose every member is (out, kh, kw, in) in memory."""
    net = trial.net
    for state in (net.params, net.square_avg, net.acc_delta):
        for name, t in state.items():
            if t.dim() == 5:
                state[name] = t.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
                torch._dynamo.mark_static_address(state[name])  # as Fused marks its own for CUDA graphs


def channels_last(check: Check, mode: str) -> None:
    """conv4 fused (K=4: the paper's groups, and 16), today's layout beside channels-last, side by side."""
    rows = []
    for k in (4, 16):
        for layout in ("nchw", "channels_last"):
            if check.left() < 60:
                return
            configs = [member("mnist", "conv4", 128, check.n, check.device, i, compile_mode=mode) for i in range(k)]
            try:
                rate = measure(configs, prepare=to_channels_last if layout == "channels_last" else None)
                rows.append({"arch": "conv4", "fuse": k, "layout": layout, **rate})
            except Exception as exc:  # a layout that fails here must not cost the rest of the check
                rows.append({"arch": "conv4", "fuse": k, "layout": layout, "error": repr(exc)[:300]})
            check.save("channels_last", rows)


def table(check: Check, mode: str) -> None:
    plan = [("mlp2", (1, 4, 16, 64)), ("mlp4", (1, 4, 16, 64)), ("conv4", (1, 4, 16, 64)), ("mlp1", (1, 4, 16, 64)),
            ("perceptron", (1, 4, 64)), ("conv2", (1, 4, 16, 64)), ("conv6", (1, 4, 16))]  # unmeasured nets first
    reserve = 0.4 * check.budget if check.alphas else 0.0  # time kept for the headline slice
    rows = []
    for arch, sizes in plan:
        if check.archs and arch not in check.archs:
            continue
        unfused = None
        for k in sizes:
            if check.left() < reserve:
                return
            try:
                rate = measure([member("mnist", arch, 128, check.n, check.device, i, compile_mode=mode) for i in range(k)])
            except Exception as exc:
                rows.append({"arch": arch, "fuse": k, "error": repr(exc)[:300]})
                check.save("table", rows)
                continue
            unfused = rate["model_images_per_s"] if k == 1 else unfused
            rows.append({"dataset": "mnist", "arch": arch, "batch_size": 128, "fuse": k, "compile": mode, **rate,
                         "vs_unfused": unfused and round(rate["model_images_per_s"] / unfused, 2)})
            check.save("table", rows)


def headline(check: Check, mode: str, out: Path) -> None:
    """Figure 1's ConvNet at paper scale (full MNIST, full test set), epochs until the budget is spent."""
    path = out / f"headline-{socket.gethostname()}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["alpha", "lr", "train_seed", "noise_seed", "epoch", "train_loss", "test_acc", "test_top5",
                         "images_per_s", "elapsed_s"])
        for alpha, members in ((100, 4), (10, 8), (0, 8)):
            if alpha not in check.alphas:
                continue
            if check.left() < 20:
                break
            configs = [member("mnist", "conv4", 128, check.n, check.device, k, alpha=alpha, epochs=10,
                              compile_mode=mode, n_test=None) for k in range(members)]
            trial = Trial(configs)

            def on_epoch(reports: list) -> None:
                for c, r in zip(configs, reports):
                    writer.writerow([alpha, c["train"]["lr"], c["train"]["seed"], c["noise"]["seed"], r.epoch,
                                     round(r.train_loss, 4), r.test_acc, r.test_top5, round(r.images_per_s),
                                     round(time.monotonic() - check.start, 1)])
                f.flush()
                best = max(reports, key=lambda r: r.test_acc)
                check.save(f"headline_alpha{alpha}", {"epoch": best.epoch, "best_test_acc": best.test_acc,
                                                      "images_per_s": round(best.images_per_s)})
                per_epoch_s = trial.data.loader.n_virtual / best.images_per_s + 5
                if check.left() < per_epoch_s:
                    raise OutOfTime

            try:
                trial.run(on_epoch)
            except OutOfTime:
                break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole check")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: try the script out, small")
    parser.add_argument("--archs", nargs="*", default=None, help="table rows of these archs only")
    parser.add_argument("--alphas", nargs="*", type=float, default=[100, 10, 0], help="headline alphas")
    parser.add_argument("--compile", default=None, help="a rerun: skip sections 1-3, use this torch.compile mode")
    parser.add_argument("--n", type=int, default=None, help="clean MNIST images (default: all 60,000)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: bench.gpu_check needs a CUDA device, and none is visible (--device cpu tries it out)",
              file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    check, device = Check(args.budget, args.out, args.device, args.n), torch.device(args.device)
    check.archs, check.alphas = args.archs, args.alphas
    for section in (parity, loader_alone) if args.compile is None else ():
        try:
            section(check, device)
        except Exception:
            check.save(f"{section.__name__}_error", traceback.format_exc()[-1500:])
    mode = args.compile or compile_modes(check)
    check.save("compile_chosen", mode)
    if not check.archs or "conv4" in check.archs:
        channels_last(check, mode)
    table(check, mode)
    headline(check, mode, args.out)
    check.save("done", True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
