"""search=optuna with scheduler=asha end to end: one Tuner per (alpha, arch) cell, the trial budget per cell,
the same trials.csv columns as a grid study, and a GPU request that falls back to CPU only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from study import launch

pytestmark = pytest.mark.slow


def test_optuna_asha_per_cell(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str], ray_tmpdir: str) -> None:
    monkeypatch.setenv("RAY_TMPDIR", ray_tmpdir)
    run_dir = tmp_path / "run"
    argv = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "search=optuna", "scheduler=asha",
            "search.trials_per_cell=2", "grid.noise.alpha=[0,1]", "grid.model.arch=[perceptron]", "data.n_clean=500", "data.n_test=500",
            "train.epochs=2", "ray.num_cpus=2", "resources.gpu=0.25", "resources.allow_cpu_fallback=true",
            "figures=[]", f"run_dir={run_dir}"]
    assert launch.main(argv) == 0
    assert "resources.gpu=0.25 becomes 0" in capsys.readouterr().err
    study = json.loads((run_dir / "study.json").read_text())
    assert study["searched"] == ["lr", "batch_size"] and study["experiments"] == ["tune/cell-000", "tune/cell-001"]
    trials = pd.read_csv(run_dir / "trials.csv")
    assert list(trials.columns[:5]) == ["alpha", "arch", "lr", "batch_size", "seed"]
    assert trials.groupby("alpha").size().tolist() == [2, 2] and (trials["status"] == "ok").all()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary["alpha"].tolist() == [0, 1]  # one best (lr, batch_size) per cell
