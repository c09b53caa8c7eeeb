"""Shared fixtures. Tests read MNIST from $STUDY_DATA_ROOT (CI: ../shared/datasets) and never download."""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loaders.datasets import resolve_root

REPO = Path(__file__).resolve().parents[1]
SIBLING_SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _data_root() -> Path | None:
    root = os.environ.get("STUDY_DATA_ROOT") or (str(SIBLING_SHARED) if SIBLING_SHARED.exists() else None)
    if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        return resolve_root(root)
    return None


# Skip reasons that mean "the data is not on this machine" (data_root, cifar10_root and the module
# fixtures that check for a file, e.g. test_data_sources.py's `cifar10`): under CI they fail instead.
MISSING_DATA = re.compile(r"^(Skipped: )?(no \S+ under |MNIST not found)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and call.when == "setup" and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if MISSING_DATA.match(reason):
            report.outcome = "failed"
            report.longrepr = f"CI is set and the data is missing: {reason}"


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The MNIST root; in CI a missing dataset fails the run rather than skipping tests."""
    root = _data_root()
    if root is None:
        message = "MNIST not found: set STUDY_DATA_ROOT to a folder holding MNIST/raw (torchvision layout)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    os.environ["STUDY_DATA_ROOT"] = str(root)  # for subprocesses (launch, Ray workers)
    return root


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on loopback right now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def image_folders(root: Path, per_split: dict[str, int], classes: int = 1000, hw: tuple[int, int] = (12, 20)) -> None:
    """An ImageNet-style tree root/imagenet/<split>/<class>/<i>.png of random RGB images."""
    rng = np.random.default_rng(0)
    for split, count in per_split.items():
        for c in range(classes):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def ray_tmpdir() -> Iterator[str]:
    """A short Ray temp dir: Ray's AF_UNIX socket paths under it must stay within 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rt", dir="/tmp") as tmp:
        yield tmp


@functools.cache
def _small_trial() -> dict:
    """The trial sections of the real config (study.config, through Hydra) at a test's scale."""
    from study.config import TRIAL_SECTIONS, compose

    cfg, _ = compose(["data.download=false", "data.n_clean=2000", "data.n_test=2000", "data.n_val=0", "model.arch=conv2",
                      "model.conv_channels=[32,64,64,64,128,128]", "train.lr=0.5", "train.epochs=3", "train.device=cpu"])
    return {name: dataclasses.asdict(getattr(cfg, name)) for name in TRIAL_SECTIONS}


def trial_config(data_root: Path, **sections: dict) -> dict:
    """A small trial config (MNIST under data_root, conv2, 2,000 images, 3 epochs on the CPU) composed from the
    real config, with sections updated by keyword."""
    config = copy.deepcopy(_small_trial())
    config["data"]["root"] = str(data_root)
    for name, values in sections.items():
        config[name] = {**config[name], **values}
    return config


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One FFCV cache for the session: the MNIST .beton (60,000 images) is written once, not by each test."""
    return tmp_path_factory.mktemp("ffcv-cache")


@pytest.fixture(scope="session")
def cifar10_root(data_root: Path) -> Path:
    """The data root holding cifar10.npz; in CI a missing file fails the run rather than skipping tests."""
    if not (data_root / "cifar10.npz").is_file():
        message = f"no cifar10.npz under {data_root}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return data_root
