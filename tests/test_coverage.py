"""analysis.coverage: every claim reads cells of its experiment's paper grid; cells gathered across runs count each
replicate once (from the run that holds the most), and only when every planned learning rate finished; a run's
minutes by device, from provenance.json old and new."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import rundir
from analysis import claims, coverage
from analysis.coverage import Run
from study import config
from study.grid import grids_of

LRS = (0.1, 0.5)
PERCEPTRON = next(c for c in claims.CLAIMS if c.claim.startswith("MNIST: perceptron"))


def test_every_claim_reads_cells_of_its_paper_grid() -> None:
    assert set(coverage.NEEDS) == {c.text for c in claims.CLAIMS}
    for claim in claims.CLAIMS:
        need = coverage.NEEDS[claim.text]
        cfg, _ = config.compose([f"exp={need.exp}", "preset=paper"])
        grids = [{rundir.column(p): v for p, v in grid.items()} for grid in grids_of(cfg.grid, cfg.grid_extra)]
        paths = {rundir.column(p): p for grid in grids_of(cfg.grid, cfg.grid_extra) for p in grid}
        fixed = {column: config_value(cfg, path) for column, path in paths.items()}
        for cell in need.cells():  # in some grid: its list holds the value, or the config's own value where it has none
            assert any(all(v in grid[k] if k in grid else fixed.get(k) == v for k, v in cell.items()) for grid in grids), \
                (claim.figure, cell)


def config_value(cfg: config.Config, path: str) -> object:
    section, key = path.split(".")
    return getattr(getattr(cfg, section), key)


def trials(seeds: list[int], lrs: tuple = LRS, acc: float = 0.4) -> pd.DataFrame:
    """trials.csv rows of Figure 1's perceptron at α = 100: one per replicate seed and learning rate."""
    return pd.DataFrame([{"alpha": 100, "arch": "perceptron", "lr": lr, "batch_size": 128, "seed": s, "noise_seed": s,
                          "order_seed": s, "subset_seed": s, "trial_id": f"{s}-{lr}", "status": "ok", "epochs": 10,
                          "test_acc": acc + 0.001 * (s // 1000) + 0.01 * lr, "test_top5": 0.9, "val_acc": acc + 0.01 * lr}
                         for s in seeds for lr in lrs])


def run(name: str, seeds: list[int], lrs: tuple = LRS, planned: tuple = LRS) -> Run:
    study = {"exp": "uniform_mnist", "preset": "paper", "figures": ["fig1"], "searched": ["lr"],
             "config": {"grid": {"train": {"lr": list(planned)}}}}
    return Run(name, study, trials(seeds, lrs), "CPU", {"CPU": 1.0, "GPU": 0.0})


CELL = {"arch": "perceptron", "alpha": 100}
NEED = coverage.Need("uniform_mnist", ({"arch": ("perceptron",), "alpha": (100,)},))


def test_a_run_repeating_seeds_adds_none() -> None:
    first, more = run("a-perceptron", [0, 1000, 2000]), run("b-perceptron-a100", [1000 * r for r in range(10)])
    rows, (cell,) = coverage.gather(NEED, [first, more])
    assert cell.taken == {"b-perceptron-a100": 10} and len(rows) == 10 * len(LRS)  # not 13 replicates


def test_runs_of_one_replicate_each_pool() -> None:
    runs = [run(f"r{r}", [1000 * r]) for r in range(3)]
    rows, (cell,) = coverage.gather(NEED, runs)
    assert cell.taken == {"r0": 1, "r1": 1, "r2": 1} and sorted(set(rows["seed"])) == [0, 1000, 2000]
    (judged,) = [j for j in coverage.judge(runs) if j.claim is PERCEPTRON]
    assert judged.complete and "3 replicates" in judged.row.measured


def test_a_replicate_short_of_a_planned_learning_rate_is_not_counted() -> None:
    whole, short = run("whole", [0]), run("short", [1000], lrs=(0.1,))  # its lr 0.5 never finished
    _, (cell,) = coverage.gather(NEED, [whole, short])
    assert cell.taken == {"whole": 1}
    assert coverage.replicates(run("unplanned", [0], lrs=(0.1,), planned=(0.1,)), CELL).keys() == {(0, 0, 0, 0)}


def test_another_experiment_or_cell_is_no_source() -> None:
    other = run("other", [0])
    other.study = {**other.study, "exp": "batchsize"}
    _, (cell,) = coverage.gather(NEED, [other, run("conv", [0])])
    assert cell.taken == {"conv": 1}
    assert coverage.replicates(run("x", [0]), {"arch": "mlp1", "alpha": 100}) == {}


@pytest.mark.parametrize("launch,expected", [
    ({"gpus": 0, "cpus": 2, "wall_s": 600.0, "cpu_minutes": 20.0, "device": "CPU (x, 2 cores)"}, {"CPU": 20.0, "GPU": 0.0}),
    ({"gpus": 0, "wall_s": 4701.1, "gpu_minutes": 0.0, "device": "CPU (x, 2 cores to Ray)"},  # before `cpus`
     {"CPU": pytest.approx(4701.1 * 2 / 60), "GPU": 0.0}),
    ({"gpus": 1, "wall_s": 300.0, "gpu_minutes": 5.0, "device": "1 x NVIDIA H100"}, {"CPU": 0.0, "GPU": 5.0})])
def test_minutes_by_device(tmp_path: Path, launch: dict, expected: dict) -> None:
    rundir.write_json({"device": launch["device"], "launches": [launch]}, tmp_path / rundir.PROVENANCE)
    assert coverage.spent(tmp_path) == (launch["device"], expected)


def test_a_run_from_before_the_noise_columns_pools_with_a_newer_one(tmp_path: Path) -> None:
    """A run written before trials.csv had matrix, labels and draw (3 replicates) and a newer one-replicate run
    of the same cell: read as no noise file and a label per copy, they are one config of 4 replicates."""
    old = run("uniform_mnist-perceptron", [0, 1000, 2000])
    new = run("uniform_mnist-perceptron-a100-r3", [3000])
    for r, extra in ((old, {}), (new, {"matrix": None, "labels": None, "draw": "copy"})):
        (tmp_path / r.name).mkdir()
        rundir.write_json(r.study, tmp_path / r.name / rundir.STUDY)
        columns = list(r.trials.columns)
        t = r.trials.assign(**extra)[columns[:8] + list(extra) + columns[8:]]
        rundir.write_csv(t, tmp_path / r.name / rundir.TRIALS)
    assert "draw" not in pd.read_csv(tmp_path / old.name / rundir.TRIALS)
    (judged,) = [j for j in coverage.judge(coverage.read_runs(tmp_path)) if j.claim is PERCEPTRON]
    assert judged.cells[0].taken == {old.name: 3, new.name: 1} and "4 replicates" in judged.row.measured


def test_minutes_of_every_launch_summed_and_without_provenance(tmp_path: Path) -> None:
    launches = [{"gpus": 1, "cpu_minutes": 7.0, "wall_s": 60.0},  # held a GPU, its minutes not recorded: 0 GPU-min
                {"cpu_minutes": 3.0}, {"cpu_minutes": 4.5},
                {"wall_s": 600.0, "device": "CPU (x, 4 cores to Ray)"}, {"wall_s": 600.0}]  # no device: no cores
    rundir.write_json({"device": "mixed", "launches": launches}, tmp_path / rundir.PROVENANCE)
    assert coverage.spent(tmp_path) == ("mixed", {"CPU": 3.0 + 4.5 + 40.0, "GPU": 0.0})
    assert coverage.spent(tmp_path / "absent") == ("unknown", {})


def test_planned_reads_grid_and_grid_extra() -> None:
    study = {"config": {"grid": {"train": {"lr": [0.1]}, "noise": {"alpha": [0, 100]}},
                        "grid_extra": [{"train": {"lr": [0.5, 0.1]}}]}}
    assert coverage.planned(study, ["lr"]) == {(0.1,), (0.5,)}
    assert coverage.planned(study, ["lr", "alpha"]) == {(0.1, 0), (0.1, 100), (0.5, 0), (0.5, 100)}
    assert coverage.planned(study, ["batch_size"]) is None and coverage.planned({}, ["lr"]) is None


def test_the_run_with_the_most_replicates_of_a_cell_comes_first() -> None:
    """gather takes each seed once, first from the run holding the most replicates; its trials are indexed afresh."""
    many, one = run("a-many", [0, 1000]), run("z-one", [1000])  # z-one, later in name order, repeats a seed of a-many
    rows, (cell,) = coverage.gather(NEED, [many, one])
    assert cell.taken == {"a-many": 2}
    assert rows.index.equals(pd.RangeIndex(len(rows)))


def test_replicates_without_seed_columns_or_with_a_missing_seed() -> None:
    bare = run("bare", [0])
    bare.trials = bare.trials.drop(columns=list(rundir.REPLICATE_KEYS))  # one replicate, keyed by nothing
    assert list(coverage.replicates(bare, CELL)) == [()]
    old = run("old", [0, 1000])
    old.trials["subset_seed"] = None  # a seed an older run did not record: still a replicate each
    assert [seeds[:3] for seeds in coverage.replicates(old, CELL)] == [(0, 0, 0), (1000, 1000, 1000)]
