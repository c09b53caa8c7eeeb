"""Bad cluster/search input: one clear line on stderr and exit 2, before any Ray process starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from study import launch
from tests.conftest import free_ports

SMOKE = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.noise.alpha=[0]", "grid.model.arch=[perceptron]",
         "grid.train.lr=[0.1]", "data.n_clean=500", "data.n_test=500", "train.epochs=1"]


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert launch.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


@pytest.mark.parametrize("group", ["search", "scheduler"])
def test_unknown_search_or_scheduler(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"{group}='bogus' is unknown" in fails([*SMOKE, f"{group}=bogus"], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_request_without_gpu(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, "resources.gpu=0.25", f"run_dir={tmp_path / 'run'}"], capsys)
    assert "no GPU is visible" in err and "allow_cpu_fallback" in err
    assert not (tmp_path / "run").exists()


def test_unreachable_address(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails([*SMOKE, f"ray.address=127.0.0.1:{free_ports(1)[0]}", f"run_dir={tmp_path / 'run'}"], capsys)
    assert "is unreachable" in err
    assert not (tmp_path / "run").exists()


def test_resume_dir_without_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "is not a study run dir" in fails([f"resume={tmp_path}"], capsys)


def test_resume_dir_without_tune_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "study.json").write_text(json.dumps({"experiments": ["tune"], "config": {}}))
    assert "no Tune experiment state" in fails([f"resume={tmp_path}"], capsys)
