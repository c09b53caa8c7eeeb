"""bench.train writes a throughput table the dry run can read (CUDA files only feed the estimate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import train


def test_bench_train_writes_rows(data_root: Path, tmp_path: Path) -> None:
    assert train.main(["--archs", "perceptron", "--fuse", "1", "4", "--n", "500", "--out", str(tmp_path)]) == 0
    (out,) = tmp_path.glob("train-*.json")
    result = json.loads(out.read_text())
    unfused, fused = result["rows"]
    assert unfused["arch"] == "perceptron" and unfused["fuse"] == 1 and unfused["images_per_s"] > 0
    assert fused["fuse"] == 4 and fused["model_images_per_s"] == pytest.approx(4 * fused["images_per_s"], rel=1e-3)
    assert fused["vs_unfused"] == pytest.approx(fused["model_images_per_s"] / unfused["model_images_per_s"], abs=0.01)
    assert len(fused["test_acc"]) == 4
