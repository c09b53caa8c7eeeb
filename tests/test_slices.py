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
