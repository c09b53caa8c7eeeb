"""bench.replicates times what it says: its per-member group trains each member exactly as that member's own
replicate group does, and its table holds every variant with its ratio to separate groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import replicates


def test_per_member_group_trains_each_member_as_its_replicate_group(data_root: Path) -> None:
    variants = replicates.runs("mlp1", 2, 200, 1.0, "cpu")
    replicates.epoch(variants["separate"])
    replicates.epoch(variants["per-member"])
    (fused, _, _, members), = variants["per-member"]
    separate = [net for net, _, _, _ in variants["separate"]]
    assert members == 8 and len(separate) == 2
    for k in range(members):
        own = separate[k // 4].weights(k % 4)
        for name, weight in fused.weights(k).items():
            torch.testing.assert_close(weight, own[name], rtol=1e-4, atol=1e-6)
    assert not torch.equal(variants["separate"][0][1].images, variants["separate"][1][1].images)  # two clean subsets


def test_bench_replicates_writes_every_variant(data_root: Path, tmp_path: Path) -> None:
    argv = ["--archs", "perceptron", "--replicates", "2", "--n", "200", "--rounds", "1", "--out", str(tmp_path)]
    assert replicates.main(argv) == 0
    (out,) = tmp_path.glob("replicates-*.json")
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert result["replicates"] == 2 and row["arch"] == "perceptron"
    for variant in replicates.VARIANTS:
        assert row[variant]["cpu"] > 0 and row[variant]["wall"] > 0
        assert row[variant]["vs_separate"] == pytest.approx(row[variant]["cpu"] / row["separate"]["cpu"], abs=0.01)
