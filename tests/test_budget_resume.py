"""A study in slices across machines (issue 14): stopped by budget=, packed, unpacked at another path with its
data root moved too, resumed there to a complete trials.csv: nothing lost, nothing duplicated, the finished
trial not re-run, the partial one continued from its checkpoint. And run_dir= on a folder holding the same
study continues it (issue 15 item 5): a requeued job re-running its command re-runs nothing, nor does that
command with resume= appended (issue 20 item 5)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import rundir
from tests.conftest import REPO
from tests.helpers import LAUNCHER
from tests.test_faults import TINY, rows, started

pytestmark = pytest.mark.slow
EPOCHS = 30
# Two trials, one at a time: n_clean=100 takes seconds, n_clean=3000 over a minute on one CPU, so the budget
# lands inside the second (or, on a slow machine, the first).
SLICED = ["exp=uniform_mnist", "preset=smoke", "grid.model.arch=[conv2]", "grid.noise.alpha=[4]", "grid.train.lr=[0.1]",
          "+grid.data.n_clean=[100,3000]", "data.n_test=500", "figures=[]", f"train.epochs={EPOCHS}", "ray.num_cpus=1",
          "max_concurrent_trials=1", "train.fuse=none"]


@pytest.fixture
def env(ray_tmpdir: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_tmpdir}


def mnist_at(root: Path, data_root: Path) -> Path:
    """A data root of its own (links to MNIST's files), so that it can move."""
    (root / "MNIST" / "raw").mkdir(parents=True)
    for f in (data_root / "MNIST" / "raw").iterdir():
        (root / "MNIST" / "raw" / f.name).symlink_to(f)
    return root


def run(args: list[str], env: dict[str, str], log: Path) -> tuple[int, str]:
    with started([*LAUNCHER, *args], env, log) as proc:
        code = proc.wait(400)
    return code, log.read_text()


def test_budget_pack_move_resume(data_root: Path, env: dict[str, str], tmp_path: Path) -> None:
    first, log = tmp_path / "a" / "run", tmp_path / "launch.log"
    data = mnist_at(tmp_path / "data1", data_root)
    code, text = run([*SLICED, "data.download=false", f"data.root={data}", f"run_dir={first}", "budget=40s"], env, log)
    assert code == 75 and "Traceback" not in text, text[-3000:]
    before = rows(first)
    done = {name for name, rs in before.items() if rs[-1]["epoch"] == EPOCHS}
    partial = {name for name in before if name not in done}
    assert len(partial) == 1, before  # the budget cut a trial: its epochs so far stay, at their checkpoint
    tail = text.strip().splitlines()[-3:]
    (cut,) = [rs[-1]["epoch"] for name, rs in before.items() if name in partial]
    command = f"{sys.executable} -m study.launch resume={first}"
    assert tail == [f"budget 40s spent: {len(done)} of 2 trials finished, 1 partial (each goes on from its last "
                    f"checkpoint; this slice advanced 1 of them, epochs 0 → {cut} of {EPOCHS}), {1 - len(done)} not "
                    "started; trials.csv holds the finished ones",
                    f"another slice of 40s: {command} budget=40s", f"finish the study (no budget): {command} budget=null"]
    trials = pd.read_csv(first / rundir.TRIALS)
    assert len(trials) == len(done) and (trials["epochs"] == EPOCHS).all()  # the finished ones only

    # Another machine: one file, another path, the data root moved.
    archive = tmp_path / "run.tar.gz"
    pack = [sys.executable, "-m", "study.pack"]
    subprocess.run([*pack, str(first), str(archive)], env=env, cwd=REPO, check=True, capture_output=True)
    moved = tmp_path / "b" / "elsewhere"
    subprocess.run([*pack, "--unpack", str(archive), str(moved)], env=env, cwd=REPO, check=True, capture_output=True)
    new_data = tmp_path / "data2"
    data.rename(new_data)  # the old root is gone: the trials must read the new one
    code, text = run([f"resume={moved}", f"data.root={new_data}", "budget=null"], env, log)
    assert code == 0 and "Traceback" not in text, text[-3000:]

    after = rows(moved)
    assert {n: after[n] for n in done} == {n: before[n] for n in done}  # the finished trial was not re-run
    (name,) = partial
    restarts = [r["epoch"] for r in after[name] if r["iterations_since_restore"] == 1]
    assert len(restarts) == 2 and 1 < restarts[1] <= before[name][-1]["epoch"] + 1  # on from its checkpoint
    trials = pd.read_csv(moved / rundir.TRIALS)
    assert len(trials) == 2 and trials["trial_id"].is_unique and (trials["status"] == "ok").all()
    assert sorted(trials["n_clean"]) == [100, 3000] and (trials["epochs"] == EPOCHS).all()
    epochs = pd.read_csv(moved / rundir.EPOCHS)
    assert all(g["epoch"].tolist() == list(range(1, EPOCHS + 1)) for _, g in epochs.groupby("trial_id"))

    prov = rundir.read_json(moved / rundir.PROVENANCE)
    assert [x["outcome"] for x in prov["launches"]] == ["budget spent", "finished"]
    assert prov["gpu_minutes"] == 0 and prov["wall_s"] == pytest.approx(sum(x["wall_s"] for x in prov["launches"]), abs=0.2)
    assert prov["launches"][1]["command"].endswith(f"resume={moved} data.root={new_data} budget=null")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert prov["launches"][1]["commit"] == (head or None)


def test_run_dir_resume_or_start(data_root: Path, env: dict[str, str], tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    args = [*TINY, "grid.noise.alpha=[0,1]", "grid.train.lr=[0.1]", "train.epochs=2", "ray.num_cpus=1",
            "train.fuse=none", f"run_dir={run_dir}"]
    code, text = run(args, env, log)
    assert code == 0, text[-3000:]
    before, trials = rows(run_dir), pd.read_csv(run_dir / rundir.TRIALS).sort_values("trial_id", ignore_index=True)
    code, text = run([*args, "budget=10m"], env, log)  # the requeued job: the same command (another slice)
    assert code == 0 and re.search(rf"^run dir {run_dir} holds this study: continuing it", text, re.M), text[-3000:]
    assert rows(run_dir) == before  # nothing re-ran
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / rundir.TRIALS).sort_values("trial_id", ignore_index=True), trials)
    code, text = run([*args, f"resume={run_dir}"], env, log)  # the starting command, resume= appended: accepted
    assert code == 0 and rows(run_dir) == before, text[-3000:]
    assert len(rundir.read_json(run_dir / rundir.PROVENANCE)["launches"]) == 3
