"""Every paper experiment runs end to end at preset=smoke through Ray Tune and yields its figures and claims.

Slow (about 10-20 minutes on 2 cores in all): each study is the real launcher in a subprocess, on real
MNIST/CIFAR-10, or on a generated stand-in where a dataset is absent (CIFAR-100, ImageNet).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

# Figures whose claims a smoke grid measures (others need alpha = 100, ResNets or ImageNet: paper scale).
MEASURED_AT_SMOKE = {"fig5", "fig6", "fig7", "fig8", "fig9", "fig11", "fig12"}


def launch(exp: str, run_dir: Path, data_root: Path, *overrides: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "study.launch", f"exp={exp}", "preset=smoke", "data.download=false",
                           f"run_dir={run_dir}",
                           *overrides], capture_output=True, text=True, cwd=REPO, timeout=1200,
                          env={**os.environ, "STUDY_DATA_ROOT": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir.resolve()}"
    return run_dir


@pytest.fixture(scope="module")
def confusion(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """exp=confusion, which exp=structured needs for its confusing/reverse orders."""
    tmp = tmp_path_factory.mktemp("confusion")
    launch("confusion", tmp / "run", data_root, f"noise.confusion={tmp / 'mnist.npy'}")
    return tmp


@pytest.mark.slow
def test_confusion_artifact(confusion: Path) -> None:
    import numpy as np

    counts = np.load(confusion / "mnist.npy")
    assert counts.shape == (10, 10) and np.trace(counts) / counts.sum() > 0.5
    assert (confusion / "run" / "confusion.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("exp", ["batchsize", "structured", "noise_source", "repeated", "dataset_size",
                                 "learning_rate", "uniform_cifar10", "uniform_imagenet", "dataset_size_imagenet"])
def test_experiment_yields_figures_and_claims(exp: str, confusion: Path, data_root: Path, tmp_path: Path) -> None:
    run_dir = launch(exp, tmp_path / "run", data_root, f"noise.confusion={confusion / 'mnist.npy'}")
    study = pd.read_json(run_dir / "study.json", typ="series")
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == study["trials"] and (trials["status"] == "ok").all()
    for figure in study["figures"]:
        assert (run_dir / f"{figure}.png").stat().st_size > 10_000, figure
    claims = pd.read_csv(run_dir / "claims.csv", keep_default_na=False)  # empty cells stay ""
    for figure in MEASURED_AT_SMOKE & set(study["figures"]):
        verdicts = set(claims[claims["figure"] == figure]["verdict"])
        assert verdicts & {"held", "contradicted", "inconclusive"}, (figure, claims[claims["figure"] == figure])
