"""budget=, resume= overrides and run_dir= resume-or-start: the values accepted, and bad input as one line and
exit 2 before any Ray process starts (the end-to-end slices: tests/test_budget_resume.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import rundir
from errors import UsageError
from study import config, slices
from study.grid import flatten
from tests.helpers import SMOKE, fails


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("12m", 720), ("3h", 10800), ("1.5h", 5400), (None, None)])
def test_budget_durations(text: str | None, seconds: float | None) -> None:
    assert slices.seconds(text) == seconds


@pytest.mark.parametrize("value", ["5", "0m", "12x", "m", "-3h", "1d"])
def test_bad_budget(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, f"budget={value}"], capsys, tmp_path / "run")
    assert err.startswith("error: budget=") and err.endswith(
        "is invalid: it must be null or a duration > 0: a number and s, m or h, e.g. 90s, 12m, 3h")


@pytest.mark.parametrize("extra, why", [
    (["search=optuna"], "needs search=grid and scheduler=none"),
    (["scheduler=asha"], "needs search=grid and scheduler=none"),
    (["train.checkpoint_every=0"], "needs train.checkpoint_every >= 1"),
])
def test_budget_needs_a_resumable_study(extra: list[str], why: str, data_root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, "budget=10m", *extra], capsys, tmp_path / "run")
    assert err.startswith("error: budget='10m' ") and why in err


def held(tmp_path: Path, argv: list[str]) -> Path:
    """A run dir holding the study `argv` composes, as study.launch writes its study.json."""
    cfg, choices = config.compose(argv)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.write_json({"exp": choices["exp"], "preset": choices["preset"], "config": dataclasses.asdict(cfg),
                       "experiments": ["tune"]}, run_dir / rundir.STUDY)
    (run_dir / "tune").mkdir()
    return run_dir


@pytest.mark.parametrize("override, held_value", [("train.epochs=3", "1"), ("grid.noise.alpha=[5]", "[0]"),
                                                  ("+grid.train.seed=[1]", "None"), ("exp=batchsize", "'uniform_mnist'")])
def test_resume_refuses_other_overrides(override: str, held_value: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = held(tmp_path, SMOKE)
    (run_dir / "tune" / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    key, _, value = override.lstrip("+").partition("=")
    shown = {"exp": "'batchsize'", "train.epochs": "3"}.get(key, value)
    assert fails([*SMOKE, f"resume={run_dir}", override], capsys) == (
        f"error: {key}={shown} cannot change with resume=: the study in {run_dir} has {key}={held_value}; a resumed "
        "study keeps the config it started with, and only budget=, data.root=, storage.root=, ray.address= may change "
        "(another machine, another slice)")


def test_resume_beside_the_command_that_started_the_study(tmp_path: Path) -> None:
    """The command a study started with, resume= appended (and a portable key changed), is accepted as is: only
    the portable keys reach the resumed config; the same override with another value is refused."""
    run_dir = held(tmp_path, SMOKE)
    study = rundir.read_study(run_dir)
    argv = [*SMOKE, f"run_dir={run_dir}", f"resume={run_dir}", "budget=12m"]
    cfg, names = config.compose(argv)
    assert slices.resume_overrides(argv, cfg, names, study, run_dir) == {"budget": "12m"}
    argv = [a if a != "data.n_clean=500" else "data.n_clean=400" for a in argv]
    with pytest.raises(UsageError, match=r"^data.n_clean=400 cannot change with resume=: .* has data.n_clean=500;"):
        slices.resume_overrides(argv, *config.compose(argv), study, run_dir)


def test_resume_overrides_are_the_portable_keys(tmp_path: Path) -> None:
    argv = ["resume=/r", "budget=12m", "data.root=/data", "ray.address=auto"]
    cfg, names = config.compose(argv)
    study = rundir.read_study(held(tmp_path, []))
    overrides = slices.resume_overrides(argv, cfg, names, study, tmp_path)
    assert overrides == {"budget": "12m", "data.root": "/data", "ray.address": "auto"}
    study = {"data": {"root": "/old", "n_clean": 5}, "ray": {"address": None, "num_cpus": 1}, "train": {"epochs": 2}}
    assert slices.with_overrides(study, overrides) == {
        "data": {"root": "/data", "n_clean": 5}, "ray": {"address": "auto", "num_cpus": 1}, "train": {"epochs": 2},
        "budget": "12m"}  # a study.json from before budget= existed gets the key
    assert study["data"]["root"] == "/old"  # a copy: the study read is unchanged


@pytest.mark.parametrize("change, shown", [
    ("grid.noise.alpha=[5]", "grid.noise.alpha=[0] there, [5] here"),
    ("train.epochs=2", "train.epochs=1 there, 2 here"),
    ("preset=paper", "preset='smoke' there, 'paper' here"),
])
def test_run_dir_with_another_study_is_refused(change: str, shown: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = held(tmp_path, SMOKE)
    before = (run_dir / rundir.STUDY).read_text()
    err = fails([*SMOKE, change, f"run_dir={run_dir}"], capsys)
    assert err == (f"error: run_dir={str(run_dir)!r} holds another study: {shown}; use the same config to continue "
                   "it, or another run_dir to start a new study")
    assert (run_dir / rundir.STUDY).read_text() == before and sorted(p.name for p in run_dir.iterdir()) == ["study.json",
                                                                                                          "tune"]


def test_run_dir_with_this_study_is_held_whatever_the_portable_keys(tmp_path: Path) -> None:
    run_dir = held(tmp_path, SMOKE)
    assert not slices.continues(*config.compose([*SMOKE, f"run_dir={run_dir}"]))  # no Tune state: start afresh
    (run_dir / "tune" / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    for extra in ([], ["budget=3h", "data.root=/elsewhere", "ray.address=auto", "force=true"]):
        assert slices.continues(*config.compose([*SMOKE, *extra, f"run_dir={run_dir}"]))
    assert json.loads((run_dir / rundir.STUDY).read_text())["config"]["budget"] is None


def test_every_key_but_the_portable_and_launch_ones_makes_another_study(tmp_path: Path) -> None:
    """run_dir= compares every key of the two configs, one by one: each changed alone is named in the refusal,
    except the four that may change between slices and the four that say how a study is launched."""
    cfg, names = config.compose(SMOKE)
    held = slices.named(names, cfg)
    keys = list(flatten(held))
    assert {"exp", "preset", "data.n_clean", "noise.alpha", "train.lr", "grid.noise.alpha", "replicates"} <= set(keys)
    free = {"budget", "data.root", "storage.root", "ray.address", "resume", "run_dir", "dry_run", "force"}
    assert free <= set(keys)
    for key in keys:
        new = slices.with_overrides(held, {key: ["another value"]})
        if key in free:
            slices.unchanged(held, new, keys, "{key}", tmp_path)
            continue
        with pytest.raises(UsageError) as err:
            slices.unchanged(held, new, keys, "{key}: {old!r} there, {new!r} here in {where}", tmp_path)
        assert str(err.value) == f"{key}: {slices.value_at(held, key)!r} there, ['another value'] here in {tmp_path}"
    added = slices.with_overrides(held, {"data.new_key": 1})  # a key only one side has differs from None
    with pytest.raises(UsageError, match="^data.new_key$"):
        slices.unchanged(held, added, [*keys, "data.new_key"], "{key}", tmp_path)
    slices.unchanged(held, held, ["data.new_key"], "{key}", tmp_path)


@pytest.fixture
def usr1() -> list[int]:
    """A SIGUSR1 handler standing where Tune's is while a study runs; the signals it got."""
    import signal

    got: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
    yield got
    signal.signal(signal.SIGUSR1, previous)


def test_the_first_ctrl_c_asks_tune_to_stop_and_the_second_ends_it(usr1: list[int], monkeypatch) -> None:
    import os
    import signal

    monkeypatch.setenv("TUNE_DISABLE_SIGINT_HANDLER", "0")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with slices.stoppable() as received:
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            os.kill(os.getpid(), signal.SIGINT)
            assert received == [signal.SIGINT] and usr1 == [signal.SIGUSR1]  # passed on to Tune's handler
            os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGINT, signal.SIGTERM] and usr1 == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGINT) is before and os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "0"
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER")
    with slices.stoppable():
        pass
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ


def test_a_signal_while_no_tune_loop_listens_ends_at_once() -> None:
    import os
    import signal

    assert not slices.tune_listens()
    with pytest.raises(KeyboardInterrupt):
        with slices.stoppable() as received:
            os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGTERM]


def test_a_spent_budget_asks_tune_to_stop_once(usr1: list[int]) -> None:
    import signal
    import time

    with slices.budget_timer(0.01) as spent:
        deadline = time.monotonic() + 120  # a bound for a failing test only
        while not spent and time.monotonic() < deadline:
            time.sleep(0.01)
    assert spent == [True] and usr1 == [signal.SIGUSR1]
    with slices.budget_timer(None) as never:
        pass
    with slices.budget_timer(3600) as later:
        pass  # the block ended first: the timer stops with it
    assert never == [] and later == [] and usr1 == [signal.SIGUSR1]


def test_exit_codes_and_messages_of_a_slice(tmp_path: Path) -> None:
    import signal
    import sys

    stopped = slices.Interrupted(signal.SIGINT, tmp_path, 3, 8)
    assert stopped.code == 130 and slices.Interrupted(signal.SIGTERM, tmp_path, 0, 1).code == 143
    assert str(stopped) == (f"interrupted by SIGINT: 3 of 8 trials finished; finish the study with: {sys.executable} "
                            f"-m study.launch resume={tmp_path}")
    command = f"{sys.executable} -m study.launch resume={tmp_path}"
    assert str(slices.BudgetSpent("2h", tmp_path, 3, 2, 8, [(2, 4, 10), (0, 1, 10)])) == (
        "budget 2h spent: 3 of 8 trials finished, 2 partial (each goes on from its last checkpoint; this slice "
        "advanced 2 of them, epochs 0 → 1 of 10, 2 → 4 of 10), 3 not started; trials.csv holds the finished ones\n"
        f"another slice of 2h: {command} budget=2h\nfinish the study (no budget): {command} budget=null")
    assert "advanced" not in str(slices.BudgetSpent("2h", tmp_path, 3, 2, 8))
    assert slices.EXIT_BUDGET == 75


def test_a_budget_needs_every_trial_to_exist() -> None:
    cfg, _ = config.compose([*SMOKE, "budget=1h"])
    slices.check_budget(cfg, 200)
    with pytest.raises(UsageError, match=r"^budget='1h' needs at most 200 trials, this study has 201: shrink the grid"):
        slices.check_budget(cfg, 201)
    slices.check_budget(config.compose(SMOKE)[0], 10_000)  # no budget: any number


def test_overrides_keys_values_and_resumed_config(tmp_path: Path) -> None:
    assert slices.given(["+grid.train.seed=[1]", "~data.root", "budget=2h", "exp=x"]) == [
        "grid.train.seed", "data.root", "budget", "exp"]
    tree = {"data": {"root": "/d", "n": {"deep": 1}}, "budget": None}
    assert [slices.value_at(tree, k) for k in ("data.root", "data.n.deep", "data.nope", "nope.x", "budget",
                                               "data.root.x")] == ["/d", 1, None, None, None, None]
    cfg, names = config.compose([*SMOKE, "budget=2h", "data.root=/data", "ray.address=auto"])
    assert slices.portable(cfg) == {"budget": "2h", "data.root": "/data", "storage.root": None, "ray.address": "auto"}
    run_dir = held(tmp_path, SMOKE)
    again, again_names = slices.resumed(rundir.read_study(run_dir), {"budget": "3h", "data.root": "/elsewhere"})
    assert (again.budget, again.data.root, again.train.epochs) == ("3h", "/elsewhere", 1)
    assert again_names == {"exp": "uniform_mnist", "preset": "smoke"}
    assert slices.named(names, cfg) == {"exp": "uniform_mnist", "preset": "smoke", **dataclasses.asdict(cfg)}


def test_a_resume_needs_the_state_of_its_study_s_runner(tmp_path: Path) -> None:
    """slices.held: a folder without study.json, a Tune study without Tune state and a runner=local study without
    its groups are each one line naming what is missing; with its state a study is held (and locked)."""
    try:
        with pytest.raises(UsageError, match=rf"^resume={tmp_path / 'none'} is not a study run dir: it has no "
                                             r"study.json$"):
            slices.held(tmp_path / "none")
        (tmp_path / "t").mkdir()
        tune_dir = held(tmp_path / "t", SMOKE)
        with pytest.raises(UsageError) as err:
            slices.held(tune_dir)
        assert str(err.value) == f"resume={tune_dir} holds no Tune experiment state to restore: start the study afresh"
        study = rundir.read_study(tune_dir)
        (tune_dir / "later").mkdir()
        (tune_dir / "later" / "tuner.pkl").write_bytes(b"")  # the state of an experiment study.json lists second
        rundir.write_json({**study, "experiments": ["tune", "later"]}, tune_dir / rundir.STUDY)
        assert slices.held(tune_dir)["experiments"] == ["tune", "later"] and tune_dir in rundir.LOCKS
        older = {k: v for k, v in study.items() if k != "experiments"}  # a run dir from before study.json listed them
        rundir.write_json(older, tune_dir / rundir.STUDY)
        assert not slices.restorable(tune_dir, older)  # its one experiment is tune/, which holds no state
        (tune_dir / "tune" / "tuner.pkl").write_bytes(b"")
        assert slices.restorable(tune_dir, older)

        (tmp_path / "l").mkdir()
        local_dir = held(tmp_path / "l", [*SMOKE, "runner=local"])
        with pytest.raises(UsageError) as err:
            slices.held(local_dir)
        assert str(err.value) == f"resume={local_dir} holds no runner=local state to restore: start the study afresh"
        (local_dir / rundir.LOCAL).mkdir()
        (local_dir / rundir.LOCAL / rundir.LOCAL_GROUPS).write_text("[]")
        assert slices.held(local_dir)["config"]["runner"] == "local"
    finally:
        rundir.unlock_all()


def test_run_dir_continues_only_a_study_that_is_there_and_not_a_dry_run(tmp_path: Path) -> None:
    run_dir = held(tmp_path, SMOKE)
    (run_dir / "tune" / "tuner.pkl").write_bytes(b"")
    assert slices.continues(*config.compose([*SMOKE, f"run_dir={run_dir}"]))
    assert not slices.continues(*config.compose([*SMOKE, f"run_dir={run_dir}", "dry_run=true"]))
    assert not slices.continues(*config.compose([*SMOKE, f"run_dir={tmp_path / 'new'}"]))
    assert not slices.continues(*config.compose(SMOKE))


def test_a_resumed_study_reads_the_paths_this_launch_resolved_but_those_a_grid_varies() -> None:
    base = {"data": {"root": "/lab/data", "cache": "/lab/ffcv", "n": 1}, "noise": {"confusion": "/lab/c.npy"}}
    assert slices.placed(base, [{"noise.alpha": [0, 1]}]) == {"data.root": "/lab/data", "data.cache": "/lab/ffcv",
                                                              "noise.confusion": "/lab/c.npy"}
    assert slices.placed(base, [{"noise.alpha": [0]}, {"noise.confusion": ["/a.npy"]}]) == {
        "data.root": "/lab/data", "data.cache": "/lab/ffcv"}


def test_a_budget_message_lists_four_trials_advanced_and_counts_the_rest(tmp_path: Path) -> None:
    import sys

    tail = (f"not started; trials.csv holds the finished ones\nanother slice of 1h: {sys.executable} -m study.launch "
            f"resume={tmp_path} budget=1h\nfinish the study (no budget): {sys.executable} -m study.launch "
            f"resume={tmp_path} budget=null")
    assert str(slices.BudgetSpent("1h", tmp_path, 0, 6, 6)) == (
        f"budget 1h spent: 0 of 6 trials finished, 6 partial (each goes on from its last checkpoint), 0 {tail}")
    four = [(0, e, 9) for e in (1, 2, 3, 4)]
    assert str(slices.BudgetSpent("1h", tmp_path, 0, 4, 4, four)) == (
        "budget 1h spent: 0 of 4 trials finished, 4 partial (each goes on from its last checkpoint; this slice advanced "
        f"4 of them, epochs 0 → 1 of 9, 0 → 2 of 9, 0 → 3 of 9, 0 → 4 of 9), 0 {tail}")
    five = [(0, e, 9) for e in (1, 2, 3, 4, 5)]
    assert str(slices.BudgetSpent("1h", tmp_path, 0, 5, 5, five)).endswith(
        f"this slice advanced 5 of them, epochs 0 → 1 of 9, 0 → 2 of 9, 0 → 3 of 9, 0 → 4 of 9 and 1 more), 0 {tail}")
    six = [(0, e, 9) for e in (6, 5, 4, 3, 2, 1)]
    assert str(slices.BudgetSpent("1h", tmp_path, 1, 6, 8, six)) == (
        "budget 1h spent: 1 of 8 trials finished, 6 partial (each goes on from its last checkpoint; this slice advanced "
        f"6 of them, epochs 0 → 1 of 9, 0 → 2 of 9, 0 → 3 of 9, 0 → 4 of 9 and 2 more), 1 {tail}")
