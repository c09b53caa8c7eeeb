"""budget=, resume= overrides and run_dir= resume-or-start: the values accepted, and bad input as one line and
exit 2 before any Ray process starts (the end-to-end slices: tests/test_budget_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rundir
from study import launch, slices
from tests.test_bad_input import SMOKE, fails


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("12m", 720), ("3h", 10800), ("1.5h", 5400), (None, None)])
def test_budget_durations(text: str | None, seconds: float | None) -> None:
    assert slices.seconds(text) == seconds


@pytest.mark.parametrize("value", ["5", "0m", "12x", "m", "-3h", "1d"])
def test_bad_budget(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, f"budget={value}", f"run_dir={tmp_path / 'run'}"], capsys)
    assert err.startswith("error: budget=") and err.endswith(
        "is invalid: it must be null or a duration > 0: a number and s, m or h, e.g. 90s, 12m, 3h")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, why", [
    (["search=optuna"], "needs search=grid and scheduler=none"),
    (["scheduler=asha"], "needs search=grid and scheduler=none"),
    (["train.checkpoint_every=0"], "needs train.checkpoint_every >= 1"),
])
def test_budget_needs_a_resumable_study(extra: list[str], why: str, data_root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, "budget=10m", *extra, f"run_dir={tmp_path / 'run'}"], capsys)
    assert err.startswith("error: budget='10m' ") and why in err
    assert not (tmp_path / "run").exists()


def held(tmp_path: Path, argv: list[str]) -> Path:
    """A run dir holding the study `argv` composes, as study.launch writes its study.json."""
    cfg, choices = launch.compose(argv)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rundir.write_json({"exp": choices["exp"], "preset": choices["preset"], "config": cfg, "experiments": ["tune"]},
                      run_dir / rundir.STUDY)
    return run_dir


@pytest.mark.parametrize("override", ["train.epochs=3", "grid.noise.alpha=[5]", "+grid.train.seed=[1]", "exp=batchsize"])
def test_resume_refuses_other_overrides(override: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = held(tmp_path, SMOKE)
    key = override.partition("=")[0].lstrip("+")
    assert fails([f"resume={run_dir}", override], capsys) == (
        f"error: {key}= cannot change with resume=: a resumed study keeps the config it started with; only budget=, "
        "data.root=, storage.root=, ray.address= may be given (another machine, another slice)")


def test_resume_overrides_are_the_portable_keys() -> None:
    argv = ["resume=/r", "budget=12m", "data.root=/data", "ray.address=auto"]
    cfg, _ = launch.compose(argv)
    overrides = slices.resume_overrides(argv, cfg)
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
    assert (run_dir / rundir.STUDY).read_text() == before and sorted(p.name for p in run_dir.iterdir()) == ["study.json"]


def test_run_dir_with_this_study_is_held_whatever_the_portable_keys(tmp_path: Path) -> None:
    run_dir = held(tmp_path, SMOKE)
    (run_dir / "tune").mkdir()
    assert not launch.held_study(*launch.compose([*SMOKE, f"run_dir={run_dir}"]))  # no Tune state: start afresh
    (run_dir / "tune" / "tuner.pkl").write_bytes(b"")  # what Tuner.can_restore looks for
    for extra in ([], ["budget=3h", "data.root=/elsewhere", "ray.address=auto", "force=true"]):
        assert launch.held_study(*launch.compose([*SMOKE, *extra, f"run_dir={run_dir}"]))
    assert json.loads((run_dir / rundir.STUDY).read_text())["config"]["budget"] is None
