"""Every paper experiment runs end to end at preset=smoke through Ray Tune and yields its figures and claims.

Slow (about 10-20 minutes on 2 cores in all): each study is the real launcher in a subprocess, on real
MNIST/CIFAR-10, or on a generated stand-in where a dataset is absent (CIFAR-100, ImageNet).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis import claims as analysis_claims
from analysis.intervals import NOISE_FLOOR
from tests.helpers import launch

# Figures whose claims a smoke grid measures (others need alpha = 100, ResNets or ImageNet: paper scale).
MEASURED_AT_SMOKE = {"fig5", "fig6", "fig7", "fig8", "fig9", "fig11", "fig12"}
# Claims (by their first words) of a drawn figure that the smoke grid cannot measure: no ResNet at α = 10
# (conv4/conv6 at α ≤ 2), no ResNet-18 at α = 5, no α = 50 among dataset_size's [0, 2, 10].
NOT_RUN_AT_SMOKE = {"uniform_cifar10": ["CIFAR-10: ResNet"], "uniform_imagenet": ["ImageNet: ResNet-18"],
                    "dataset_size": ["α = 50 needs"]}


def acc(trials: pd.DataFrame, **where: object) -> float:
    """Mean test accuracy of the finished trials matching `where` (over replicates and other keys)."""
    rows = trials[trials["status"] == "ok"]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    assert len(rows), where
    return float(rows["test_acc"].mean())


def best_lr(trials: pd.DataFrame, alpha: float) -> float:
    rows = trials[(trials["status"] == "ok") & (trials["alpha"] == alpha)]
    return float(rows.groupby("lr")["test_acc"].mean().idxmax())


# The verdict each smoke grid must give, recomputed from its trials.csv by the claim's plain definition on
# that grid (one replicate, so each accuracy counts as ± NOISE_FLOOR, carried through the effect; one lr
# per cell except learning_rate; test-set selection: n_val = 0).
PAIR, FROM_3 = NOISE_FLOOR * 2 ** 0.5, NOISE_FLOOR * (4 / 3) ** 0.5  # the floor of two cells; of a cell less the mean of 3


def judged(margin: float, floor: float) -> str:
    """The verdict of an effect `margin` inside its band (negative: outside) when one replicate gives no interval."""
    return "held" if margin > floor else "contradicted" if margin < -floor else "inconclusive"


ORACLES = {
    "batchsize": {"Larger batches": lambda t: judged(acc(t, alpha=10, loss="ce", batch_size=256)
                                                     - acc(t, alpha=10, loss="ce", batch_size=32), PAIR),
                  "With H_α": lambda t: judged(0.03 - (acc(t, alpha=0, loss="h_alpha") - acc(t, alpha=10, loss="h_alpha")),
                                               PAIR)},
    "structured": {"Structured noise": lambda t: judged(0.05 - (acc(t, delta=0.0) - t[t["delta"] == 0.5]["test_acc"].min()),
                                                        FROM_3)},
    "noise_source": {"White-noise": lambda t: judged(0.03 - (acc(t, alpha=0) - acc(t, alpha=2, source="white")), FROM_3)},
    "repeated": {"Novel vs repeated": lambda t: judged(0.02 - abs(acc(t, alpha=5, source="same")
                                                                 - acc(t, alpha=5, source="novel")), PAIR)},
    "learning_rate": {"The optimal learning rate": lambda t: "contradicted" if best_lr(t, 4) > best_lr(t, 0) or (
        best_lr(t, 0) < 1.0 and acc(t, alpha=0, lr=best_lr(t, 0)) - acc(t, alpha=0, lr=1.0) > PAIR) else "inconclusive"},
}


def smoke(exp: str, run_dir: Path, data_root: Path, *overrides: str) -> Path:
    """exp=<exp> preset=smoke through the launcher, to its end: its run dir."""
    proc = launch(f"exp={exp}", "preset=smoke", "data.download=false", f"run_dir={run_dir}", *overrides, timeout=1200,
                  env={"STUDY_DATA_ROOT": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"results: {run_dir.resolve()}"
    return run_dir


@pytest.fixture(scope="module")
def confusion(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """exp=confusion, which exp=structured needs for its confusing/reverse orders."""
    tmp = tmp_path_factory.mktemp("confusion")
    smoke("confusion", tmp / "run", data_root, f"noise.confusion={tmp / 'mnist.npy'}")
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
    run_dir = smoke(exp, tmp_path / "run", data_root, f"noise.confusion={confusion / 'mnist.npy'}")
    study = pd.read_json(run_dir / "study.json", typ="series")
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == study["trials"] and (trials["status"] == "ok").all()
    for figure in study["figures"]:
        assert (run_dir / f"{figure}.png").stat().st_size > 10_000, figure
    claims = pd.read_csv(run_dir / "claims.csv", keep_default_na=False)  # empty cells stay ""
    verdict = {claim: word for claim, word in zip(claims["claim"], claims["verdict"])}
    first = lambda prefix: next(c for c in verdict if c.startswith(prefix))  # noqa: E731
    # the report the launcher wrote is the analysis of its own result files
    assert verdict == dict(zip(*analysis_claims.evaluate([run_dir])[["claim", "verdict"]].to_numpy().T))
    assert all(verdict[c.claim] == "not run" for c in analysis_claims.CLAIMS if c.figure not in study["figures"])
    not_run = [first(p) for p in NOT_RUN_AT_SMOKE.get(exp, [])]
    assert all(verdict[c] == "not run" for c in not_run), claims
    for figure in MEASURED_AT_SMOKE & set(study["figures"]):
        for c in claims[claims["figure"] == figure]["claim"]:
            assert c in not_run or verdict[c] in {"held", "contradicted", "inconclusive"}, (c, verdict[c])
    for prefix, oracle in ORACLES.get(exp, {}).items():
        assert verdict[first(prefix)] == oracle(trials), (prefix, claims, trials)
