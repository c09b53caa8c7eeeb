"""What a study costs before it runs: trials, examples per trial, and estimated GPU-hours.

Throughput per (dataset, arch, batch) comes from a measured table when one exists: any
bench/results/train-*.json written by `python -m bench.train` on a CUDA device. Otherwise it comes
from a model of one H100 running these nets in eager PyTorch:
    step time = max(STEP_OVERHEAD_S, 3 * forward FLOPs * batch / SUSTAINED_FLOPS)
STEP_OVERHEAD_S is the kernel-launch floor of a small net's forward + backward + Adadelta step.
SUSTAINED_FLOPS is about 2x what FFCV's ResNet-18 ImageNet runs sustain on an A100 (≈ 2,850 img/s).
Packed trials (resources.gpu < 1) share the overhead-bound part of a GPU but not its compute:
    GPU-hours of a trial = steps * max(overhead * gpu_fraction, compute time).
"""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from loaders.datasets import NUM_CLASSES
from loaders.noise import NoiseSpec
from study import models

STEP_OVERHEAD_S = 1.5e-3
SUSTAINED_FLOPS = 30e12
# Full training sets at paper scale (the data need not be on this machine to cost a study).
TRAIN_SIZE = {"mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}
RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def image_shape(data: dict[str, Any]) -> tuple[int, int, int]:
    size = data.get("image_size", 224)
    return {"mnist": (1, 28, 28), "imagenet": (3, size, size)}.get(data["dataset"], (3, 32, 32))


def forward_flops(arch: str, data: dict[str, Any], model_cfg: dict[str, Any]) -> float:
    """Forward FLOPs per image, counted by torch on a meta-device model (no memory, no compute)."""
    shape, classes = image_shape(data), NUM_CLASSES[data["dataset"]]
    with torch.device("meta"):
        net = models.build(arch, shape, classes, model_cfg["mlp_hidden"], tuple(model_cfg["conv_channels"]),
                           model_cfg["fc_hidden"])
        x = torch.zeros(1, *shape)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def measured_throughput() -> dict[tuple[str, str, int], float]:
    """images/s per (dataset, arch, batch) from CUDA runs of bench.train, when present."""
    table: dict[tuple[str, str, int], float] = {}
    for path in sorted(glob.glob(str(RESULTS / "train-*.json"))):
        data = json.loads(Path(path).read_text())
        if "cuda" in str(data.get("device", "")).lower() or "nvidia" in str(data.get("device", "")).lower():
            for row in data["rows"]:
                table[(row["dataset"], row["arch"], row["batch_size"])] = row["images_per_s"]
    return table


def examples(config: dict[str, Any]) -> int:
    """Training examples one trial processes: epochs over its (diluted) training set."""
    n = config["data"]["n_clean"] or TRAIN_SIZE[config["data"]["dataset"]]
    alpha = 0.0 if config["train"]["loss"] == "h_alpha" else config["noise"]["alpha"]
    return NoiseSpec(alpha=alpha).n_virtual(n) * config["train"]["epochs"]


def estimate(configs: list[dict[str, Any]], gpu_fraction: float) -> dict[str, Any]:
    measured = measured_throughput()
    flops: dict[tuple[str, str, tuple[int, int, int]], float] = {}
    gpu_s = 0.0
    sources = set()
    per_trial = [examples(c) for c in configs]
    for config, n_examples in zip(configs, per_trial):
        dataset, arch, batch = config["data"]["dataset"], config["model"]["arch"], config["train"]["batch_size"]
        steps = -(-n_examples // batch)
        if (dataset, arch, batch) in measured:
            gpu_s += n_examples / measured[(dataset, arch, batch)]
            sources.add("measured (bench/results/train-*.json)")
            continue
        key = (dataset, arch, image_shape(config["data"]))
        if key not in flops:
            flops[key] = forward_flops(arch, config["data"], config["model"])
        compute_s = 3 * flops[key] * batch / SUSTAINED_FLOPS
        gpu_s += steps * max(STEP_OVERHEAD_S * min(gpu_fraction, 1.0), compute_s)
        sources.add(f"model: H100, {STEP_OVERHEAD_S * 1e3:.1f} ms/step floor, {SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s")
    return {"trials": len(configs), "examples_min": min(per_trial), "examples_max": max(per_trial),
            "examples_total": sum(per_trial), "gpu_hours": gpu_s / 3600, "source": "; ".join(sorted(sources))}
