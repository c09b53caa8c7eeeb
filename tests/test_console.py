"""What a researcher reads (issue 23): one progress line per study with trials done/running/pending and an ETA,
Ray's known-harmless messages filtered, the budget line saying what advanced with both commands, no .lock left
behind, and a folder study that runs as documented and describes itself (slow)."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rundir
from study import console, slices
from study.console import Progress, TrialState, progress_line
from tests.helpers import Output, launch
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


def clock_at(monkeypatch: pytest.MonkeyPatch, now: float) -> list[float]:
    """time.monotonic() as the console reads it, reading clock[0] (set it to move time on)."""
    clock = [now]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    return clock


def test_durations_at_the_unit_boundaries() -> None:
    """Seconds under a minute, minutes and seconds under an hour, then hours and minutes: each unit's first and last
    value, rounded to the second first."""
    seconds = (0, 59, 59.4, 59.6, 60, 61, 3599, 3599.4, 3600, 3601, 3659, 3660, 7199, 7200, 7325, 36000)
    assert [console.duration(s) for s in seconds] == [
        "0s", "59s", "59s", "1m00s", "1m00s", "1m01s", "59m59s", "59m59s", "1h00m", "1h00m", "1h00m", "1h01m",
        "1h59m", "2h00m", "2h02m", "10h00m"]


def test_a_terminal_redraws_the_line_in_place_and_only_when_it_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal each new line is written over the last (carriage return, then erase to the end of the line),
    flushed; a report that leaves the line as it was writes nothing; the final line ends with a newline."""
    clock = clock_at(monkeypatch, 100.0)
    out = Output(tty=True)
    progress = Progress(total=2, out=out)
    assert progress.tty
    progress.update({"a": TrialState("running", 0, 10, 100.0)})
    first = "\rtrials: 0 done, 1 running, 1 pending · ETA --\x1b[K"
    assert out.getvalue() == first and out.flushed == [first]
    clock[0] = 101.0
    progress.update({"a": TrialState("running", 0, 10, 100.0)})  # the same line: nothing written
    assert out.getvalue() == first and out.flushed == [first]
    progress.update({"a": TrialState("running", 5, 10, 100.0)})  # 50 examples in 1 s, 50 + 100 left
    second = first + "\rtrials: 0 done, 1 running, 1 pending · ETA 3s\x1b[K"
    assert out.getvalue() == second and out.flushed == [first, second]
    clock[0] = 102.0
    progress.close()
    final = second + "\rtrials: 0 done, 1 running, 1 pending · took 2s\x1b[K\n"
    assert out.getvalue() == final and out.flushed == [first, second, final]


def test_a_log_gets_a_line_on_a_change_10s_apart_at_most_and_one_every_60s(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off a terminal: a line on the first report; then a line when the counts (before " · ") differ from the last
    line printed and 10 s or more have passed since it, or when 60 s or more have passed whatever changed; the final
    line always. Each line is flushed as it is printed."""
    clock = clock_at(monkeypatch, 1000.0)
    out = Output()
    progress = Progress(total=3, out=out)
    assert not progress.tty
    progress.update({"a": TrialState("running", 0, 10, 600.0)})  # the first report: printed
    clock[0] = 1005.0
    progress.update({"b": TrialState("running", 0, 10, 600.0)})  # the counts change, 5 s after: not yet
    clock[0] = 1010.0
    progress.update({"a": TrialState("running", 1, 10, 600.0)})  # 10 s after the line printed: printed
    clock[0] = 1020.0
    progress.update({"a": TrialState("running", 2, 10, 600.0)})  # the same counts 10 s after: not printed
    clock[0] = 1070.0
    progress.update({"a": TrialState("running", 3, 10, 600.0)})  # the same counts 60 s after: printed
    progress.close()  # the final line, 0 s after the last
    lines = ["trials: 0 done, 1 running, 2 pending · ETA --",
             "trials: 0 done, 2 running, 1 pending · ETA 4m50s",  # 60 examples in 10 s, 540 + 600 + 600 left
             "trials: 0 done, 2 running, 1 pending · ETA 10m30s",  # 180 examples in 70 s, 420 + 600 + 600 left
             "trials: 0 done, 2 running, 1 pending · took 1m10s"]
    assert out.getvalue().splitlines() == lines
    assert out.flushed == ["".join(f"{line}\n" for line in lines[:n]) for n in range(1, 5)]


def test_a_log_prints_the_first_report_whatever_the_clock_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Progress's first report is printed off a terminal also when time.monotonic() reads 0 s (its reference
    point is undefined: a machine booted, or a time namespace made, seconds ago reads under LOG_CHANGE_S)."""
    clock_at(monkeypatch, 0.0)
    out = Output()
    Progress(total=1, out=out).update({"a": TrialState("running", 0, 10, 100.0)})
    assert out.getvalue() == "trials: 0 done, 1 running, 0 pending · ETA --\n"


def test_a_progress_closed_before_any_report_prints_its_pending_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """A study that ends before any trial reported (no report, so no time taken to give): its final line has every
    trial pending and no ETA; and a report of no trials gives no ETA either."""
    clock_at(monkeypatch, 100.0)
    out = Output()
    progress = Progress(total=3, out=out)
    assert progress.eta() is None and progress.counts() == (0, 0, 0, 3)
    progress.close()
    assert out.getvalue() == "trials: 0 done, 0 running, 3 pending · ETA --\n"
    progress = Progress(total=2, out=Output())
    progress.update({})  # a runner's report before any trial was created
    assert progress.eta() is None and progress.line() == "trials: 0 done, 0 running, 2 pending · ETA --"


def test_failed_trials_count_as_done_and_pending_is_never_negative() -> None:
    """counts(): a failed trial is among the done ones and counted as failed; pending is the total less done and
    running, 0 when they reach the total and when they pass it."""
    progress = Progress(total=3, out=Output())
    progress.update({"a": TrialState("done", 10, 10, 1.0), "b": TrialState("failed", 2, 10, 1.0),
                     "c": TrialState("running", 3, 10, 1.0)})
    assert progress.counts() == (2, 1, 1, 0)
    progress = Progress(total=1, out=Output())
    progress.update({"a": TrialState("done", 10, 10, 1.0), "b": TrialState("running", 3, 10, 1.0)})
    assert progress.counts() == (1, 0, 1, 0)


def test_finished_trials_count_in_the_rate_but_not_in_the_work_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ETA's rate counts what every trial trained in this launch, and its work left only the unfinished trials'
    (a trial Tune stopped early as done, or failed, has none left); advanced() lists only unfinished trials; the
    running line (line() by default) gives the failures and that ETA."""
    clock = clock_at(monkeypatch, 100.0)
    progress = Progress(total=3, out=Output())
    progress.update({"d": TrialState("running", 1, 10, 10.0), "f": TrialState("running", 1, 10, 10.0),
                     "r": TrialState("running", 0, 10, 10.0)})
    clock[0] = 110.0
    progress.update({"d": TrialState("done", 3, 10, 10.0), "f": TrialState("failed", 2, 10, 10.0),
                     "r": TrialState("running", 2, 10, 10.0)})
    assert progress.eta() == pytest.approx(10 * 8 / 5)  # 2 + 1 + 2 examples in 10 s; r's 8 left
    assert progress.advanced() == [(0, 2, 10)]
    assert progress.line() == "trials: 2 done (1 failed), 1 running, 0 pending · ETA 16s"


def test_an_eta_from_less_than_one_example_trained(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half an example's worth of work trained (a trial weighed at 5 examples, 1 epoch of 10) is a rate: an ETA,
    not "--"."""
    clock = clock_at(monkeypatch, 100.0)
    progress = Progress(total=1, out=Output())
    progress.update({"a": TrialState("running", 0, 10, 5.0)})
    assert progress.eta() is None  # nothing trained yet
    clock[0] = 120.0
    progress.update({"a": TrialState("running", 1, 10, 5.0)})
    assert progress.eta() == pytest.approx(20 * 4.5 / 0.5)


def test_the_dashboard_lines_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """An address without a scheme gets http://, one with a scheme is kept; without RAY_AUTH_MODE the plain line;
    with RAY_AUTH_MODE=token (any case) the line that says where the token is and how to send it."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert console.dashboard_lines("127.0.0.1:8265") == ["dashboard: http://127.0.0.1:8265"]
    assert console.dashboard_lines("https://head.example:8265") == ["dashboard: https://head.example:8265"]
    monkeypatch.setenv("RAY_AUTH_MODE", "TOKEN")
    assert console.dashboard_lines("http://127.0.0.1:8265") == [
        "dashboard: http://127.0.0.1:8265 (token authentication: paste the token of `ray get-auth-token`, kept in "
        "~/.ray/auth_token, when the page asks; API calls send it as `Authorization: Bearer <token>`)"]
    assert console.dashboard_lines("") == ["dashboard: not running (Ray was started without it)"]


def test_the_tensorboard_command_is_the_one_beside_python_if_there_is_one(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a tensorboard beside sys.executable the command is `tensorboard` (on the PATH); with one, that file,
    as a user would type it (relative to the working directory); the log dir is the run dir's tune folder."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.chdir(tmp_path)
    assert console.tensorboard_line(tmp_path / "runs" / "r1") == "TensorBoard: tensorboard --logdir runs/r1/tune"
    (bin_dir / "tensorboard").write_text("")
    assert console.tensorboard_line(Path("runs/r1")) == "TensorBoard: venv/bin/tensorboard --logdir runs/r1/tune"


def test_quiet_ray_sets_tunes_two_switches_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """quiet_ray() sets exactly TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S=0 and RAY_AIR_NEW_OUTPUT=0
    in the environment, and keeps a value a user set."""
    names = ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "RAY_AIR_NEW_OUTPUT")
    for name in names:
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores what was there before
        monkeypatch.delenv(name)
    before = dict(os.environ)
    console.quiet_ray()
    assert dict(os.environ) == {**before, names[0]: "0", names[1]: "0"}
    monkeypatch.setenv(names[0], "5")
    monkeypatch.setenv(names[1], "1")
    console.quiet_ray()
    assert (os.environ[names[0]], os.environ[names[1]]) == ("5", "1")


def test_a_workers_ray_train_and_tune_loggers_log_warnings_only() -> None:
    """quiet_worker() sets the loggers ray.train and ray.tune to WARNING, and no other (the root logger's level is
    left)."""
    loggers = [logging.getLogger(name) for name in ("ray.train", "ray.tune")] + [logging.getLogger()]
    levels = [logger.level for logger in loggers]
    try:
        loggers[0].setLevel(logging.NOTSET)
        loggers[1].setLevel(logging.NOTSET)
        loggers[2].setLevel(logging.INFO)
        console.quiet_worker()
        assert [logger.level for logger in loggers] == [logging.WARNING, logging.WARNING, logging.INFO]
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class Hung(Exception):
    """hold_dashboard did not return on the signal."""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_held_dashboard_ends_on_ctrl_c_or_sigterm_and_restores_the_handlers(
        signum: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """hold_dashboard() says (flushed: a log shows it while the process waits) how long the dashboard stays up, waits
    until a SIGINT or SIGTERM, which its own handler takes, then returns with both signals' handlers as they were."""
    out = Output()
    monkeypatch.setattr(sys, "stdout", out)
    caught: list[int] = []

    def known(received: int, frame: object) -> None:
        caught.append(received)

    def hung(received: int, frame: object) -> None:
        raise Hung

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    sent = threading.Event()

    def send() -> None:
        sent.set()
        signal.pthread_kill(threading.main_thread().ident, signum)

    timer = threading.Timer(0.3, send)
    try:
        signal.signal(signal.SIGINT, known)
        signal.signal(signal.SIGTERM, known)
        signal.signal(signal.SIGALRM, hung)
        signal.alarm(60)  # a watchdog only: a hold that a signal does not end fails the test rather than hang it
        timer.start()
        console.hold_dashboard()
        signal.alarm(0)
        assert sent.is_set() and caught == []  # it returned on the signal, which its own handler took
        assert signal.getsignal(signal.SIGINT) is known and signal.getsignal(signal.SIGTERM) is known
        assert out.getvalue() == "dashboard=true: the dashboard stays up until Ctrl-C\n"
        assert out.flushed == [out.getvalue()]
    finally:
        signal.alarm(0)
        timer.cancel()
        timer.join()
        for s, handler in saved.items():
            signal.signal(s, handler)
