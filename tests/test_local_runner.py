"""runner=local (study.local): a study without Ray, for one machine and for a lent GPU whose image has none. It
runs with ray (and optuna, ffcv) unimportable; it gives the trials.csv that Tune gives, number for number; a
signal or a spent budget stops it between epochs with the Tune path's exit code and resume line, and resume=
skips the finished groups and goes on with the partial one from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import rundir
from tests.conftest import REPO
from tests.helpers import LAUNCHER, SMOKE, fails
from tests.test_faults import started, wait_for

# A finder first on sys.meta_path that fails every import of these packages, as on the lent GPU's image, and
# notes each attempt (a caught ImportError would hide one).
BLOCKER = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna", "ffcv"):
            with open({log!r}, "a") as f:
                f.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent in this test)", name=name)
        return None

sys.meta_path.insert(0, Absent())
"""
# Two learning rates fused per cell, two cells, two replicates, a held-out split: four groups of two members.
STUDY = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[perceptron]",
         "grid.noise.alpha=[0,3]", "grid.train.lr=[0.1,0.5]", "replicates=2", "data.n_clean=500", "data.n_val=200",
         "data.n_test=500", "train.epochs=2", "train.fuse=2"]
# Two groups (n_clean 100 and 2000, conv2 on the CPU): the second takes seconds an epoch, so a stop lands in it.
SLICED = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[conv2]", "grid.noise.alpha=[4]",
          "grid.train.lr=[0.1]", "+grid.data.n_clean=[100,2000]", "data.n_test=500", "figures=[]", "train.epochs=6",
          "runner=local"]


def without_ray(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose Python cannot import ray, optuna or ffcv, and the file that lists each attempt."""
    site, log = tmp_path / "site", tmp_path / "imports.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(log=str(log)))
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{REPO}"}, log


def test_local_study_runs_without_ray(data_root: Path, tmp_path: Path) -> None:
    env, log = without_ray(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import ray"], env=env, capture_output=True, text=True)
    assert probe.returncode == 1 and "absent in this test" in probe.stderr  # the blocker works
    log.unlink()
    run_dir = tmp_path / "run"
    done = subprocess.run([*LAUNCHER, *STUDY, "runner=local", f"run_dir={run_dir}"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not log.exists(), log.read_text()  # not even an attempt
    # the Tune path's progress line (the other "trials: " line counts the groups)
    progress = [line for line in done.stdout.splitlines() if line.startswith("trials: ") and " · " in line]
    assert progress[0].startswith("trials: 0 done, 1 running, 3 pending · ")  # the first group's first report
    assert progress[-1].startswith("trials: 4 done, 0 running, 0 pending · took ")
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert len(trials) == 8 and (trials["status"] == "ok").all() and (trials["epochs"] == 2).all()
    assert trials["val_acc"].notna().all() and trials["trial_id"].is_unique
    assert sorted(set(trials["seed"])) == [0, 1000]  # both replicates
    epochs = pd.read_csv(run_dir / rundir.EPOCHS)
    assert sorted(epochs.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2]] * 8
    prov = rundir.read_json(run_dir / rundir.PROVENANCE)
    (launch,) = prov["launches"]
    assert launch["runner"] == "local" and "ray" not in launch and launch["outcome"] == "finished"
    assert launch["cpus"] == 1 and prov["cpu_minutes"] == pytest.approx(launch["wall_s"] / 60, abs=0.01)
    assert (run_dir / "summary.csv").is_file() and (run_dir / "fig1.png").is_file()
    assert rundir.read_study(run_dir)["config"]["runner"] == "local"


@pytest.mark.slow
def test_local_and_tune_give_the_same_trials(data_root: Path, ray_tmpdir: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_tmpdir}
    tables = {}
    for runner in ("local", "tune"):
        run_dir = tmp_path / runner
        done = subprocess.run([*LAUNCHER, *STUDY, f"runner={runner}", "ray.num_cpus=2", "figures=[]",
                               f"run_dir={run_dir}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        tables[runner] = pd.read_csv(run_dir / rundir.TRIALS).sort_values(
            ["alpha", "lr", "seed"], ignore_index=True)
    keys = ["alpha", "arch", "lr", "batch_size", "seed", "noise_seed", "order_seed", "subset_seed", "status", "epochs"]
    metrics = ["test_acc", "best_test_acc", "test_top5", "best_test_top5", "train_loss", "val_acc", "best_val_acc"]
    pd.testing.assert_frame_equal(tables["local"][keys], tables["tune"][keys])
    # The same groups, seeds and threads on the CPU in fp32: the same numbers, bit for bit.
    pd.testing.assert_frame_equal(tables["local"][metrics], tables["tune"][metrics], check_exact=True)


def test_runner_local_refuses_what_needs_ray(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = fails([*SMOKE, "runner=local", "search=optuna"], capsys, tmp_path / "run")
    assert err == ("error: runner=local needs search=grid and scheduler=none (Optuna and ASHA run inside Ray Tune): "
                   "use runner=tune")
    err = fails([*SMOKE, "runner=local", "ray.address=auto"], capsys, tmp_path / "run")
    assert err == "error: runner=local needs ray.address=null (it runs on this machine alone; a cluster needs runner=tune)"
    err = fails([*SMOKE, "runner=ray"], capsys, tmp_path / "run")
    assert err == "error: runner='ray' is unknown: choose one of tune, local"


def history(run_dir: Path, gid: str) -> pd.DataFrame:
    """A group's epochs so far, one row each: from its finished file, else its checkpoint."""
    import torch

    finished = run_dir / rundir.LOCAL / f"{gid}.json"
    if finished.is_file():
        return pd.json_normalize(json.loads(finished.read_text())["history"], sep="/")
    return pd.json_normalize(torch.load(run_dir / rundir.LOCAL / f"{gid}.pt")["history"], sep="/")


@pytest.mark.slow
def test_signal_then_resume_goes_on_from_the_checkpoint(data_root: Path, tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "launch.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with started([*LAUNCHER, *SLICED, f"run_dir={run_dir}"], env, log) as proc:
        wait_for(lambda: (run_dir / rundir.LOCAL / "local_00001.pt").is_file(), proc, log, timeout=600)
        os.kill(proc.pid, signal.SIGTERM)  # the second group has a checkpoint: it stops after its current epoch
        assert proc.wait(300) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text and text.strip().splitlines()[-1] == (
        f"interrupted by SIGTERM: 1 of 2 trials finished; finish the study with: {sys.executable} -m study.launch "
        f"resume={run_dir}"), text[-3000:]
    first, cut = history(run_dir, "local_00000"), history(run_dir, "local_00001")
    assert first["epoch"].tolist() == list(range(1, 7)) and 1 <= len(cut) < 6
    assert len(pd.read_csv(run_dir / rundir.TRIALS)) == 1  # the finished group's row, written as it ended

    with started([*LAUNCHER, f"resume={run_dir}"], env, log) as proc:
        assert proc.wait(600) == 0, log.read_text()[-3000:]
    pd.testing.assert_frame_equal(history(run_dir, "local_00000"), first)  # not re-run
    after = history(run_dir, "local_00001")
    # On from its checkpoint: the epochs before the cut are the ones measured then (their images/s included).
    pd.testing.assert_frame_equal(after.iloc[:len(cut)], cut)
    assert after["epoch"].tolist() == list(range(1, 7))
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert sorted(trials["n_clean"]) == [100, 2000] and (trials["epochs"] == 6).all()
    epochs = pd.read_csv(run_dir / rundir.EPOCHS)
    assert all(g["epoch"].tolist() == list(range(1, 7)) for _, g in epochs.groupby("trial_id"))
    outcomes = [x["outcome"] for x in rundir.read_json(run_dir / rundir.PROVENANCE)["launches"]]
    assert outcomes == ["interrupted", "finished"]


@pytest.mark.slow
def test_budget_stops_between_epochs_and_resume_finishes(data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The slow group (seconds an epoch) first: one second is spent within its first epochs on any machine, however
    # loaded (with the quick group first, a loaded machine could spend it all there and stop between the groups).
    slow_first = [a if not a.startswith("+grid.data.n_clean=") else "+grid.data.n_clean=[2000,100]" for a in SLICED]
    done = subprocess.run([*LAUNCHER, *slow_first, "budget=1s", f"run_dir={run_dir}"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 75 and "Traceback" not in done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
    head, another, finish = done.stdout.strip().splitlines()[-3:]
    assert head.startswith("budget 1s spent: 0 of 2 trials finished, 1 partial ") and head.endswith(
        ", 1 not started; trials.csv holds the finished ones"), head
    assert re.search(r"this slice advanced 1 of them, epochs 0 → [1-5] of 6\)", head), head  # the group it stopped
    command = f"{sys.executable} -m study.launch resume={run_dir}"
    assert (another, finish) == (f"another slice of 1s: {command} budget=1s",
                                 f"finish the study (no budget): {command} budget=null")
    again = subprocess.run([*LAUNCHER, f"resume={run_dir}", "budget=null"], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert sorted(trials["n_clean"]) == [100, 2000] and (trials["epochs"] == 6).all() and trials["trial_id"].is_unique
    epochs = pd.read_csv(run_dir / rundir.EPOCHS)
    assert all(g["epoch"].tolist() == list(range(1, 7)) for _, g in epochs.groupby("trial_id"))
    assert [x["outcome"] for x in rundir.read_json(run_dir / rundir.PROVENANCE)["launches"]] == ["budget spent",
                                                                                                 "finished"]


def test_resume_without_local_state_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / rundir.STUDY).write_text(json.dumps({"experiments": [], "config": {"runner": "local"}}))
    assert fails([f"resume={tmp_path}"], capsys) == (f"error: resume={tmp_path} holds no runner=local state to restore: "
                                                     "start the study afresh")


def test_resuming_a_finished_study_counts_its_groups_done(data_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """In this process: resume= of a study whose groups all finished trains nothing, writes the results again and
    its progress line counts them done (it said "0 done, 0 running, 1 pending": no group reported)."""
    from study import launch

    run_dir = tmp_path / "run"
    one = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "runner=local", "grid.model.arch=[perceptron]",
           "grid.noise.alpha=[0]", "grid.train.lr=[0.1]", "data.n_clean=100", "data.n_test=100", "train.epochs=1",
           "figures=[]"]
    assert launch.main([*one, f"run_dir={run_dir}"]) == 0
    first = pd.read_csv(run_dir / rundir.TRIALS)
    (run_dir / rundir.TRIALS).unlink()
    capsys.readouterr()
    assert launch.main([f"resume={run_dir}"]) == 0
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trials: ") and " · " in line]
    assert progress and progress[-1].startswith("trials: 1 done, 0 running, 0 pending · took ")
    assert pd.read_csv(run_dir / rundir.TRIALS).equals(first)  # written again, number for number
