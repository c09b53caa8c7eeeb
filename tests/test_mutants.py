"""scripts/mutants.py (`make mutants`) covers every module of study/, loaders/, analysis/ and rundir/ with fast
test files that exist, and its report marks an entry measured on another source as stale."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def mutants():
    pytest.importorskip("mutmut", reason="mutmut is a dev extra (pip install -e '.[dev]')")
    spec = importlib.util.spec_from_file_location("mutants", REPO / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module
    spec.loader.exec_module(module)
    return module


def test_every_module_has_fast_tests(mutants) -> None:
    sources = {str(p.relative_to(REPO)) for package in ("study", "loaders", "analysis", "rundir")
               for p in (REPO / package).glob("*.py") if p.read_text().count("\n") > 1}  # not a one-line __init__
    assert set(mutants.TESTS) == sources
    for module, tests in mutants.TESTS.items():
        assert tests and all((REPO / t).is_file() for t in tests), module


def test_an_entry_of_another_source_is_stale(mutants, tmp_path: Path) -> None:
    entry = {"source_sha256": mutants.source_hash("study/grid.py"), "finished": True, "mutants": 10, "counts": {"killed": 9,
             "survived": 1}, "unchecked": 0, "not_killed": {"study.grid.x_flatten__mutmut_1": {"status": "survived"}}}
    old = {**entry, "source_sha256": "0" * 64, "mutants": 4, "counts": {"killed": 4}, "not_killed": {}}
    modules = {"study/grid.py": mutants.score(entry), "study/groups.py": mutants.score(old)}
    report = mutants.write_report(modules, "test", tmp_path / "mutants.json")
    assert json.loads((tmp_path / "mutants.json").read_text()) == report
    assert report["modules_current"] == ["study/grid.py"] and report["modules_stale"] == ["study/groups.py"]
    assert (report["mutants"], report["killed"], report["killed_share"]) == (10, 9, 0.9)  # the stale entry left out
    assert report["modules"]["study/groups.py"]["stale"] and not report["modules"]["study/grid.py"]["stale"]
    assert "study/noise.py" not in report["modules_not_run"] and "loaders/noise.py" in report["modules_not_run"]
    assert report["below_target"] == []
    assert mutants.current("study/grid.py", modules["study/grid.py"])
    assert not mutants.current("study/groups.py", modules["study/groups.py"])
    assert not mutants.current("study/grid.py", {**modules["study/grid.py"], "finished": False})


def test_mutant_names_of_a_module_and_of_a_package(mutants) -> None:
    """mutmut names a package's own functions after the package: rundir/__init__.py's are rundir.x_..., not
    rundir.__init__.x_... (its entry had read 0 mutants)."""
    assert mutants.mutant_prefix("rundir/__init__.py") == "rundir.x"
    assert mutants.mutant_prefix("rundir/pack.py") == "rundir.pack.x"
    assert "rundir.pack.x_small__mutmut_1".startswith(mutants.mutant_prefix("rundir/pack.py"))
    assert not "rundir.pack.x_small__mutmut_1".startswith(mutants.mutant_prefix("rundir/__init__.py"))
