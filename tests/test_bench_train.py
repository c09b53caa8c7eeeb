"""bench.train writes a throughput table the dry run can read (CUDA files only feed the estimate)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import train


def test_bench_train_writes_rows(data_root: Path, tmp_path: Path) -> None:
    assert train.main(["--archs", "perceptron", "--n", "500", "--out", str(tmp_path)]) == 0
    (out,) = tmp_path.glob("train-*.json")
    result = json.loads(out.read_text())
    assert result["rows"][0]["arch"] == "perceptron" and result["rows"][0]["images_per_s"] > 0
