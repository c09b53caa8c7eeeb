"""study.preflight: every bad value a trial's data or a local Ray would reject is one line on stderr and exit 2,
before the run dir exists (issue 11); the cost guard."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from errors import UsageError
from loaders import datasets
from study import config, launch, preflight
from study.config import Config, Ray
from tests.helpers import SMOKE, fails


@pytest.mark.parametrize("argv, line", [
    (["data.n_clean=70000"], "data.n_clean=70000 is invalid: it must be an integer in [1, 60000] "
                             "(the mnist training split)"),
    (["data.n_test=10001"], "data.n_test=10001 is invalid: it must be an integer in [1, 10000] (the mnist test split)"),
    (["data.dataset=cifar100", "data.n_clean=6000"],
     "data.n_clean=6000 is invalid: it must be an integer in [1, 5000] (the stand-in cifar100 training split)"),
    (["exp=repeated", "grid.noise.alpha=[1000]", "grid.noise.source=[same,novel]"],
     "noise.alpha=1000 is invalid: noise.source=novel needs 500000 unused training images (n_clean x alpha) but "
     "only 59500 lie outside the 500 clean ones: lower noise.alpha to at most 119 or data.n_clean"),
    (["grid.model.arch=[conv4]", "model.conv_channels=[4]"], "model.conv_channels has 1 widths; conv4 needs 4"),
    (["resources.cpu=64", "ray.num_cpus=2"], "resources.cpu=64.0 is invalid: it must be at most 2, the CPUs of the "
                                             "local Ray"),
])
def test_bad_plan_is_one_line(argv: list[str], line: str, data_root: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in SMOKE if not a.startswith("exp=")] + argv if any(a.startswith("exp=") for a in argv) else [*SMOKE, *argv]
    assert line in fails(args, capsys, tmp_path / "run")


def test_run_dir_is_a_file(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert launch.main([*SMOKE, f"run_dir={file}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: run_dir={str(file)!r} is invalid: it must be a folder or a path that does not exist yet ({file} is a file)"
    assert launch.main([*SMOKE, f"run_dir={file / 'under'}"]) == 2
    assert "is a file" in capsys.readouterr().err and file.read_text() == "x"


def test_unreadable_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "locked"

    def denied(name: str, where: Path) -> bool:  # what stat under a folder without read/search permission raises
        raise PermissionError(errno.EACCES, "Permission denied", str(where / "MNIST"))

    monkeypatch.setattr(datasets, "present", denied)
    err = fails([*SMOKE, f"data.root={root}"], capsys, tmp_path / "run")
    assert err == f"error: data.root={str(root)!r} is invalid: it must be a folder you may read (Permission denied: {root / 'MNIST'})"


def test_max_failures_minus_one_retries_forever() -> None:
    config.check_value("max_failures", -1)
    with pytest.raises(UsageError, match=r"max_failures=-2 is invalid: it must be an integer >= -1 \(-1: retry forever\)"):
        config.check_value("max_failures", -2)


def test_cost_guard_stops_a_study_of_days(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in SMOKE if not a.startswith(("grid.noise.alpha", "grid.model", "train.epochs"))]
    err = fails([*argv, "grid.noise.alpha=[100000]", "grid.model.arch=[conv4]", "train.epochs=10", "ray.num_cpus=2"],
                capsys, tmp_path / "run")
    assert "hours on this machine (2 CPU cores), over 24:" in err and "force=true to run it anyway" in err


def test_cost_guard_prints_the_estimate_and_force_runs_anyway(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from study import cost

    monkeypatch.setattr(cost, "local_hours", lambda *args: (100.0, "2 CPU cores"))
    monkeypatch.setattr(cost, "launch_overhead", lambda runner: {"launch_s": 1800.0, "group_s": 900.0, "host": "vm"})
    cfg = Config(ray=Ray(num_cpus=2), force=True)
    preflight.cost_guard(cfg, [[{}], [{}, {}]], {"cpu": 1, "gpu": 0})
    assert capsys.readouterr().out == (  # the launch's fixed cost included: 100 h + 0.5 h + 2 x 0.25 h
        "estimate: 3 configs in 2 trials, about 101 hours on this machine (2 CPU cores, with 60.0 min fixed for "
        "runner=tune measured on vm: 1800 s a launch + 2 x 900.0 s a group; dry_run=true for the details)\n")
    with pytest.raises(UsageError, match="about 101 hours on this machine .* over 24: .* force=true"):
        preflight.cost_guard(Config(ray=Ray(num_cpus=2)), [[{}]], {"cpu": 1, "gpu": 0})


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_a_paper_study_on_a_laptop_is_refused_with_its_cost_first(data_root: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """preset=paper asks for GPUs: on a CPU machine the first line is the cost on its cores, and the refusal names
    preset=smoke and force=true (with the CPU fallback), not the missing GPU (issue 23)."""
    err = fails(["exp=uniform_mnist", "preset=paper", "data.download=false"], capsys, tmp_path / "run")
    assert re.match(r"error: this study would take about [\d.]+ hours on this machine \(\d+ CPU cores, no GPU visible\), "
                    r"over 24: run preset=smoke for a small study", err), err
    assert err.endswith("or pass force=true resources.allow_cpu_fallback=true to run it on these CPUs anyway")


def test_a_folder_takes_the_sizes_that_fit_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An experiment's or preset's n_clean, n_test and n_val apply where the folder holds them; else the folder's
    own sizes, said in one line; a size given on the command line stays as given (and is checked as it is)."""
    from tests.test_folder import tree

    path = tree(tmp_path / "shapes", {"a": (30, 10), "b": (30, 10), "c": (30, 10)})
    cfg, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}", "data.n_val=6"])
    fitted = preflight.fitted(cfg, ["preset", "data.dataset", "data.path", "data.n_val"])
    assert (fitted.data.n_clean, fitted.data.n_test, fitted.data.n_val) == (None, None, 6)
    assert capsys.readouterr().out == ("data: shapes holds 90 training and 30 test images, fewer than data.n_clean=2000, "
                                       "data.n_test=2000 of this experiment and preset ask for: data.n_clean=null, "
                                       "data.n_test=null instead (null: all of them; 0: no held-out split); set them "
                                       "on the command line to choose\n")
    paper, _ = config.compose(["preset=paper", "data.dataset=folder", f"data.path={path}", "data.n_clean=20"])
    fitted = preflight.fitted(paper, ["data.dataset", "data.path", "data.n_clean"])
    assert (fitted.data.n_clean, fitted.data.n_test, fitted.data.n_val) == (20, None, 0)  # n_val=5000 of preset=paper
    given, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}", "data.n_test=20"])
    assert preflight.fitted(given, ["data.n_test", "data.n_clean"]).data.n_clean == 2000  # given: left to the checks
    small, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}", "data.n_clean=50",
                               "data.n_test=5"])
    assert preflight.fitted(small, []) == small  # they fit: kept


def test_local_hours_from_cpu_rows() -> None:
    from study import cost

    config = {"data": {"dataset": "mnist", "n_clean": 1000}, "noise": {"alpha": 0.0}, "model": {"arch": "perceptron"},
              "train": {"batch_size": 128, "epochs": 1, "loss": "ce"}}
    rate = cost._cpu_rates()[("mnist", "perceptron", 128)][1]
    hours, device = cost.local_hours([[config]], 1, 2, 0, 0)
    assert device == "2 CPU cores" and hours == pytest.approx(1000 / rate / 3600)
    assert cost.cpu_factor() > 10  # conv4: a CUDA device is ~48 CPU cores


def test_resume_of_a_run_dir_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl
    import json
    import os

    (tmp_path / "study.json").write_text(json.dumps({"experiments": ["tune"], "config": {}}))
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)  # what a running launcher holds
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert launch.main([f"resume={tmp_path}"]) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {tmp_path} is in use: its study is still running (another launcher holds "
                   f"{tmp_path / '.lock'}); wait for it to end, or stop it (Ctrl-C) and resume then")
