"""Replicates and fused groups: the study's trial configs partitioned into the members Tune trials train.

A group's members see the same images in the same order and differ only in study.trial.MEMBER_KEYS:
learning rate, weight init (train.seed) and noisy labels (noise.seed); replicates, which also differ in
example order and clean subset, form groups of their own. Where noise.seed also picks the
images (noise.source novel or white), it is part of the group key. train.fuse caps the group size:
  auto  on CUDA (resources.gpu > 0): AUTO_MAX_K; on CPU: the largest K that bench.train measured
        faster than the unfused trial for that architecture on a CPU (bench/results/train-*.json), else 1;
  none  one config per trial;
  K     at most K members.
ResNets carry BatchNorm, whose running statistics fused training would share: they run with K = 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from study import cost
from study.config import REPLICATED
from study.grid import with_value
from study.trial import shared_part

AUTO_MAX_K = 64  # the largest group measured on one GPU (bench/results/gpu_check-h200-*.json)
REPLICATE_STRIDE = 1000  # replicate r adds r * this to each replicated seed: apart from grid seeds


def replicate(configs: Sequence[dict[str, Any]], replicates: int, pinned: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every config, then its replicates 1..R-1, each REPLICATED seed but the `pinned` ones shifted by
    r * REPLICATE_STRIDE (noise.seed modulo 2**32). Replicates differ in order and subset, so each one
    forms groups of its own (study.trial.MEMBER_KEYS)."""
    out = list(configs)
    for r in range(1, replicates):
        for config in configs:
            for path in (p for p in REPLICATED if p not in pinned):
                section, key = path.split(".")
                seed = config[section][key] + r * REPLICATE_STRIDE
                config = with_value(config, path, seed % 2**32 if path == "noise.seed" else seed)
            out.append(config)
    return out


@functools.cache
def cpu_gains() -> dict[str, int]:
    """Per architecture, the largest group size that bench.train measured faster than unfused on a CPU."""
    best: dict[str, int] = {}
    for row in cost.bench_rows(on_cuda=False):
        if row.get("fuse", 1) > 1 and (row.get("vs_unfused") or 0) > 1:
            best[row["arch"]] = max(best.get(row["arch"], 1), row["fuse"])
    return best


def max_members(fuse: Any, arch: str, on_gpu: bool) -> int:
    """The group size cap of train.fuse for one architecture."""
    if arch.startswith("resnet") or fuse == "none":
        return 1
    if fuse == "auto":
        return AUTO_MAX_K if on_gpu else cpu_gains().get(arch, 1)
    return int(fuse)


def partition(configs: Sequence[dict[str, Any]], on_gpu: bool) -> list[list[dict[str, Any]]]:
    """The configs as groups, in order of first appearance, each at most its train.fuse cap, balanced."""
    keyed: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
        key = shared_part(config)
        if config["noise"]["source"] in ("novel", "white"):  # the seed picks images too: shared by members
            key["noise"]["seed"] = config["noise"]["seed"]
        keyed.setdefault(json.dumps(key, sort_keys=True), []).append(config)  # configs are plain JSON data
    groups = []
    for members in keyed.values():
        cap = max(1, max_members(members[0]["train"]["fuse"], members[0]["model"]["arch"], on_gpu))
        count = -(-len(members) // cap)
        groups += [members[i::count] for i in range(count)]  # balanced: sizes differ by at most one
    return groups
