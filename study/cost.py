"""What a study costs before it runs: configs, trials (fused groups), examples, and estimated GPU-hours.

Throughput per (dataset, arch, batch, group size K) comes from measured tables when they exist: the
rows of bench/results/train-*.json (`python -m bench.train --fuse ...`) and gpu_check-*.json
(`python -m bench.gpu_check`) taken on a CUDA device, in model-images/s. A group of K members is
costed at the rate interpolated (log-log) between the measured sizes around K.
Otherwise a model of one H200 running these nets, calibrated with bench/results/gpu_check-h200-*.json:
    step time = max(STEP_OVERHEAD_S, K * 3 * forward FLOPs * batch / SUSTAINED_FLOPS)
STEP_OVERHEAD_S is an unfused conv4 step (forward, backward, Adadelta: 48k images/s at batch 128);
SUSTAINED_FLOPS is what fused groups of 64 sustained in bf16 (conv2 53, conv4 72, mlp1 33 TFLOP/s).
Packed trials (resources.gpu < 1) share the overhead-bound part of a GPU but not its compute:
    GPU-hours of a group = steps * max(overhead * gpu_fraction, compute time).
"""

from __future__ import annotations

import csv
import functools
import glob
import json
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from loaders import backends, datasets
from loaders.noise import NoiseSpec
from study import models
from study.config import Config

STEP_OVERHEAD_S = 2.7e-3
SUSTAINED_FLOPS = 50e12
# Full training sets at paper scale (the data need not be on this machine to cost a study).
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def train_size(data: dict[str, Any]) -> int:
    """The full training split's size: the paper's datasets', or a folder tree's."""
    return len(datasets.tree(data).train) if data["dataset"] == "folder" else TRAIN_SIZE[data["dataset"]]


def image_shape(data: dict[str, Any]) -> tuple[int, int, int]:
    size = data.get("image_size", 224)
    if data["dataset"] == "folder":  # a tree read from .betons is centre-cropped to image_size
        return (3, size, size) if backends.on_disk(data) else datasets.tree(data).image_shape(size)
    return {"mnist": (1, 28, 28), "imagenet": (3, size, size)}.get(data["dataset"], (3, 32, 32))


def forward_flops(arch: str, data: dict[str, Any], model_cfg: dict[str, Any]) -> float:
    """Forward FLOPs per image, counted by torch on a meta-device model (no memory, no compute)."""
    shape, classes = image_shape(data), datasets.num_classes(data)
    with torch.device("meta"):
        net = models.build(arch, shape, classes, model_cfg["mlp_hidden"], tuple(model_cfg["conv_channels"]),
                           model_cfg["fc_hidden"])
        x = torch.zeros(1, *shape)
    with FlopCounterMode(display=False) as counter:
        net.eval()(x)  # eval: BatchNorm takes one image at any feature-map size; the FLOPs are the same
    return float(counter.get_total_flops())


def bench_rows(on_cuda: bool) -> Iterator[dict[str, Any]]:
    """The rows of the committed benchmark tables (bench.train, bench.gpu_check) measured on CUDA, or on a CPU."""
    for path in sorted(glob.glob(str(RESULTS / "train-*.json")) + glob.glob(str(RESULTS / "gpu_check-*.json"))):
        data = json.loads(Path(path).read_text())
        device = str(data.get("device", "")).lower()
        if ("cuda" in device or "nvidia" in device) == on_cuda:
            yield from (row for row in data.get("rows", data.get("table", [])) if "error" not in row)


def measured_throughput() -> dict[tuple[str, str, int], dict[int, float]]:
    """Model-images/s per (dataset, arch, batch) and group size K, from CUDA runs of the benchmarks."""
    table: dict[tuple[str, str, int], dict[int, float]] = {}
    for row in bench_rows(on_cuda=True):
        rate = row.get("model_images_per_s", row["images_per_s"])
        table.setdefault((row["dataset"], row["arch"], row["batch_size"]), {})[row.get("fuse", 1)] = rate
    return table


def examples(config: dict[str, Any]) -> int:
    """Training examples one trial processes: epochs over its (diluted) training set."""
    n = config["data"]["n_clean"] or train_size(config["data"]) - (config["data"].get("n_val") or 0)
    alpha = 0.0 if config["train"]["loss"] == "h_alpha" else config["noise"]["alpha"]
    return NoiseSpec(alpha=alpha).n_virtual(n) * config["train"]["epochs"]


def group_rate(rates: dict[int, float], k: int) -> float:
    """Model-images/s of a group of k from the sizes measured: log-log interpolation between the two that
    bracket k; the nearest measured size outside them (never extrapolated)."""
    sizes = sorted(rates)
    below, above = [s for s in sizes if s <= k], [s for s in sizes if s >= k]
    if not below or not above:
        return rates[sizes[0] if not below else sizes[-1]]
    lo, hi = below[-1], above[0]
    if lo == hi:
        return rates[lo]
    t = math.log(k / lo) / math.log(hi / lo)
    return rates[lo] * (rates[hi] / rates[lo]) ** t


def estimate(groups: list[list[dict[str, Any]]], gpu_fraction: float) -> dict[str, Any]:
    """Cost of a study's trials, each a group of member configs (members share every example)."""
    measured = measured_throughput()
    flops: dict[tuple[str, str, tuple[int, int, int]], float] = {}
    gpu_s = 0.0
    sources = set()
    per_config = [examples(c) for group in groups for c in group]
    for group in groups:
        config, k, n_examples = group[0], len(group), examples(group[0])
        dataset, arch, batch = config["data"]["dataset"], config["model"]["arch"], config["train"]["batch_size"]
        rates = measured.get((dataset, arch, batch))
        if rates:
            gpu_s += n_examples * k / group_rate(rates, k)
            sources.add("measured (bench/results/*.json)")
            continue
        key = (dataset, arch, image_shape(config["data"]))
        if key not in flops:
            flops[key] = forward_flops(arch, config["data"], config["model"])
        compute_s = k * 3 * flops[key] * batch / SUSTAINED_FLOPS
        gpu_s += -(-n_examples // batch) * max(STEP_OVERHEAD_S * min(gpu_fraction, 1.0), compute_s)
        sources.add(f"model: H200, {STEP_OVERHEAD_S * 1e3:.1f} ms/step floor, {SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s")
    return {"configs": len(per_config), "trials": len(groups), "max_members": max(len(g) for g in groups),
            "examples_min": min(per_config), "examples_max": max(per_config), "examples_total": sum(per_config),
            "gpu_hours": gpu_s / 3600, "source": "; ".join(sorted(sources))}


def dry_run_text(cfg: Config, choices: dict[str, str], grids: list[dict[str, list[Any]]],
                 groups: list[list[dict[str, Any]]]) -> str:
    """What dry_run=true prints: the study's shape, its trials and examples, and its estimated time on the
    device it asks for (resources.gpu > 0: GPUs, as measured on the card of bench/results; 0: this machine's
    CPUs), with the launch's fixed cost."""
    gpu = cfg.resources.gpu
    cost = estimate(groups, gpu or 1.0)
    shape = " + ".join(" x ".join(f"{path} {len(values)}" for path, values in grid.items()) or "1"
                       for grid in grids)
    replicates = f", x {cfg.replicates} replicates" if cfg.replicates > 1 else ""
    fixed_s, fixed = fixed_cost(groups, cfg.runner, bool(gpu))
    if gpu:
        when = (f"estimated GPU time: {cost['gpu_hours'] + fixed_s / 3600:.3g} GPU-hours at {gpu:g} GPU per trial on "
                f"{' or '.join(cuda_devices()) or 'a GPU'} [{cost['source']}; {fixed}]")
    else:
        hours, device = local_hours(groups, cfg.resources.cpu, cores(cfg), 0, 0)
        when = (f"estimated time on this machine's CPUs (resources.gpu=0): {hours + fixed_s / 3600:.3g} hours on "
                f"{device} [CPU rows of bench/results/train-*.json; {fixed}]")
    return "\n".join([
        f"dry run: exp={choices['exp']} preset={choices['preset']} (nothing started, nothing written)",
        f"configs: {cost['configs']} ({shape}{replicates}), in {cost['trials']} trials "
        f"(fused groups of up to {cost['max_members']} members)",
        f"examples per config: {cost['examples_min']:,} to {cost['examples_max']:,} "
        f"(total {cost['examples_total']:.3g})",
        when,
    ])


def cuda_devices() -> list[str]:
    """The CUDA cards the committed benchmark tables were measured on."""
    paths = glob.glob(str(RESULTS / "train-*.json")) + glob.glob(str(RESULTS / "gpu_check-*.json"))
    names = (str(json.loads(Path(p).read_text()).get("device", "")) for p in sorted(paths))
    return sorted({n for n in names if "cuda" in n.lower() or "nvidia" in n.lower()})


def cores(cfg: Config) -> int:
    """The cores a study trains on here: runner=local's one group at a time has resources.cpu; Tune's local
    Ray, ray.num_cpus, else every core."""
    if cfg.runner == "local":
        return max(1, int(cfg.resources.cpu))
    return cfg.ray.num_cpus or os.cpu_count() or 1


def launch_overhead(runner: str) -> dict[str, Any]:
    """What a launch costs beyond training, per runner (bench.launch_overhead): launch_s once, group_s per
    group, and the host it was measured on; this host's table if it has one, else the first; zeros without."""
    tables = {Path(p).stem.split("-", 1)[1]: json.loads(Path(p).read_text())
              for p in sorted(glob.glob(str(RESULTS / "launch_overhead-*.json")))}
    host = socket.gethostname() if socket.gethostname() in tables else next(iter(tables), None)
    measured = tables[host]["fixed"].get(runner) if host else None
    return {"launch_s": 0.0, "group_s": 0.0, "host": None, **(measured or {}), **({"host": host} if measured else {})}


@functools.cache
def compile_seconds() -> float:
    """Seconds a fused group's first epoch on CUDA takes beyond its steady ones (torch.compile, CUDA graphs,
    the allocator): the largest in the headline runs of bench.gpu_check (full MNIST, 60,000 (1 + alpha)
    images an epoch, its train-loop rate per epoch); 0 without one."""
    excess = [0.0]
    for path in sorted(glob.glob(str(RESULTS / "headline-*.csv"))):
        with open(path, newline="") as f:
            rates: dict[float, dict[int, float]] = {}
            for row in csv.DictReader(f):
                rates.setdefault(float(row["alpha"]), {})[int(row["epoch"])] = float(row["images_per_s"])
        for alpha, by_epoch in rates.items():
            if 1 in by_epoch and len(by_epoch) > 1:
                n = TRAIN_SIZE["mnist"] * (1 + alpha)
                excess.append(n / by_epoch[1] - n / by_epoch[max(by_epoch)])
    return max(excess)


def fixed_cost(groups: list[list[dict[str, Any]]], runner: str, on_cuda: bool) -> tuple[float, str]:
    """A launch's seconds beyond training (its start, its groups', on CUDA each fused group's compilation; counted
    one after another, an upper bound where Tune runs trials side by side), and the same in words."""
    o, fused = launch_overhead(runner), sum(len(g) > 1 for g in groups) if on_cuda else 0
    seconds = o["launch_s"] + len(groups) * o["group_s"] + fused * compile_seconds()
    where = f" measured on {o['host']}" if o["host"] else " not measured (bench.launch_overhead)"
    compiled = f" + {fused} x {compile_seconds():.0f} s to compile" if fused else ""
    return seconds, (f"with {duration(seconds)} fixed for runner={runner}{where}: {o['launch_s']:.0f} s a launch + "
                     f"{len(groups)} x {o['group_s']:.1f} s a group{compiled}")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _cpu_rates() -> dict[tuple[str, str, int], dict[int, float]]:
    """Model-images/s per CPU core per (dataset, arch, batch) and group size K, from CPU runs of bench.train
    (a wall-clock table's rate divided by the threads it ran with, a --clock cpu table's as it is: trials are
    costed as if rates scale with cores)."""
    table: dict[tuple[str, str, int], dict[int, float]] = {}
    for path in sorted(glob.glob(str(RESULTS / "train-*.json"))):
        data = json.loads(Path(path).read_text())
        device = str(data.get("device", "")).lower()
        if "cuda" in device or "nvidia" in device:
            continue
        threads = 1 if data.get("clock") == "cpu" else data.get("threads") or 1  # rates per CPU-second: per core
        for row in data.get("rows", []):
            if "error" not in row:
                rate = row.get("model_images_per_s", row["images_per_s"]) / threads
                table.setdefault((row["dataset"], row["arch"], row["batch_size"]), {})[row.get("fuse", 1)] = rate
    return table


def cpu_factor(cpu: dict[tuple[str, str, int], dict[int, float]] | None = None) -> float:
    """CPU-core-seconds per GPU-second for configs no CPU row covers: the largest ratio of a CUDA rate to a
    CPU core's rate, unfused, over the (dataset, arch, batch) both tables measured (conv4 on MNIST: ~48),
    so an unmeasured net is costed like the most compute-bound measured one; CPU_FACTOR when none is."""
    cpu = _cpu_rates() if cpu is None else cpu
    ratios = [rates[1] / cpu[key][1] for key, rates in measured_throughput().items() if 1 in rates and 1 in cpu.get(key, {})]
    return max(ratios, default=CPU_FACTOR)


CPU_FACTOR = 50.0  # fallback of cpu_factor: a CPU core is ~50x slower than one GPU on a ConvNet step


def local_hours(groups: list[list[dict[str, Any]]], cpus_per_trial: float, cpus: int, gpu_per_trial: float,
                gpus: int) -> tuple[float, str]:
    """Estimated wall-clock hours of a study on this machine, and on what: GPU trials from estimate() over
    the GPUs here; CPU trials from the CPU rows of bench.train (per core, trials running side by side on
    the cores), or the GPU estimate times cpu_factor() where no CPU row covers their net."""
    if gpu_per_trial > 0 and gpus > 0:
        return estimate(groups, gpu_per_trial)["gpu_hours"] / gpus, f"{gpus} GPU"
    rates, factor, core_s = _cpu_rates(), None, 0.0
    for group in groups:
        config, k = group[0], len(group)
        measured = rates.get((config["data"]["dataset"], config["model"]["arch"], config["train"]["batch_size"]))
        if measured:
            core_s += examples(config) * k / group_rate(measured, k)
        else:
            factor = cpu_factor(rates) if factor is None else factor
            core_s += estimate([group], 1.0)["gpu_hours"] * 3600 * factor
    side_by_side = min(max(1, int(cpus // cpus_per_trial)), len(groups)) * cpus_per_trial  # cores busy at once
    return core_s / min(side_by_side, cpus) / 3600, f"{cpus} CPU core{'s' * (cpus != 1)}"
