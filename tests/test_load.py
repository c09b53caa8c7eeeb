"""Load: 60 tiny trials on a local Ray all reach trials.csv, none lost or duplicated, and the driver's memory
stays bounded (issue 11). 60, not 200: each trial costs ~4 s of Ray overhead on 2 cores, and 60 trials still
cycle every trial slot some 30 times (200 took 15 minutes of CI)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tests.conftest import REPO
from tests.helpers import LAUNCHER

pytestmark = pytest.mark.slow
TRIALS = 200
LEAK_BYTES = 512 * 2**20
DRIVER_MAX_BYTES = 3 * 2**30  # the driver holds configs and results, never a dataset: a leak would pass this


def test_many_trials_all_reach_trials_csv_once_each(data_root: Path, tmp_path: Path, ray_tmpdir: str) -> None:
    run_dir = tmp_path / "run"
    args = [*LAUNCHER, "exp=uniform_mnist", "preset=smoke", "data.download=false",
            "grid.noise.alpha=[0]", "grid.model.arch=[perceptron]", "grid.train.lr=[0.1]",
            f"+grid.train.seed=[{','.join(map(str, range(TRIALS)))}]", "train.fuse=none",  # one Tune trial each
            "data.n_clean=100", "data.n_test=100", "train.epochs=1", "train.checkpoint_every=0", "figures=[]",
            f"run_dir={run_dir}"]
    env = {**__import__("os").environ, "PYTHONPATH": str(REPO), "STUDY_DATA_ROOT": str(data_root),
           "RAY_TMPDIR": ray_tmpdir}
    log = tmp_path / "launch.log"
    with log.open("w") as sink:  # a file, not a pipe: nobody reads a pipe while this loop samples memory, and
        # a full one (Tune prints every trial's config) blocks the driver for good
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
        driver, rss = psutil.Process(proc.pid), []
        deadline = time.monotonic() + 900
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                rss.append(driver.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
            pytest.fail(f"the study did not finish in 900 s: {log.read_text()[-3000:]}")
    peak = max(rss)
    assert proc.returncode == 0, log.read_text()[-3000:]
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == TRIALS and trials["trial_id"].is_unique and trials["group"].is_unique
    assert sorted(trials["seed"]) == list(range(TRIALS)) and (trials["status"] == "ok").all()
    assert peak < DRIVER_MAX_BYTES, f"driver peak RSS {peak / 2**20:.0f} MiB"
    # bounded, not growing per trial: the last third of the run holds little more than the first third
    # (a dataset kept per trial, ~50 MB for MNIST, would add over 3 GB across the last 67 trials)
    third = len(rss) // 3
    growth = max(rss[-third:]) - max(rss[:third])
    assert growth < LEAK_BYTES, f"driver RSS grew {growth / 2**20:.0f} MiB from the first to the last third"
