"""One data root for every command of a checkout (issue 23): `make` links a ../shared/datasets beside the
checkout as datasets/ under the storage root, so that `python -m study.launch` reads what `make demo` read."""

from __future__ import annotations

from pathlib import Path

import pytest

from loaders import datasets
from study import storage
from study.config import Config


def test_setup_links_the_data_beside_the_checkout_under_the_storage_root(tmp_path: Path, data_root: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("STUDY_ROOT", raising=False)
    monkeypatch.delenv("STUDY_DATA_ROOT", raising=False)
    target = tmp_path / "cache" / "label-noise-study" / "datasets"
    assert storage.link_datasets(data_root) == f"data root: {target} -> {data_root} (every command of this checkout reads it)"
    assert storage.link_datasets(data_root) == ""  # linked already: nothing to say
    base = storage.trial_base(Config())  # what the launcher resolves with no data.root and no STUDY_DATA_ROOT
    assert Path(base["data"]["root"]) == data_root.resolve() and datasets.present("mnist", Path(base["data"]["root"]))


def test_setup_keeps_a_data_root_that_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDY_ROOT", str(tmp_path / "root"))
    (tmp_path / "root" / "datasets" / "MNIST").mkdir(parents=True)  # downloaded there earlier
    line = storage.link_datasets(tmp_path / "shared")
    assert line.startswith(f"data root: {tmp_path / 'root' / 'datasets'} exists, kept") and "STUDY_DATA_ROOT=" in line
    assert not (tmp_path / "root" / "datasets").is_symlink()
