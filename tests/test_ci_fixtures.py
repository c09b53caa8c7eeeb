"""Missing data skips a test on a laptop but fails it under CI (tests/conftest.py), for every data fixture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

TARGETS = ["tests/test_data_sources.py::test_cifar10_npz_is_read_in_the_original_order",  # its module's `cifar10`
           "tests/test_data_sources.py::test_white_noise_trial_learns_above_chance"]  # conftest's cifar10_root


def pytest_run(root: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["STUDY_DATA_ROOT"] = str(root)
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *TARGETS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_missing_cifar10_skips_locally_and_fails_under_ci(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "MNIST").symlink_to(data_root / "MNIST")  # MNIST present, cifar10.npz absent
    local = pytest_run(root, ci=False)
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout
    ci = pytest_run(root, ci=True)
    assert ci.returncode == 1 and "2 errors" in ci.stdout, ci.stdout
    assert ci.stdout.count("no cifar10.npz under") >= 2, ci.stdout
