"""bench.gpu_check runs end to end (here on the CPU, small): parity holds, the loader and the table are measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO


@pytest.mark.slow
def test_gpu_check_tries_out_on_cpu(data_root: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--device", "cpu", "--n", "300", "--budget", "40",
                           "--archs", "perceptron", "--alphas", "0", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (out,) = tmp_path.glob("gpu_check-*.json")
    result = json.loads(out.read_text())
    assert len(result["parity"]) == 4 and all(row["equal"] for row in result["parity"])
    assert [row["loader"] for row in result["loader_alone"]] == ["per epoch, K=1", "per epoch, K=8", "per batch (d0564c1)"]
    assert all(row["images_per_s"] > 0 for row in result["loader_alone"])
    rows = {row["fuse"]: row for row in result["table"]}
    assert rows[1]["vs_unfused"] == 1.0 and len(rows[64]["test_acc"]) == 64
    assert result["done"] is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is visible: the check would run")
@pytest.mark.slow  # a process of its own (4 s)
def test_gpu_check_without_cuda_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "CUDA" in done.stderr
