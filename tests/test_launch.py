"""The launcher: bad input (a value, a search or scheduler, a GPU, a cluster address, a resume dir) gets one
line on stderr and exit 2 before any Ray process starts, with nothing written; a real smoke study runs."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from loaders import datasets
from study import experiments, launch
from study.launch import main
from tests.conftest import REPO, free_ports
from tests.helpers import SMOKE, fails
from tests.helpers import launch as study


@pytest.mark.parametrize("overrides,message", [
    (["exp=no_such_exp"], "exp='no_such_exp' is unknown: choose one of"),
    (["preset=huge"], "preset='huge' is unknown: choose one of"),
    (["grid.model.arch=[mlp1,vgg]"], "model.arch='vgg' is unknown: choose one of perceptron"),
    (["grid.noise.alpha=[0,-1]"], "noise.alpha=-1 is invalid: it must be a real number >= 0"),
    (["grid.train.lr=[0.1,0]"], "train.lr=0 is invalid: it must be a number > 0"),
    (["train.batch_size=0"], "train.batch_size=0 is invalid: it must be an integer > 0"),
    (["train.no_such_key=3"], "train.no_such_key=3 is unknown: choose one of lr, batch_size, epochs"),
    (["+train.nope=3"], "train.nope=3 is unknown: choose one of lr, batch_size, epochs"),
    (["+grid.train.nope=[1]"], "grid.train.nope=1 is unknown: choose one of lr, batch_size, epochs"),
    (["train.epochs=1.5"], "train.epochs=1.5 is invalid: it must be an integer > 0"),
    (["data.download=maybe"], "data.download='maybe' is invalid: it must be true or false"),
    (["grid.noise.alpha=[0,,5]"], "grid.noise.alpha='[0,,5]' is invalid: it must be a value in Hydra's override "
                                  "grammar, e.g. [0,5] for a list (no viable alternative at input '[0,,')"),
    (["noise.delta=0.5", "noise.source=white"], "noise.delta=0.5 needs images with a true class: with "
                                                "noise.source=white drop it"),
])
def test_bad_input_one_line_exit_2(overrides: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str], data_root: Path) -> None:
    assert message in fails(["preset=smoke", *overrides], capsys, tmp_path / "run")


def test_missing_data_one_line_exit_2(tmp_path: Path) -> None:
    # A subprocess: the real entry point, no traceback, no download, nothing written.
    empty = tmp_path / "no-data"
    run_dir = tmp_path / "run"
    proc = study("preset=smoke", f"data.root={empty}", "data.download=false", f"run_dir={run_dir}", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"MNIST not found under {empty}" in proc.stderr and "data.root=" in proc.stderr
    assert not run_dir.exists() and not empty.exists()


@pytest.mark.slow
def test_smoke_study_through_tune(data_root: Path, tmp_path: Path) -> None:
    """The README's demo command, exactly: real MNIST, Ray Tune, Figure 1."""
    proc = study("exp=uniform_mnist", "preset=smoke", f"run_dir={tmp_path / 'run'}",
                 env={"STUDY_DATA_ROOT": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = Path(proc.stdout.strip().splitlines()[-1].removeprefix("results: "))
    assert run_dir == (tmp_path / "run").resolve()
    for name in ("trials.csv", "epochs.csv", "summary.csv", "fig1.png", "study.json"):
        assert (run_dir / name).stat().st_size > 0, name
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3 * 3 * 2 and (trials["status"] == "ok").all()
    assert {"alpha", "arch", "lr", "batch_size", "seed", "test_acc", "best_test_acc"} <= set(trials.columns)
    summary = pd.read_csv(run_dir / "summary.csv")
    conv_clean = summary[(summary["arch"] == "conv4") & (summary["alpha"] == 0)]["test_acc"].item()
    assert conv_clean >= 0.80
    assert (summary["test_acc"] > 0.2).all()  # every cell well above chance (10%)

    # The analysis re-creates its outputs from the result files alone.
    (run_dir / "fig1.png").unlink()
    (run_dir / "summary.csv").unlink()
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(run_dir)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "fig1.png").exists()
    assert pd.read_csv(run_dir / "summary.csv").equals(summary)


def test_report_rejects_non_run_dir(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a finished study run dir" in proc.stderr


def test_dry_run_counts_match_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["exp=uniform_mnist", "dry_run=true", f"run_dir={run_dir}", "grid.noise.alpha=[0,10]",
                 "grid.model.arch=[mlp1,conv4,resnet18]", "train.epochs=2", "data.n_clean=1000"]) == 0
    out = capsys.readouterr().out
    # preset=paper runs 3 replicates, each in groups of its own: mlp1 and conv4 fuse their lr grid per alpha and
    # replicate (12 trials); resnet18 (BatchNorm) runs one config per trial (24)
    assert ("configs: 72 (noise.alpha 2 x model.arch 3 x train.lr 4, x 3 replicates), in 36 trials (fused groups of "
            "up to 4") in out
    assert "examples per config: 2,000 to 22,000" in out  # epochs x n_clean x (1 + alpha)
    hours = float(out.split("estimated GPU time: ")[1].split()[0])
    assert hours > 0
    assert not run_dir.exists()


def test_trials_never_rebuild_with_a_grid_data_key(data_root: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """data.rebuild=true rewrites the .betons once, in the launcher: every trial config handed to Tune
    reads them, also when a grid.data.* key gives each trial a data section of its own."""
    class Handed(Exception):
        pass

    def fit(plan: list[experiments.Experiment], *args: object, **kwargs: object) -> None:
        raise Handed(plan)

    monkeypatch.setattr(experiments, "fit", fit)
    monkeypatch.setattr(launch, "connect", lambda cfg: None)  # no Ray: the plan is what Tune would get
    for search in ("grid", "optuna"):
        with pytest.raises(Handed) as handed:
            main(["exp=dataset_size", "preset=smoke", "data.download=false", "data.rebuild=true", f"search={search}",
                  "data.backend=tensor", f"run_dir={tmp_path / search}"])
        plan = handed.value.args[0]
        if search == "grid":  # one experiment over the fused groups; n_clean varies between groups
            groups = plan[0].param_space["members"]["grid_search"]
            configs = [c for group in groups for c in group]
            assert len(plan) == 1 and len({c["data"]["n_clean"] for c in configs}) > 1
            assert all(c["data"]["rebuild"] is False for c in configs)
        else:
            assert plan and all(e.param_space["data"]["rebuild"] is False for e in plan), search


def test_a_path_that_cannot_be_resolved_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """data.root=/proc/1/root (a link one may not follow): Path.resolve's PermissionError becomes the one line."""
    def denied(root: object, storage: object = None) -> Path:
        raise PermissionError(errno.EACCES, "Permission denied", "/proc/1/root")

    monkeypatch.setattr(datasets, "resolve_root", denied)
    err = fails([*SMOKE, "data.root=/proc/1/root", "dry_run=true"], capsys, tmp_path / "run")
    assert err == "error: data.root='/proc/1/root' is invalid: it must be a path you may read (Permission denied: /proc/1/root)"


@pytest.mark.parametrize("group", ["search", "scheduler"])
def test_unknown_search_or_scheduler(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"{group}='bogus' is unknown" in fails([*SMOKE, f"{group}=bogus"], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_request_without_gpu(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, "resources.gpu=0.25"], capsys, tmp_path / "run")
    assert "no GPU is visible" in err and "allow_cpu_fallback" in err


def test_unreachable_address(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is unreachable" in fails([*SMOKE, f"ray.address=127.0.0.1:{free_ports(1)[0]}"], capsys, tmp_path / "run")


def test_resume_dir_without_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is not a study run dir" in fails([f"resume={tmp_path}"], capsys)


def test_resume_dir_without_tune_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "study.json").write_text(json.dumps({"experiments": ["tune"], "config": {}}))
    assert "no Tune experiment state" in fails([f"resume={tmp_path}"], capsys)
