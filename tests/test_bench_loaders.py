"""bench.loaders runs every backend side by side, prints the markdown table and writes the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_bench_loaders_writes_table_and_json(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "loaders.json"
    env = {**os.environ, "STUDY_DATA_ROOT": str(data_root), "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "bench.loaders", "--datasets", "mnist", "--alphas", "1",
                             "--batch-sizes", "64", "--seconds", "0.05", "--reps", "1", "--cache", str(tmp_path),
                             "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    # one α > 0 (each α is a child process per backend: the suite's time); α = 0 runs the same code
    assert {(r["alpha"], r["backend"]) for r in rows} == {(1, b) for b in ("tensor", "ffcv", "ffcv-norelabel", "torch")}
    assert all(r["images_per_s"]["64"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert all(r["relabel_op_us_per_batch"]["64"] > 0 for r in rows if r["backend"] == "ffcv")
    assert "| mnist | 1 | 64 |" in result.stdout and f"written: {out}" in result.stdout
