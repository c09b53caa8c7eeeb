"""study.launch and study.local in this process (runner=local: Ray never starts), for mutation testing, which
credits only tests that call a function in pytest's own process: a new study's lines, study.json, trials.csv,
epochs.csv and provenance.json; dry_run=true; run_dir= continuing the study there; resume= of an interrupted one
(the finished group skipped, the partial one on from its checkpoint); a spent budget (exit 75); a group that
raises (retried, then exit 1); a signal (exit 128 + it); bad input (exit 2); and local's Watch, watching, train,
prepared and record on their own. Time is a fake clock where a budget is tested: nothing waits on the wall clock.

The studies are tiny (a perceptron, 100 images, 2 epochs: under a second each); the finished and the interrupted
one are run once per module, and the tests that go on with them work on copies. mutmut credits what a module
fixture calls to the first test that uses it only, so that test checks all the fixture's launch left."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import torch

import rundir
from study import config, launch, local, preflight, slices
from study.grid import with_value
from study.trial import Trial
from tests.helpers import Launch, Output, launched

# Two groups (alpha 0 and 1), each fusing the two learning rates: 4 configs.
STUDY = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "runner=local", "grid.model.arch=[perceptron]",
         "grid.noise.alpha=[0,1]", "grid.train.lr=[0.1,0.5]", "data.n_clean=100", "data.n_test=100", "train.epochs=2",
         "figures=[]"]
# One group of one config, one epoch.
ONE = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "runner=local", "grid.model.arch=[perceptron]",
       "grid.noise.alpha=[0]", "grid.train.lr=[0.1]", "data.n_clean=100", "data.n_test=100", "train.epochs=1",
       "figures=[]"]
# Nine learning rates per alpha: more than a CPU fuses into one group (8 for the perceptron), fewer than a GPU.
NINE = [*(a for a in STUDY if not a.startswith("grid.train.lr=")),
        "grid.train.lr=[0.01,0.02,0.05,0.1,0.2,0.3,0.5,0.7,1.0]"]
TRIALS_COLUMNS = [*rundir.COLUMNS.values(), *rundir.TRIAL_METRICS]
RESUME = f"{sys.executable} -m study.launch resume="


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def progress(text: str) -> list[str]:
    """The progress lines (the other "trials: " line counts the groups)."""
    return [line for line in lines(text) if line.startswith("trials: ") and " · " in line]


def unlocked(run_dir: Path) -> None:
    assert not (run_dir / rundir.LOCK).exists() and rundir.LOCKS == {}


def outcomes(run_dir: Path) -> list[str]:
    return [x["outcome"] for x in rundir.read_json(run_dir / rundir.PROVENANCE)["launches"]]


def copy(run_dir: Path, to: Path) -> Path:
    shutil.copytree(run_dir, to)
    return to


def history(run_dir: Path, gid: str) -> list[dict[str, Any]]:
    """A group's epochs: from its finished file, else its checkpoint."""
    done = run_dir / rundir.LOCAL / f"{gid}.json"
    if done.is_file():
        return rundir.read_json(done)["history"]
    return torch.load(run_dir / rundir.LOCAL / f"{gid}.pt")["history"]


REAL_RUN = Trial.run


@dataclass
class Seen:
    """What a spied Trial.run saw at each call: its starting epoch, its members' data root, torch's threads and
    the run dirs this process held locked (with a .lock file in them)."""

    epochs: list[int] = dataclasses.field(default_factory=list)
    roots: set[str] = dataclasses.field(default_factory=set)
    threads: set[int] = dataclasses.field(default_factory=set)
    locked: list[list[Path]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epochs)


def spying(calls: Seen, on_epoch_hook: Callable[[int, Any], None] | None = None) -> Callable:
    """Trial.run as it is, noting what it saw (Seen); `on_epoch_hook(call, reports)` runs before each epoch's
    report reaches the runner (call: 1 for the first Trial.run of the launch)."""
    def run(self: Trial, on_epoch: Callable) -> Any:
        calls.epochs.append(self.epoch)
        calls.roots |= {c["data"]["root"] for c in self.configs}
        calls.threads.add(torch.get_num_threads())
        calls.locked.append([d for d in rundir.LOCKS if (d / rundir.LOCK).is_file()])
        call = len(calls)

        def hooked(reports: list) -> None:
            if on_epoch_hook:
                on_epoch_hook(call, reports)
            on_epoch(reports)
        return REAL_RUN(self, hooked)
    return run


@pytest.fixture(autouse=True)
def threads() -> Iterator[None]:
    """local.run sets torch's threads for this process: the tests after these keep theirs."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------------
# A new study, run once for the module


@pytest.fixture(scope="module")
def finished(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Launch]:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    before = torch.get_num_threads()
    try:
        done = launched([*STUDY, f"run_dir={run_dir}"])
    finally:
        torch.set_num_threads(before)
    return run_dir.resolve(), done


def test_a_new_study(finished: tuple[Path, Launch]) -> None:
    """Its lines and exit code, study.json, trials.csv, epochs.csv, local/ and provenance.json: one test, as mutmut
    credits the module fixture's launch to the first test that uses it only."""
    run_dir, done = finished
    assert done.code == 0 and done.err == "", done.err
    out = lines(done.out)
    assert out[0].startswith("estimate: 4 configs in 2 trials, about ") and out[0].endswith(
        "; dry_run=true for the details)")
    assert out[1:3] == ["trials: 2 groups of 4 configs (train.fuse=auto)", f"run dir: {run_dir}"]
    assert progress(done.out)[0] == "trials: 0 done, 1 running, 1 pending · ETA --"
    assert progress(done.out)[-1].startswith("trials: 2 done, 0 running, 0 pending · took ")
    assert out[-1] == f"results: {run_dir}"
    unlocked(run_dir)

    study = rundir.read_study(run_dir)
    cfg, names = config.compose([*STUDY, f"run_dir={run_dir}"])
    assert list(study) == ["exp", "preset", "trials", "figures", "config", "dataset", "searched", "experiments"]
    assert (study["exp"], study["preset"], study["figures"], study["searched"], study["experiments"]) == (
        "uniform_mnist", "smoke", [], ["lr"], [])
    assert study["trials"] == 4 and type(study["trials"]) is int  # configs x per_cell (1 for search=grid)
    assert study["dataset"] == {"name": "MNIST", "classes": 10, "stand_in": False}
    assert study["config"] == json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    assert study["config"]["runner"] == "local"

    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert list(trials.columns) == TRIALS_COLUMNS
    assert trials["trial_id"].tolist() == ["local_00000-0", "local_00000-1", "local_00001-0", "local_00001-1"]
    assert trials["group"].tolist() == ["local_00000"] * 2 + ["local_00001"] * 2
    assert trials["alpha"].tolist() == [0, 0, 1, 1] and trials["lr"].tolist() == [0.1, 0.5, 0.1, 0.5]
    assert (trials["status"] == "ok").all() and (trials["epochs"] == 2).all()
    assert (trials["node_id"] == local.NODE).all()
    epochs = pd.read_csv(run_dir / rundir.EPOCHS)
    assert len(epochs) == 8 and list(epochs.columns[:len(rundir.EPOCH_METRICS)]) == list(rundir.EPOCH_METRICS)
    assert epochs.groupby("trial_id")["epoch"].apply(list).tolist() == [[1, 2]] * 4
    state = run_dir / rundir.LOCAL
    assert sorted(p.name for p in state.iterdir()) == ["groups.json", "local_00000.json", "local_00001.json"]
    groups = rundir.read_json(state / rundir.LOCAL_GROUPS)
    assert [[(c["noise"]["alpha"], c["train"]["lr"]) for c in g] for g in groups] == [[(0, 0.1), (0, 0.5)],
                                                                                   [(1, 0.1), (1, 0.5)]]
    assert [e["epoch"] for e in history(run_dir, "local_00001")] == [1, 2]
    assert {e["trial_id"] for e in history(run_dir, "local_00001")} == {"local_00001"}
    prov = rundir.read_json(run_dir / rundir.PROVENANCE)
    (entry,) = prov["launches"]
    assert (entry["outcome"], entry["runner"], entry["cpus"], entry["gpus"]) == ("finished", "local", 1, 0)
    assert "ray" not in entry and (run_dir / "summary.csv").is_file()


def test_run_dir_holding_a_finished_study_trains_nothing(finished: tuple[Path, Launch], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = copy(finished[0], tmp_path / "run")
    study, first = (run_dir / rundir.STUDY).read_bytes(), (run_dir / rundir.LOCAL / "local_00000.json").read_bytes()
    calls = Seen()
    monkeypatch.setattr(Trial, "run", spying(calls))
    done = launched([*STUDY, f"run_dir={run_dir}"])
    assert (done.code, done.err) == (0, "")
    out = lines(done.out)
    assert out[:3] == [f"run dir {run_dir} holds this study: continuing it (as resume= would)",
                       "trials: 2 groups of 4 configs (train.fuse=auto)", f"run dir: {run_dir}"]  # no estimate
    assert out[-1] == f"results: {run_dir}" and len(calls) == 0  # every group had finished: none trains again
    assert done.said(f"run dir {run_dir} holds this study: continuing it (as resume= would)")
    assert (run_dir / rundir.STUDY).read_bytes() == study
    assert (run_dir / rundir.LOCAL / "local_00000.json").read_bytes() == first
    assert len(pd.read_csv(run_dir / rundir.TRIALS)) == 4 and outcomes(run_dir) == ["finished", "finished"]
    unlocked(run_dir)


def test_run_dir_holding_another_study_is_one_line(finished: tuple[Path, Launch], tmp_path: Path) -> None:
    run_dir = copy(finished[0], tmp_path / "run")
    done = launched([*STUDY, "train.epochs=3", f"run_dir={run_dir}"])
    assert (done.code, done.out) == (2, "")
    assert done.err == (f"error: run_dir={str(run_dir)!r} holds another study: train.epochs=2 there, 3 here; use the "
                        "same config to continue it, or another run_dir to start a new study\n")
    assert outcomes(run_dir) == ["finished"]
    unlocked(run_dir)


def test_resume_refuses_a_changed_key(finished: tuple[Path, Launch], tmp_path: Path) -> None:
    run_dir = copy(finished[0], tmp_path / "run")
    done = launched([f"resume={run_dir}", "train.epochs=3"])
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith(f"error: train.epochs=3 cannot change with resume=: the study in {run_dir} has "
                               "train.epochs=2; ") and done.err.count("\n") == 1
    assert outcomes(run_dir) == ["finished"]
    unlocked(run_dir)


def test_dry_run_prints_the_cost_and_writes_nothing(data_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    argv = [*NINE, "dry_run=true", f"run_dir={run_dir}"]
    done = launched(argv)
    assert (done.code, done.err) == (0, "")
    assert lines(done.out)[:2] == [  # 9 learning rates per alpha: on the CPU two groups (5 + 4), on a GPU one
        "dry run: exp=uniform_mnist preset=smoke (nothing started, nothing written)",
        "configs: 18 (noise.alpha 2 x model.arch 1 x train.lr 9), in 4 trials (fused groups of up to 5 members)"]
    assert "results:" not in done.out and "run dir" not in done.out and not run_dir.exists()
    cfg, names = config.compose(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert launch.run_study(cfg, names) is None
    assert out.getvalue() == done.out and not run_dir.exists()


def test_main_reads_sys_argv(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["study/launch.py", "dry_run=true", *ONE, f"run_dir={tmp_path / 'run'}"])
    assert launch.main() == 0
    assert capsys.readouterr().out.startswith(
        "dry run: exp=uniform_mnist preset=smoke (nothing started, nothing written)\n"
        "configs: 1 (noise.alpha 1 x model.arch 1 x train.lr 1), in 1 trials")
    assert not (tmp_path / "run").exists()


def test_a_folder_study_takes_the_sizes_that_fit_it(tmp_path: Path) -> None:
    from tests.test_folder import tree

    path = tree(tmp_path / "shapes", {"a": (4, 2), "b": (4, 2), "c": (4, 2)})
    done = launched(["exp=uniform_cifar10", "preset=smoke", "data.dataset=folder", f"data.path={path}",
                     f"data.cache={tmp_path / 'cache'}", "grid.model.arch=[perceptron]", "grid.noise.alpha=[0]",
                     "grid.train.lr=[0.1]", "runner=local", "dry_run=true", f"run_dir={tmp_path / 'run'}"])
    assert (done.code, done.err) == (0, "")
    assert lines(done.out)[:3] == [
        "data: shapes holds 12 training and 6 test images, fewer than data.n_clean=2000, data.n_test=1000 of this "
        "experiment and preset ask for: data.n_clean=null, data.n_test=null instead (null: all of them; 0: no held-out "
        "split); set them on the command line to choose",
        "dry run: exp=uniform_cifar10 preset=smoke (nothing started, nothing written)",
        "configs: 1 (noise.alpha 1 x model.arch 1 x train.lr 1), in 1 trials (fused groups of up to 1 members)"]
    assert not (tmp_path / "run").exists()


def test_compose_gives_the_config_as_study_json_stores_it() -> None:
    cfg, names = launch.compose(STUDY)
    assert (names["exp"], names["preset"], names["search"], names["scheduler"]) == ("uniform_mnist", "smoke", "grid",
                                                                                    "none")
    assert cfg["runner"] == "local" and cfg["grid"]["noise"]["alpha"] == [0, 1] and cfg["train"]["epochs"] == 2


# ---------------------------------------------------------------------------------------------------------------
# An interrupted study (SIGTERM in the second group's first epoch), run once for the module


@pytest.fixture(scope="module")
def interrupted(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Launch, Seen]:
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"

    def hook(call: int, reports: list) -> None:
        if call == 2 and reports[0].epoch == 1:
            signal.raise_signal(signal.SIGTERM)  # runs the handler the runner installed, before this returns

    calls = Seen()
    before = torch.get_num_threads()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trial, "run", spying(calls, hook))
        try:
            done = launched([*STUDY, f"run_dir={run_dir}"])
        finally:
            torch.set_num_threads(before)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    return run_dir.resolve(), done, calls


def test_a_signal_stops_after_the_epoch_with_exit_128_plus_it(interrupted: tuple[Path, Launch, Seen]) -> None:
    run_dir, done, calls = interrupted
    assert done.code == 128 + signal.SIGTERM and calls.epochs == [0, 0]
    assert calls.locked == [[run_dir]] * 2 and calls.threads == {1}  # held while it trains; resources.cpu threads
    assert done.err == (f"interrupted by SIGTERM: 1 of 2 trials finished; finish the study with: {RESUME}{run_dir}\n")
    assert done.err_flushed[-1] == done.err
    assert "results:" not in done.out
    assert progress(done.out)[-1].startswith("trials: 1 done, 1 running, 0 pending · took ")
    assert [e["epoch"] for e in history(run_dir, "local_00001")] == [1]  # its checkpoint, at the epoch it stopped
    assert not (run_dir / rundir.LOCAL / "local_00001.json").exists()
    trials = pd.read_csv(run_dir / rundir.TRIALS)  # the finished group's rows, written as it ended
    assert trials["trial_id"].tolist() == ["local_00000-0", "local_00000-1"] and (trials["epochs"] == 2).all()
    assert outcomes(run_dir) == ["interrupted"]
    unlocked(run_dir)


def test_resume_skips_the_finished_group_and_goes_on_from_the_checkpoint(
        interrupted: tuple[Path, Launch, Seen], data_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = copy(interrupted[0], tmp_path / "run")
    study, first = (run_dir / rundir.STUDY).read_bytes(), (run_dir / rundir.LOCAL / "local_00000.json").read_bytes()
    cut = history(run_dir, "local_00001")
    calls = Seen()
    monkeypatch.setattr(Trial, "run", spying(calls))
    done = launched([f"resume={run_dir}", "budget=null"])
    assert calls.roots == {str(data_root)}
    assert (done.code, done.err) == (0, "")
    out = lines(done.out)
    assert out[:2] == ["trials: 2 groups of 4 configs (train.fuse=auto)", f"run dir: {run_dir}"]  # no estimate
    assert progress(done.out)[0] == "trials: 1 done, 1 running, 0 pending · ETA --"  # the earlier group counted
    assert progress(done.out)[-1].startswith("trials: 2 done, 0 running, 0 pending · took ")
    assert out[-1] == f"results: {run_dir}"
    assert calls.epochs == [1]  # the second group only, from its checkpoint's epoch
    assert (run_dir / rundir.LOCAL / "local_00000.json").read_bytes() == first
    after = history(run_dir, "local_00001")
    assert [e["epoch"] for e in after] == [1, 2] and json.dumps(after[0]) == json.dumps(cut[0])  # not retrained
    assert sorted(p.name for p in (run_dir / rundir.LOCAL).iterdir()) == ["groups.json", "local_00000.json",
                                                                         "local_00001.json"]
    assert (run_dir / rundir.STUDY).read_bytes() == study
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert len(trials) == 4 and (trials["epochs"] == 2).all() and (trials["status"] == "ok").all()
    assert len(pd.read_csv(run_dir / rundir.EPOCHS)) == 8
    assert outcomes(run_dir) == ["interrupted", "finished"]
    unlocked(run_dir)


def test_run_dir_continues_the_study_with_its_portable_keys(
        interrupted: tuple[Path, Launch, Seen], data_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """run_dir= on the interrupted study, its data root moved: the partial group goes on, reading the new root."""
    run_dir = copy(interrupted[0], tmp_path / "run")
    moved = tmp_path / "data"
    (moved / "MNIST" / "raw").mkdir(parents=True)
    for f in (data_root / "MNIST" / "raw").iterdir():
        (moved / "MNIST" / "raw" / f.name).symlink_to(f)
    calls = Seen()
    monkeypatch.setattr(Trial, "run", spying(calls))
    done = launched([*STUDY, f"data.root={moved}", f"run_dir={run_dir}"])
    assert (done.code, done.err) == (0, "")
    assert lines(done.out)[:3] == [f"run dir {run_dir} holds this study: continuing it (as resume= would)",
                                   "trials: 2 groups of 4 configs (train.fuse=auto)", f"run dir: {run_dir}"]
    assert calls.epochs == [1] and calls.roots == {str(moved)}
    assert (pd.read_csv(run_dir / rundir.TRIALS)["epochs"] == 2).tolist() == [True] * 4
    assert outcomes(run_dir) == ["interrupted", "finished"]
    unlocked(run_dir)


def test_a_second_signal_stops_at_once(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three groups: the first fails (no retries), the second finishes, the third gets SIGINT then SIGTERM in its first
    epoch: the launch ends at once with the last signal's code, and trials.csv holds the finished group's rows only."""
    run_dir = tmp_path / "run"

    def hook(call: int, reports: list) -> None:
        if call == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGTERM)  # raises KeyboardInterrupt here: the epoch is not reported

    calls = Seen()
    spy = spying(calls, hook)

    def run(self: Trial, on_epoch: Callable) -> Any:
        if not calls.epochs:
            calls.epochs.append(self.epoch)
            raise RuntimeError("boom")
        return spy(self, on_epoch)

    monkeypatch.setattr(Trial, "run", run)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    done = launched([*STUDY, "grid.noise.alpha=[0,1,2]", "max_failures=0", f"run_dir={run_dir}"])
    run_dir = run_dir.resolve()
    assert done.code == 128 + signal.SIGTERM and calls.epochs == [0, 0, 0]  # the last signal's code
    assert lines(done.err)[-1] == (f"interrupted by SIGTERM: 1 of 3 trials finished; finish the study with: "
                                   f"{RESUME}{run_dir}")
    assert done.err.count("Traceback") == 1 and "retry" not in done.err  # the first group's error, not retried
    assert progress(done.out)[-1].startswith("trials: 2 done (1 failed), 1 running, 0 pending · took ")
    assert sorted(p.name for p in (run_dir / rundir.LOCAL).iterdir()) == ["groups.json", "local_00001.json"]
    trials = pd.read_csv(run_dir / rundir.TRIALS)  # written as the second group ended: not the failed one's row
    assert trials["trial_id"].tolist() == ["local_00001-0", "local_00001-1"] and (trials["status"] == "ok").all()
    assert outcomes(run_dir) == ["interrupted"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    unlocked(run_dir)


def test_a_keyboard_interrupt_without_a_signal_is_sigint(data_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def run(self: Trial, on_epoch: Callable) -> Any:
        raise KeyboardInterrupt  # not through the runner's handler: no signal recorded

    monkeypatch.setattr(Trial, "run", run)
    done = launched([*ONE, f"run_dir={tmp_path / 'run'}"])
    run_dir = (tmp_path / "run").resolve()
    assert done.code == 130
    assert done.err == f"interrupted by SIGINT: 0 of 1 trials finished; finish the study with: {RESUME}{run_dir}\n"
    assert done.err_flushed[-1] == done.err
    assert outcomes(run_dir) == ["interrupted"]
    unlocked(run_dir)


# ---------------------------------------------------------------------------------------------------------------
# A budget, spent (on a fake clock) as the first group ends


def test_a_budget_spent_between_groups_exits_75_with_the_finished_trials(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    import time

    offset = [0.0]
    monkeypatch.setattr(local, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + offset[0], time=time.time))

    def run(self: Trial, on_epoch: Callable) -> Any:
        out = REAL_RUN(self, on_epoch)
        offset[0] = 100 * 3600.0  # the first group ends 100 hours in
        return out

    monkeypatch.setattr(Trial, "run", run)
    done = launched([*STUDY, "budget=10h", f"run_dir={run_dir}"])
    run_dir = run_dir.resolve()
    assert (done.code, done.err) == (slices.EXIT_BUDGET, "")
    assert lines(done.out)[-3:] == [
        "budget 10h spent: 1 of 2 trials finished, 0 partial (each goes on from its last checkpoint), 1 not started; "
        "trials.csv holds the finished ones",
        f"another slice of 10h: {RESUME}{run_dir} budget=10h",
        f"finish the study (no budget): {RESUME}{run_dir} budget=null"]
    assert done.out_flushed[-1] == done.out
    assert progress(done.out)[-1].startswith("trials: 1 done, 0 running, 1 pending · took ")
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert trials["trial_id"].tolist() == ["local_00000-0", "local_00000-1"]
    assert len(pd.read_csv(run_dir / rundir.EPOCHS)) == 4
    assert sorted(p.name for p in (run_dir / rundir.LOCAL).iterdir()) == ["groups.json", "local_00000.json"]
    assert outcomes(run_dir) == ["budget spent"] and rundir.read_study(run_dir)["config"]["budget"] == "10h"
    unlocked(run_dir)


def test_write_with_a_spent_budget_keeps_the_finished_trials(finished: tuple[Path, Launch], tmp_path: Path) -> None:
    """launch.write: the finished groups' rows only, and BudgetSpent counting finished, partial and waiting trials."""
    run_dir = copy(finished[0], tmp_path / "run")
    (run_dir / rundir.TRIALS).unlink()
    cfg, _ = config.compose([*STUDY, "budget=5m"])
    plan = preflight.plan(cfg)
    groups = rundir.read_json(run_dir / rundir.LOCAL / rundir.LOCAL_GROUPS)
    whole = local.result(groups[0], history(run_dir, "local_00000"))
    cut = local.result(groups[1], history(run_dir, "local_00001")[:1])
    waiting = local.result(groups[1], [])  # no epoch yet: no metrics
    with pytest.raises(slices.BudgetSpent) as spent, contextlib.redirect_stdout(io.StringIO()):
        launch.write(cfg, plan, [whole, cut, waiting], "budget spent", [(0, 1, 2)], run_dir, 3)
    assert str(spent.value).splitlines()[0] == (
        "budget 5m spent: 1 of 3 trials finished, 1 partial (each goes on from its last checkpoint; this slice "
        "advanced 1 of them, epochs 0 → 1 of 2), 1 not started; trials.csv holds the finished ones")
    assert pd.read_csv(run_dir / rundir.TRIALS)["group"].tolist() == ["local_00000"] * 2
    assert len(pd.read_csv(run_dir / rundir.EPOCHS)) == 4 + 2  # every epoch reported
    with contextlib.redirect_stdout(io.StringIO()):  # the same results, finished: every row, nothing raised
        launch.write(cfg, plan, [whole, cut], "finished", [], run_dir, 2)
    assert len(pd.read_csv(run_dir / rundir.TRIALS)) == 4


def test_exp_confusion_saves_the_summed_matrix(data_root: Path, tmp_path: Path) -> None:
    """exp=confusion: the test confusion matrices of its trials summed into confusion.npy and copied to
    noise.confusion; written by launch.write, which says so, and says when no trial finished (or saves none when a
    budget was spent)."""
    import numpy as np

    run_dir, target = tmp_path / "run", tmp_path / "shared" / "mnist.npy"
    argv = ["exp=confusion", "preset=smoke", "data.download=false", "runner=local", "model.arch=perceptron",
            "data.n_clean=100", "data.n_test=100", "train.epochs=1", "figures=[]", f"noise.confusion={target}",
            f"run_dir={run_dir}"]
    done = launched(argv)
    assert (done.code, done.err) == (0, "")
    assert done.said(f"confusion matrix (1 trials): {run_dir / rundir.CONFUSION}, copied to {target}")
    summed = np.load(run_dir / rundir.CONFUSION)
    assert summed.shape == (10, 10) and summed.sum() == 2 * 100  # two seeds fused in one group, 100 test images each
    assert np.array_equal(np.load(target), summed)

    cfg, _ = config.compose(argv)
    plan = preflight.plan(cfg)
    (group,) = rundir.read_json(run_dir / rundir.LOCAL / rundir.LOCAL_GROUPS)
    target.unlink()
    (run_dir / rundir.CONFUSION).unlink()
    failed = local.result(group, [], RuntimeError("boom"))
    out = Output()
    with contextlib.redirect_stdout(out), pytest.raises(launch.TrialsFailed):
        launch.write(cfg, plan, [failed], "finished", [], run_dir, 1)
    assert "confusion matrix: no trial finished, nothing saved\n" in out.getvalue()
    assert any(text.endswith("confusion matrix: no trial finished, nothing saved\n") for text in out.flushed)
    whole = local.result(group, history(run_dir, "local_00000"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(slices.BudgetSpent):
        launch.write(cfg, plan, [whole], "budget spent", [], run_dir, 2)
    assert "confusion" not in out.getvalue() and not target.exists() and not (run_dir / rundir.CONFUSION).exists()


# ---------------------------------------------------------------------------------------------------------------
# A group that raises; input refused; an interrupt before the study starts


def test_a_group_that_keeps_raising_fails_the_study_with_exit_1(
        data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def run(self: Trial, on_epoch: Callable) -> Any:
        calls.append(self.epoch)
        if len(calls) > 5:  # a runner that retries past max_failures: end it rather than loop
            raise SystemExit("retried for ever")
        raise RuntimeError("boom")

    monkeypatch.setattr(Trial, "run", run)
    root = tmp_path / "store"  # no run_dir=: the run dir is named under the storage root
    done = launched([*ONE, "max_failures=1", f"storage.root={root}"])
    (run_dir,) = (root / "runs").iterdir()
    assert run_dir.name.startswith("uniform_mnist-smoke-") and len(run_dir.name) == len("uniform_mnist-smoke-") + 15
    assert done.code == 1 and len(calls) == 2
    err = lines(done.err)
    assert err[0] == "group local_00000 failed (RuntimeError('boom')): retry 1 from its last checkpoint"
    assert done.err.count("retry") == 1 and done.err.count("Traceback") == 1
    assert err[-2:] == ["1 trial(s) failed: boom",
                        "error: 1 of 1 trials failed (their reasons above; trials.csv marks them status=error): "
                        f"results in {run_dir}"]
    assert done.err_flushed[-1] == done.err
    assert progress(done.out)[-1].startswith("trials: 1 done (1 failed), 0 running, 0 pending · took ")
    assert "results:" not in done.out
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert trials[["alpha", "status", "epochs"]].values.tolist() == [[0, "error", 0]]
    assert outcomes(run_dir) == ["finished"]
    unlocked(run_dir)


def test_a_run_dir_that_is_a_file_is_one_line(data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = launched([*ONE, f"run_dir={tmp_path / 'file' / 'run'}"])
    assert (done.code, done.out) == (2, "")
    assert done.err == (f"error: run_dir='{tmp_path / 'file' / 'run'}' is invalid: it must be a folder or a path that "
                        f"does not exist yet ({tmp_path / 'file'} is a file)\n")


def test_a_budget_over_more_trials_than_tune_holds_is_one_line(data_root: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "prepare", lambda configs: pytest.fail("not refused before the study started"))
    seeds = ",".join(str(s) for s in range(slices.MAX_TRIALS + 1))
    done = launched([*ONE, f"+grid.train.seed=[{seeds}]", "train.fuse=none", "budget=1h",
                     f"run_dir={tmp_path / 'run'}"])
    assert done.code == 2 and done.err == ("error: budget='1h' needs at most 200 trials, this study has 201: shrink "
                                           "the grid, fuse more (train.fuse), or drop budget\n")
    assert not (tmp_path / "run").exists()


# A symlink loop (RuntimeError out of Path.resolve before Python 3.13) and a name longer than the file system
# allows (ENAMETOOLONG from the first is_file) escaped main as tracebacks
@pytest.mark.parametrize("key,path", [("run_dir", "loop"), ("resume", "loop"), ("run_dir", "x" * 300),
                                      ("resume", "x" * 300)], ids=["run_dir-loop", "resume-loop", "run_dir-too-long",
                                                                   "resume-too-long"])
def test_a_run_dir_that_cannot_be_resolved_is_one_line(data_root: Path, tmp_path: Path, key: str, path: str) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    done = launched([*ONE, f"{key}={tmp_path / path}"] if key == "run_dir" else [f"{key}={tmp_path / path}"])
    assert done.code == 2 and done.err.startswith(f"error: {key}=") and done.err.count("\n") == 1, done.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]


def test_an_interrupt_before_the_study_starts_is_130(data_root: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def prepare(configs: list) -> set:
        raise KeyboardInterrupt

    monkeypatch.setattr(preflight, "prepare", prepare)
    done = launched([*NINE, "grid.noise.alpha=[0]", f"run_dir={tmp_path / 'run'}"])
    assert done.code == 130 and done.err == "interrupted before the study started: nothing ran\n"
    assert done.err_flushed[-1] == done.err
    out = lines(done.out)  # the CPU's groups: 9 configs fused 5 + 4
    assert len(out) == 2 and out[0].startswith("estimate: 9 configs in 2 trials, about ") and "(1 CPU core, " in out[0]
    assert out[1] == "trials: 2 groups of 9 configs (train.fuse=auto)"
    assert not (tmp_path / "run").exists() and rundir.LOCKS == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_study_without_a_gpu_is_costed_and_run_on_the_cpu(data_root: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def prepare(configs: list) -> set:
        raise KeyboardInterrupt

    monkeypatch.setattr(preflight, "prepare", prepare)
    done = launched([*NINE, "grid.noise.alpha=[0]", "resources.gpu=0.5", "resources.allow_cpu_fallback=true",
                     f"run_dir={tmp_path / 'run'}"])
    assert done.code == 130 and lines(done.err) == [
        "note: no GPU visible, resources.gpu=0.5 becomes 0 (resources.allow_cpu_fallback=true)",
        "interrupted before the study started: nothing ran"]
    out = lines(done.out)
    assert out[0].startswith("estimate: 9 configs in 2 trials, about ") and "(1 CPU core, " in out[0]
    assert out[1] == "trials: 2 groups of 9 configs (train.fuse=auto)"



def test_an_interrupt_during_the_analysis_does_not_say_nothing_ran(data_root: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis import report

    def make_report(run_dir: Path) -> None:
        # Ctrl-C as the analysis runs, under Python's default handler (the runner's are restored by now); raised, not
        # signalled: a process started in the background (mutmut's, say) ignores SIGINT
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "make_report", make_report)
    run_dir = tmp_path / "run"
    done = launched([*ONE, f"run_dir={run_dir}"])
    run_dir = run_dir.resolve()
    assert done.code == 130 and outcomes(run_dir) == ["finished"]
    assert len(pd.read_csv(run_dir / rundir.TRIALS)) == 1  # the study ran to its end
    assert done.err == f"interrupted by SIGINT: 1 of 1 trials finished; finish the study with: {RESUME}{run_dir}\n"
    assert done.err_flushed[-1] == done.err
    unlocked(run_dir)


# ---------------------------------------------------------------------------------------------------------------
# study.local's parts on their own


class Clock:
    """time.monotonic for study.local, set by the test."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    import time

    fake = Clock()
    monkeypatch.setattr(local, "time", SimpleNamespace(monotonic=fake.monotonic, time=time.time))
    return fake


@pytest.mark.parametrize("now,next_s,stops", [(105.0, 5.0, False), (105.0, 5.5, True), (110.0, 0.0, False),
                                              (110.5, 0.0, True), (90.0, 0.0, False)])
def test_watch_stops_past_its_budget_only(clock: Clock, now: float, next_s: float, stops: bool) -> None:
    watch = local.Watch(10.0, start=100.0)
    clock.now = now
    assert watch.stopping(next_s) is stops and watch.spent is stops


def test_watch_spent_stays_spent_and_a_signal_stops_it(clock: Clock) -> None:
    watch = local.Watch(10.0, start=0.0)
    clock.now = 9.5
    assert watch.stopping() is False  # by default: no next epoch's time added
    clock.now = 11.0
    assert watch.stopping() is True
    clock.now = 1.0
    assert watch.stopping() is True and watch.spent  # spent once: spent
    free = local.Watch(None, start=0.0)
    clock.now = 1e9
    assert free.stopping(1e9) is False and not free.spent  # no budget: never spent
    free.signals.append(signal.SIGTERM)
    assert free.stopping() is True and not free.spent


def test_watch_starts_now() -> None:
    import time

    before = time.monotonic()
    watch = local.Watch(5.0)
    assert before <= watch.start <= time.monotonic() and watch.signals == [] and watch.spent is False


def test_watching_records_the_first_signal_and_raises_on_the_second() -> None:
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with local.watching(30.0) as watch:
        assert watch.budget == 30.0 and watch.signals == []
        signal.raise_signal(signal.SIGTERM)
        assert watch.signals == [signal.SIGTERM] and watch.stopping() and not watch.spent
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert watch.signals == [signal.SIGTERM, signal.SIGINT]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    with pytest.raises(RuntimeError), local.watching(None) as watch:  # restored when its block raises too
        signal.raise_signal(signal.SIGINT)
        assert watch.signals == [signal.SIGINT] and watch.budget is None
        raise RuntimeError
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


@pytest.fixture(scope="module")
def group(data_root: Path) -> list[dict[str, Any]]:
    """One group of one config, 3 epochs, a checkpoint every 2, on the CPU."""
    cfg, _ = config.compose([*ONE, "train.epochs=3", "train.checkpoint_every=2", "train.device=auto"])
    plan = preflight.plan(cfg)
    (configs,) = plan.groups(cfg, False)
    assert configs[0]["train"]["device"] == "auto"
    return local.prepared(configs, {}, 0.0)


def epochs_taking(seconds: float, clock: Clock) -> Callable:
    """Trial.run whose every epoch takes `seconds` on the fake clock."""
    def run(self: Trial, on_epoch: Callable) -> Any:
        def timed(reports: list) -> None:
            clock.now += seconds
            on_epoch(reports)
        return REAL_RUN(self, timed)
    return run


@pytest.mark.parametrize("budget,trained", [(79.0, 1), (80.0, 2), (119.0, 2), (120.0, 3)])
def test_train_stops_before_an_epoch_that_would_end_past_the_budget(
        group: list[dict[str, Any]], tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, budget: float,
        trained: int) -> None:
    monkeypatch.setattr(Trial, "run", epochs_taking(40.0, clock))
    reported: list[int] = []
    result = local.train("g", group, tmp_path, local.Watch(budget, start=0.0), 0, reported.append)
    assert result.error is None and result.config == {"members": group}
    assert result.metrics_dataframe["epoch"].tolist() == list(range(1, trained + 1))
    assert result.metrics["epoch"] == trained and result.metrics["trial_id"] == "g"
    assert reported == [0, *range(1, trained + 1)]
    if trained < 3:  # stopped: its checkpoint holds the epochs so far (at epoch 1 too, though none is due there)
        assert [e["epoch"] for e in torch.load(tmp_path / "g.pt")["history"]] == list(range(1, trained + 1))
        assert not (tmp_path / "g.json").exists()
    else:  # finished: its epochs in g.json, its checkpoint removed
        assert [e["epoch"] for e in rundir.read_json(tmp_path / "g.json")["history"]] == [1, 2, 3]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]


def test_train_retries_from_its_checkpoint(group: list[dict[str, Any]], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[int] = []

    def run(self: Trial, on_epoch: Callable) -> Any:
        calls.append(self.epoch)

        def failing(reports: list) -> None:
            if reports[0].epoch == 3 and len(calls) == 1:
                raise RuntimeError("lost")  # after the checkpoint of epoch 2
            on_epoch(reports)
        return REAL_RUN(self, failing)

    monkeypatch.setattr(Trial, "run", run)
    reported: list[int] = []
    result = local.train("g", group, tmp_path, local.Watch(None), 1, reported.append)
    assert calls == [0, 2] and reported == [0, 1, 2, 2, 3]
    assert result.error is None and result.metrics_dataframe["epoch"].tolist() == [1, 2, 3]
    assert capsys.readouterr().err == "group g failed (RuntimeError('lost')): retry 1 from its last checkpoint\n"


@pytest.mark.parametrize("retries,calls", [(0, 1), (2, 3)])
def test_train_gives_up_after_its_retries(group: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], retries: int, calls: int) -> None:
    made: list[int] = []

    def run(self: Trial, on_epoch: Callable) -> Any:
        made.append(self.epoch)
        if len(made) > 5:
            raise SystemExit("retried for ever")
        raise RuntimeError("boom")

    monkeypatch.setattr(Trial, "run", run)
    result = local.train("g", group, tmp_path, local.Watch(None), retries, lambda epoch: None)
    assert len(made) == calls and isinstance(result.error, RuntimeError) and str(result.error) == "boom"
    assert result.metrics is None and result.metrics_dataframe is None and result.config == {"members": group}
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and err.count(": retry ") == calls - 1
    assert list(tmp_path.iterdir()) == []


def test_train_keeps_the_epochs_of_a_group_that_fails(group: list[dict[str, Any]], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def run(self: Trial, on_epoch: Callable) -> Any:
        def failing(reports: list) -> None:
            if reports[0].epoch == 2:
                raise RuntimeError("lost")
            on_epoch(reports)
        return REAL_RUN(self, failing)

    monkeypatch.setattr(Trial, "run", run)
    result = local.train("g", group, tmp_path, local.Watch(None), 0, lambda epoch: None)
    assert str(result.error) == "lost" and result.metrics["epoch"] == 1
    assert result.metrics_dataframe["epoch"].tolist() == [1]
    assert capsys.readouterr().err.count("Traceback") == 1


def test_train_retries_for_ever_with_minus_1(group: list[dict[str, Any]], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    made: list[int] = []
    seen: list[list[str]] = []

    def run(self: Trial, on_epoch: Callable) -> Any:
        made.append(self.epoch)
        if len(made) > 6:
            raise SystemExit("retried a group that trained to its end")
        if len(made) <= 4:
            raise RuntimeError("flaky")

        def listed(reports: list) -> None:
            on_epoch(reports)
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return REAL_RUN(self, listed)

    monkeypatch.setattr(Trial, "run", run)
    never = [with_value(c, "train.checkpoint_every", 0) for c in group]  # 0: no checkpoint, not even the last
    result = local.train("g", never, tmp_path, local.Watch(None), -1, lambda epoch: None)
    assert len(made) == 5 and result.error is None and result.metrics["epoch"] == 3
    assert capsys.readouterr().err.count(": retry ") == 4
    assert seen == [[], [], []] and sorted(p.name for p in tmp_path.iterdir()) == ["g.json"]


def test_prepared_places_paths_and_puts_auto_on_the_cpu(group: list[dict[str, Any]]) -> None:
    auto = [with_value(group[0], "train.device", "auto")]
    assert local.prepared(auto, {}, 0.0)[0]["train"]["device"] == "cpu"
    assert local.prepared(auto, {}, 0.5)[0]["train"]["device"] == "auto"  # a GPU request: the trial picks
    cuda = [{**auto[0], "train": {**auto[0]["train"], "device": "cuda"}}]
    assert local.prepared(cuda, {}, 0.0)[0]["train"]["device"] == "cuda"  # only auto is changed
    moved = local.prepared(auto, {"data.root": "/elsewhere", "noise.confusion": "/c.npy"}, 0.0)
    assert (moved[0]["data"]["root"], moved[0]["noise"]["confusion"]) == ("/elsewhere", "/c.npy")
    assert auto[0]["train"]["device"] == "auto"  # not changed in place


def test_record_notes_the_threads_or_the_gpu(tmp_path: Path) -> None:
    import time

    local.record(tmp_path, time.time(), 3, 0.0, "budget spent")
    local.record(tmp_path, time.time(), 3, 0.5, "finished")
    first, second = rundir.read_json(tmp_path / rundir.PROVENANCE)["launches"]
    assert (first["outcome"], first["runner"], first["cpus"], first["gpus"]) == ("budget spent", "local", 3, 0)
    assert first["device"].startswith("CPU (") and first["device"].endswith(", 3 cores)")
    assert (second["outcome"], second["runner"], second["cpus"], second["gpus"]) == ("finished", "local", 0, 1.0)


def test_result_of_a_group_without_epochs() -> None:
    result = local.result([{"a": 1}], [], ValueError("x"))
    assert (result.config, result.metrics, result.metrics_dataframe) == ({"members": [{"a": 1}]}, None, None)
    assert isinstance(result.error, ValueError)
    two = local.result([{"a": 1}], [{"epoch": 1, "members": {"0": {"x": 1}}}, {"epoch": 2, "members": {"0": {"x": 2}}}])
    assert two.metrics == {"epoch": 2, "members": {"0": {"x": 2}}} and two.error is None
    assert two.metrics_dataframe.to_dict("list") == {"epoch": [1, 2], "members/0/x": [1, 2]}
