"""Run-dir files get the permissions the umask gives (issue 11): atomic writes no longer leave them 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

import rundir


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(mask: int, tmp_path: Path) -> None:
    old = os.umask(mask)
    try:
        rundir.write_json({"a": 1}, tmp_path / "study.json")
        rundir.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "trials.csv")
        with rundir.atomic_path(tmp_path / "fig.png") as tmp:
            tmp.write_bytes(b"x")
        assert rundir.umask() == mask  # reading the umask leaves it as it was
    finally:
        os.umask(old)
    for name in ("study.json", "trials.csv", "fig.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "study.json", "trials.csv"]  # no temp files left


def test_collect_skips_trials_an_interrupted_study_never_started() -> None:
    from types import SimpleNamespace

    unstarted = SimpleNamespace(config=None, metrics=None, metrics_dataframe=None, error=None)
    pending = SimpleNamespace(config={"members": [{"data": {"order_seed": 0, "subset_seed": 0}, "noise": {"alpha": 0, "seed": 0}, "model": {"arch": "mlp1"},
                                                   "train": {"lr": 0.1, "batch_size": 128, "seed": 0}}]},
                              metrics=None, metrics_dataframe=None, error=None)
    trials, epochs = rundir.collect([unstarted, pending], [])
    assert len(trials) == 1 and trials["epochs"].tolist() == [0] and epochs.empty
