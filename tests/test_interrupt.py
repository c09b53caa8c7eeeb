"""Ctrl-C (SIGINT) and SIGTERM of the driver mid-study: no traceback, the count of finished trials and the exact
resume= command, exit 128 + signal; a second launcher on the running study is refused; resume= then finishes
with a complete trials.csv, no finished trial re-run and none duplicated (issue 11). Processes as in
tests/test_faults.py: each in its own session, its group killed at the end, never `ray stop`."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO
from tests.helpers import LAUNCHER, launch
from tests.test_faults import finished, rows, started, wait_for

pytestmark = pytest.mark.slow
# Trials of some seconds each (conv2 on CPU): the signal lands mid-study, after the first trial finished.
SMALL = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[conv2]", "data.n_clean=500",
         "data.n_test=500", "figures=[]"]
ALPHAS = (2, 4, 6, 8)


@pytest.fixture
def env(data_root: Path, ray_tmpdir: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "STUDY_DATA_ROOT": str(data_root), "RAY_TMPDIR": ray_tmpdir}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_then_resume_finishes(signum: int, env: dict[str, str], tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    epochs = 6  # 8 trials one at a time: long enough that the signal lands mid-study
    args = [*LAUNCHER, *SMALL, "grid.noise.alpha=[2,4,6,8]", "grid.train.lr=[0.1,0.5]", f"train.epochs={epochs}",
            "ray.num_cpus=1", "max_concurrent_trials=1", "train.fuse=none", f"run_dir={run_dir}"]
    with started(args, env, log) as proc:
        wait_for(lambda: rows(run_dir), proc, log)  # the study runs
        second = launch(f"resume={run_dir}", env=env, timeout=120)
        assert second.returncode == 2 and second.stderr.strip() == (
            f"error: {run_dir} is in use: its study is still running (another launcher holds {run_dir / '.lock'}); "
            "wait for it to end, or stop it (Ctrl-C) and resume then"), second.stderr
        wait_for(lambda: sum(rs[-1]["epoch"] == epochs for rs in rows(run_dir).values()) >= 1, proc, log)
        os.kill(proc.pid, signum)
        assert proc.wait(180) == 128 + signum, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    name = signal.Signals(signum).name
    last = [line for line in text.splitlines() if line.startswith("interrupted")]
    assert len(last) == 1 and last[0].startswith(f"interrupted by {name}: ") and last[0].endswith(
        f" trials finished; finish the study with: {sys.executable} -m study.launch resume={run_dir}"), text[-2000:]
    done_before = {n for n, rs in rows(run_dir).items() if rs[-1]["epoch"] == epochs}
    before = {n: len(rows(run_dir)[n]) for n in done_before}
    assert done_before and len(done_before) < 8 and not (run_dir / "trials.csv").exists()

    with started([*LAUNCHER, f"resume={run_dir}"], env, log) as proc:
        finished(proc, log)
    after = rows(run_dir)
    assert all(len(after[n]) == before[n] for n in done_before)  # finished trials were not re-run
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 8 and (trials["status"] == "ok").all() and (trials["epochs"] == epochs).all()
    assert sorted(zip(trials["alpha"], trials["lr"])) == [(a, lr) for a in ALPHAS for lr in (0.1, 0.5)]
    assert trials["trial_id"].is_unique
