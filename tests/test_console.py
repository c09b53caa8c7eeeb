"""What a researcher reads (issue 23): one progress line per study with trials done/running/pending and an ETA,
Ray's known-harmless messages filtered, the budget line saying what advanced with both commands, no .lock left
behind, and a folder study that runs as documented and describes itself (slow)."""

from __future__ import annotations

import io
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rundir
from study import console, slices
from study.console import Progress, TrialState, progress_line
from tests.helpers import launch
from tests.test_folder import tree


def test_the_progress_line() -> None:
    assert progress_line(3, 2, 10, 250) == "trials: 3 done, 2 running, 10 pending · ETA 4m10s"
    assert progress_line(0, 0, 5, None) == "trials: 0 done, 0 running, 5 pending · ETA --"
    assert progress_line(4, 0, 0, None, failed=1, took_s=3725) == "trials: 4 done (1 failed), 0 running, 0 pending · took 1h02m"


def test_progress_counts_and_an_eta_from_the_examples_left(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    progress = Progress(total=4, out=out)  # a fourth trial not created yet (Optuna): pending, at the mean work
    progress.update({"a": TrialState("running", 2, 10, 1000.0), "b": TrialState("pending", 0, 10, 3000.0),
                     "c": TrialState("done", 10, 10, 2000.0)})  # a resumed study: a and c were this far already
    assert progress.counts() == (1, 0, 1, 2) and progress.eta() is None  # nothing trained in this launch yet
    clock[0] = 160.0
    progress.update({"a": TrialState("running", 6, 10, 1000.0)})  # 400 examples in 60 s
    left = 1000 * 0.4 + 3000 + 2000  # a's last 4 epochs, b, and the trial to come at the mean of the three
    assert progress.eta() == pytest.approx(60 * left / 400)
    assert progress.advanced() == [(2, 6, 10)]
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "trials: 1 done, 1 running, 2 pending · ETA --"  # off a terminal: a line on the first report
    assert lines[-1] == "trials: 1 done, 1 running, 2 pending · took 1m00s"


def test_rays_known_harmless_messages_are_filtered(caplog: pytest.LogCaptureFixture) -> None:
    console.quiet_ray()
    console.quiet_ray()  # once per logger, however often it is called
    caplog.set_level(logging.INFO)
    emit = {name: logging.getLogger(name) for name in console.QUIET}
    emit["ray._private.authentication.authentication_token_setup"].warning(
        "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.")
    emit["ray._private.worker"].info("Started a local Ray instance. View the dashboard at 127.0.0.1:8265")
    emit["ray.tune.tune"].warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.")
    fetch = emit["ray.tune.analysis.experiment_analysis"]
    fetch.warning("Failed to fetch metrics for 2 trial(s):\n- t1: FileNotFoundError('no result')\n"
                  "- t2: FileNotFoundError('no result')")
    fetch.warning("Failed to fetch metrics for 1 trial(s):\n- t3: ValueError('a corrupt result.json')")
    emit["ray.tune.tune"].warning("Trial t4 errored")  # anything else passes
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == ["Failed to fetch metrics for 1 trial(s):",
                                                                        "Trial t4 errored"]
    assert len(emit["ray._private.worker"].filters) == 1


def test_the_dashboard_says_how_to_authenticate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    (line,) = console.dashboard_lines("127.0.0.1:8266")
    assert line.startswith("dashboard: http://127.0.0.1:8266 (token authentication: paste the token of "
                           "`ray get-auth-token`, kept in ~/.ray/auth_token") and "Authorization: Bearer" in line
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert console.dashboard_lines("127.0.0.1:8266") == ["dashboard: http://127.0.0.1:8266"]
    assert console.dashboard_lines(None) == ["dashboard: not running (Ray was started without it)"]
    assert console.tensorboard_line(Path("/x/run")) .endswith("tensorboard --logdir /x/run/tune")


def test_the_budget_line_says_what_advanced_and_gives_both_commands(tmp_path: Path) -> None:
    text = str(slices.BudgetSpent("60s", tmp_path, 1, 2, 5, [(2, 4, 6), (0, 2, 6)])).splitlines()
    command = f"{sys.executable} -m study.launch resume={tmp_path}"
    assert text == ["budget 60s spent: 1 of 5 trials finished, 2 partial (each goes on from its last checkpoint; this "
                    "slice advanced 2 of them, epochs 0 → 2 of 6, 2 → 4 of 6), 2 not started; trials.csv holds the "
                    "finished ones",
                    f"another slice of 60s: {command} budget=60s",
                    f"finish the study (no budget): {command} budget=null"]


def test_the_lock_is_removed_when_the_launcher_ends_and_a_late_opener_locks_the_new_one(tmp_path: Path) -> None:
    import fcntl
    import os

    rundir.lock(tmp_path)
    late = os.open(tmp_path / rundir.LOCK, os.O_RDWR)  # a second launcher opened the file before it went
    rundir.unlock_all()
    assert not (tmp_path / rundir.LOCK).exists() and not rundir.LOCKS
    fcntl.flock(late, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it locks the removed file ...
    rundir.lock(tmp_path)  # ... which does not keep anyone else from the path
    assert (tmp_path / rundir.LOCK).exists()
    rundir.unlock_all()
    os.close(late)


@pytest.mark.slow
def test_a_folder_study_with_a_matrix_file_runs_quietly_and_says_what_it_ran(tmp_path: Path, data_root: Path,
                                                                            ray_tmpdir: str) -> None:
    """The documented own-images command on a 3-class tree smaller than preset=smoke's sizes, with a noise matrix
    file: the sizes fit the folder, the console is the launcher's own lines, and the results name the folder, its
    classes and the matrix file."""
    path = tree(tmp_path / "shapes", {"a": (30, 10), "b": (30, 10), "c": (30, 10)})
    matrix = tmp_path / "own3.npy"
    np.save(matrix, np.full((3, 3), 1 / 3))
    run = tmp_path / "run"
    proc = launch("data.dataset=folder", f"data.path={path}", "exp=uniform_cifar10", "preset=smoke",
                  f"noise.matrix={matrix}", "grid.model.arch=[conv2]", "grid.noise.alpha=[0,2]", "grid.train.lr=[0.05]",
                  "train.epochs=2", "train.batch_size=16", f"data.cache={tmp_path / 'cache'}", f"run_dir={run}",
                  timeout=600, env={"RAY_TMPDIR": ray_tmpdir})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "data: shapes holds 90 training and 30 test images, fewer than data.n_clean=2000, data.n_test=1000" in out
    for noise in ("Token authentication", "snapshotting", "Checkpoint successfully", "Trial status",
                  "View detailed results", "Traceback", "Tuner.restore"):
        assert noise not in out, noise
    lines = proc.stdout.splitlines()
    assert f"run dir: {run}" in lines and f"TensorBoard: " in proc.stdout and f"--logdir {run / 'tune'}" in proc.stdout
    assert any(line.startswith("dashboard: ") for line in lines)
    progress = [line for line in lines if line.startswith("trials: ") and " · " in line]
    assert progress[-1].startswith("trials: 2 done, 0 running, 0 pending · took ")
    assert lines[-1] == f"results: {run}" and not (run / rundir.LOCK).exists()

    study = rundir.read_study(run)
    assert study["dataset"] == {"name": "shapes", "classes": 3, "stand_in": False}
    assert study["config"]["data"]["n_clean"] is None and study["config"]["data"]["n_test"] is None
    trials = pd.read_csv(run / rundir.TRIALS)
    assert set(trials["matrix"]) == {str(matrix)} and trials["test_top5"].isna().all()  # 3 classes: no top-5
    assert re.search(r"^summary \(learning rate chosen on test_acc; replicates: 1\)$", proc.stdout, re.M)
    assert (run / "fig2.png").stat().st_size > 10_000


def test_tunes_trials_become_the_progress_lines_states(monkeypatch: pytest.MonkeyPatch) -> None:
    """study.tune_progress.Report: each Tune trial's status and last epoch as a TrialState, a trial Tune ended before
    its last epoch (a budget, a signal) as pending, its work = examples per member x members, kept per trial, each keyed
    by its experiment's folder and Tune's id (Tune's ids repeat across experiments); trials without a config are left
    out, and nothing is reported while no Progress listens (under Tune: tests/test_experiments.py)."""
    from types import SimpleNamespace

    from study import cost, tune_progress

    monkeypatch.setattr(tune_progress.Report, "work", {})
    config = {"data": {"n_clean": 100, "n_val": 0}, "noise": {"alpha": 2.0}, "train": {"epochs": 4, "loss": "ce"}}
    assert cost.examples(config) == 300 * 4
    trial = lambda i, status, epoch, members=1: SimpleNamespace(  # noqa: E731
        trial_id=i, status=status, last_result={"epoch": epoch} if epoch is not None else {},
        config={"members": [config] * members} if members > 1 else config)
    trials = [trial("a", "RUNNING", 1, members=3), trial("b", "TERMINATED", 4), trial("c", "TERMINATED", 2),
              trial("d", "PENDING", None), trial("e", "PAUSED", 3), trial("f", "ERROR", 1),
              trial("h", "RESTORING", 2),  # a status this Tune does not have: waiting, as far as the line can tell
              SimpleNamespace(trial_id="g", status="PENDING", last_result=None, config={})]
    got = []
    report = tune_progress.Report("tune/cell-001")
    report.on_step_end(0, trials)  # no Progress yet: nothing to report to
    monkeypatch.setattr(tune_progress.Report, "progress", SimpleNamespace(update=got.append))
    report.on_step_end(1, trials)
    report.on_experiment_end(trials)
    assert got[0] == got[1] == {f"tune/cell-001/{k}": v for k, v in {
        "a": TrialState("running", 1, 4, 3600.0), "b": TrialState("done", 4, 4, 1200.0),
        "c": TrialState("pending", 2, 4, 1200.0), "d": TrialState("pending", 0, 4, 1200.0),
        "e": TrialState("pending", 3, 4, 1200.0), "f": TrialState("failed", 1, 4, 1200.0),
        "h": TrialState("pending", 2, 4, 1200.0)}.items()}
    assert len(got) == 2 and tune_progress.Report.work == {k: v.work for k, v in got[0].items()}
    tune_progress.Report("tune/cell-000").on_step_end(2, [trial("a", "RUNNING", 2)])  # the same Tune id, another cell
    assert got[2] == {"tune/cell-000/a": TrialState("running", 2, 4, 1200.0)}
    assert tune_progress.Report.work["tune/cell-001/a"] == 3600.0  # its own work, not the other cell's a's
