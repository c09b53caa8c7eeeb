"""bench.paper_window: the plan skips claims the committed runs settled and the replicates they hold, keeps every
slice within its GPU-minutes, launches exactly its cells at replicate r's seeds; a window runs a slice through
runner=local and copies it where the reproduction page counts it; bad input is one line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import rundir
from analysis import coverage
from analysis.claims import CLAIMS
from bench import paper_window
from bench.paper_window import LIMIT, Slice
from study import config, preflight
from study.groups import REPLICATE_STRIDE
from tests.test_coverage import trials

HELD = "fig1: MNIST: perceptron ≈ 40% at α = 100 (30–50%)"


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A paper root whose one run settles the perceptron claim: 3 replicates at 40%, every lr of the paper grid."""
    root = tmp_path_factory.mktemp("paper")
    folder = root / "uniform_mnist-perceptron"
    folder.mkdir()
    rundir.write_csv(trials([0, 1000, 2000], lrs=(0.01, 0.05, 0.1, 0.5)), folder / rundir.TRIALS)
    rundir.write_json({"exp": "uniform_mnist", "preset": "paper", "figures": ["fig1"], "trials": 12, "searched": ["lr"],
                       "config": {"grid": {"train": {"lr": [0.01, 0.05, 0.1, 0.5]}}}}, folder / rundir.STUDY)
    return root


@pytest.fixture(scope="module")
def order(settled: Path) -> list[tuple[list[str], list[Slice]]]:
    return paper_window.plan(coverage.read_runs(settled))


@pytest.mark.slow
def test_settled_claims_and_held_replicates_get_no_slice(order: list) -> None:
    claims = [c for settles, _ in order for c in settles]
    assert HELD not in claims and len(claims) == len(set(claims)) == len(CLAIMS) - 1  # every other claim once
    slices = [s for _, block in order for s in block]
    assert not [s for s in slices if s.exp == "uniform_mnist" and "perceptron" in s.grid.get("arch", ())]
    ordered = next(block for settles, block in order if any("larger architectures" in c for c in settles))
    assert {(s.grid["arch"], s.replicate) for s in ordered if s.grid["arch"] != ("conv4",)} == {
        ((arch,), r) for arch in ("mlp1", "mlp2", "mlp4") for r in range(3)}  # conv4's come with its own claim


@pytest.mark.slow
def test_every_slice_fits_or_says_why(order: list) -> None:
    for _, block in order:
        for s in block:
            assert s.minutes <= LIMIT or s.note, s.name
            assert not s.note or s.note.startswith(("later window", "blocked", "over "))
    runnable = [all(not s.note for s in block) for _, block in order]
    assert runnable == sorted(runnable, reverse=True)  # the claims a window can settle now come first


@pytest.mark.slow
def test_a_slice_launches_its_cells_at_replicate_r(order: list) -> None:
    s = next(s for _, block in order for s in block if s.exp == "dataset_size" and s.replicate == 2)
    cfg, _ = config.compose(s.overrides())
    plan = preflight.plan(cfg)
    cells = {(c["noise"]["alpha"], c["data"]["n_clean"]) for c in plan.configs}
    assert cells == set(itertools.product(s.grid["alpha"], s.grid["n_clean"]))
    seeds = {(c["train"]["seed"], c["noise"]["seed"], c["data"]["order_seed"], c["data"]["subset_seed"])
             for c in plan.configs}
    assert seeds == {(2 * REPLICATE_STRIDE,) * 4} and cfg.runner == "local" and cfg.grid_extra == []
    assert len({c["train"]["lr"] for c in plan.configs}) == 4  # the cell's whole learning-rate grid


@pytest.mark.slow
def test_listing_marks_what_a_window_runs(order: list, settled: Path) -> None:
    text = paper_window.listing(order, coverage.read_runs(settled), 11)
    marked = [float(line.split()[1]) for line in text.splitlines() if line.split()[3:4] == ["*"]]
    assert marked and sum(marked) <= 11
    assert "later window: CIFAR-10" in text and f"{len(CLAIMS) - 1} claims not settled by the 1 run under" in text


@pytest.mark.slow
def test_a_window_runs_a_slice_and_the_page_counts_it(data_root: Path, tmp_path: Path) -> None:
    paper, runs = tmp_path / "paper", tmp_path / "runs"
    s = Slice("uniform_mnist", {"arch": ("perceptron",), "alpha": (100,)}, 1, 1.0, [HELD])
    with (tmp_path / "window.log").open("w") as log:
        copied = paper_window.run([([HELD], [s])], 30, paper, runs, paper_window.SMOKE, log)
    assert copied == [s.name] == ["uniform_mnist-perceptron-a100-r1"], (tmp_path / "window.log").read_text()[-3000:]
    (run,) = coverage.read_runs(paper)
    assert set(coverage.replicates(run, {"arch": "perceptron", "alpha": 100})) == {(1000, 1000, 1000, 1000)}
    assert rundir.read_json(paper / s.name / rundir.PROVENANCE)["launches"][0]["runner"] == "local"
    assert not (paper / s.name / "local").exists()  # the small files only


@pytest.mark.parametrize("argv,error", [
    (["--minutes", "0"], "error: --minutes=0 is invalid: it must be > 0"),
    ([], "error: give --list, or --minutes <the window's minutes> to run the slices that fit"),
    (["--smoke", "--minutes", "5"], "error: --smoke runs are no paper-scale results: give --paper <a scratch folder>")])
def test_bad_input_is_one_line(argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert paper_window.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(error) and "\n" not in err
