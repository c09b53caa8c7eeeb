"""study.experiments: the search space's domains, the experiments of each search and scheduler (one
fused grid, or one per cell with the searched keys inside), Tune's config from the config groups, the no-GPU
watch; `fit` running real (tiny) Tune experiments side by side and resuming one, in a child Python of its own."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from errors import UsageError
from study import config, experiments, preflight
from study.watch import NoGpuWatch
from tests.conftest import REPO

SMALL = ["exp=uniform_mnist", "preset=smoke", "grid.noise.alpha=[0,10]", "grid.model.arch=[mlp1]",
         "grid.train.lr=[0.1,0.5]"]


def composed(*overrides: str) -> config.Config:
    cfg, _ = config.compose([*SMALL, *overrides])
    return cfg


def test_domains_of_a_nested_space_and_each_bad_leaf() -> None:
    space = {"train": {"lr": {"loguniform": [1e-3, 1]}, "batch_size": {"choice": [32, 64]}}, "model": {"w": {"randint": [1, 4]}}}
    assert experiments.domains(space) == {"train.lr": ("loguniform", [1e-3, 1]), "train.batch_size": ("choice", [32, 64]),
                                          "model.w": ("randint", [1, 4])}
    for leaf, key, value in ((["uniform", 0.1], "search.space.train.lr", ["uniform", 0.1]),  # a list is no domain
                             ({"uniform": [0, 1], "choice": [1]}, "search.space.train.lr.uniform", [0, 1]),  # two names
                             (0.1, "search.space.train.lr", 0.1)):
        with pytest.raises(UsageError) as error:
            experiments.domains({"train": {"lr": leaf}})
        assert str(error.value) == (f"{key}={value!r} is invalid: it must be {{name: args}} with name one of "
                                    "loguniform, uniform, choice, randint")


def test_one_experiment_per_cell_with_the_learning_rates_inside() -> None:
    cfg = composed("scheduler=asha")
    plan = preflight.plan(cfg)
    assert experiments.searched_paths(cfg, plan.grids[0]) == ["train.lr"]
    assert experiments.searched_paths(cfg, {"noise.alpha": [0]}) == []
    extra = {"noise.alpha": [5], "model.arch": ["mlp1"], "train.lr": [0.1]}
    exps = experiments.plan(cfg, plan.base, [*plan.grids, extra], [])
    assert [e.path for e in exps] == ["tune/cell-000", "tune/cell-001", "tune-extra1/cell-000"]
    assert [e.param_space["noise"]["alpha"] for e in exps] == [0, 10, 5]
    assert [e.param_space["train"]["lr"] for e in exps] == [{"grid_search": [0.1, 0.5]}] * 2 + [{"grid_search": [0.1]}]
    assert all(e.param_space["data"]["rebuild"] is False and e.param_space["model"]["arch"] == "mlp1" for e in exps)


def test_optuna_draws_its_space_inside_each_cell() -> None:
    from ray.tune.search.sample import Categorical, Float

    cfg = composed("search=optuna", "+search.space.train.lr.loguniform=[0.001,1.0]",
                   "+search.space.train.batch_size.choice=[32,64]")
    plan = preflight.plan(cfg)
    assert experiments.searched_paths(cfg, plan.grids[0]) == ["train.lr", "train.batch_size"]
    (first, second) = experiments.cells(cfg, plan.base, plan.grids[0])
    lr, batch = first.param_space["train"]["lr"], first.param_space["train"]["batch_size"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (0.001, 1.0)
    assert isinstance(batch, Categorical) and batch.categories == [32, 64]
    assert (first.path, first.param_space["noise"]["alpha"], second.param_space["noise"]["alpha"]) == ("tune/cell-000", 0, 10)


def test_search_grid_scheduler_none_is_one_grid_of_the_groups() -> None:
    cfg = composed()
    groups = [[{"a": 1}], [{"a": 2}, {"a": 3}]]
    (exp,) = experiments.plan(cfg, {}, [], groups)
    assert exp.path == "tune" and exp.param_space == {"members": {"grid_search": groups}}


def test_tune_config_of_each_search_and_scheduler() -> None:
    plain = experiments.tune_config(composed("max_concurrent_trials=3"))
    assert (plain.metric, plain.mode, plain.search_alg, plain.scheduler, plain.num_samples) == (None, None, None, None, 1)
    assert plain.max_concurrent_trials == 3 and plain.reuse_actors is True
    assert plain.trial_dirname_creator is experiments.trial_dirname

    asha = experiments.tune_config(composed("scheduler=asha", "train.epochs=9", "scheduler.grace_period=2",
                                            "scheduler.reduction_factor=3"))
    s = asha.scheduler
    assert (asha.metric, asha.mode, asha.search_alg) == ("test_acc", "max", None)
    assert (s._time_attr, s._max_t, s._reduction_factor) == ("epoch", 9, 3)
    assert s._brackets[0]._rungs[-1][0] == 2  # the first rung at the grace period

    optuna = experiments.tune_config(composed("search=optuna", "search.seed=7", "search.trials_per_cell=5",
                                              "+search.space.train.lr.loguniform=[0.001,1.0]"))
    assert (optuna.metric, optuna.mode, optuna.num_samples, optuna.scheduler) == ("test_acc", "max", 5, None)
    assert optuna.search_alg._seed == 7


def test_no_gpu_watch_only_for_gpu_trials_on_a_cluster() -> None:
    assert experiments.watches(composed()) == []
    assert experiments.watches(composed("ray.address=10.0.0.1:6379")) == []  # CPU trials
    (watch,) = experiments.watches(composed("ray.address=10.0.0.1:6379", "resources.gpu=0.5", "resources.gpu_wait=2m"))
    assert isinstance(watch, NoGpuWatch) and (watch.gpu, watch.wait_s, watch.wait) == (0.5, 120, "2m")


def report(config: dict) -> None:
    from ray import tune

    tune.report({"test_acc": config["train"]["lr"] + config["noise"]["alpha"] / 100, "epoch": 1})


def fit_twice(run_dir: str) -> dict:
    """Fit two cells, then resume the first; what each saw. Run by the test below in a child Python: Ray started
    in pytest's own process crashed pytest at its exit."""
    import ray

    from study.console import Progress

    cfg = composed("max_failures=0")
    plan = preflight.plan(cfg)
    exps = experiments.cells(cfg, plan.base, plan.grids[0])  # α = 0 and 10, each over lr 0.1 and 0.5
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never another's cluster
    try:
        progress = Progress(4, out=io.StringIO())
        grids = experiments.fit(exps, report, cfg, Path(run_dir), restore=False, progress=progress)
        first = [sorted(r.metrics["test_acc"] for r in grid) for grid in grids]
        trials = sorted(p.name for p in (Path(run_dir) / exps[0].path).iterdir() if p.is_dir())
        (again,) = experiments.fit(exps[:1], report, cfg, Path(run_dir), restore=True)  # restored: nothing re-runs
        return {"paths": [e.path for e in exps], "first": first, "reported": sorted(progress.trials), "trials": trials,
                "ids": [sorted(r.metrics["trial_id"] for r in grid) for grid in grids],
                "again": sorted(r.metrics["test_acc"] for r in again)}
    finally:
        ray.shutdown()


@pytest.mark.slow  # a real Ray (18 s); fit's own code is tested in-process, fast, in test_experiments_fit.py
def test_fit_runs_experiments_side_by_side_and_resumes(tmp_path: Path, ray_tmpdir: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Both cells' Tune trials get the same ids (abcde_00000, abcde_00001), as cells started together often do
    env.update(_TEST_TUNE_TRIAL_UUID="abcde", RAY_TMPDIR=ray_tmpdir, PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    child = subprocess.run([sys.executable, "-c", "import json, sys; from tests.test_experiments import fit_twice; "
                            "print(json.dumps(fit_twice(sys.argv[1])))", str(tmp_path)],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout.splitlines()[-1])
    assert seen["first"] == [[0.1, 0.5], [0.2, 0.6]]
    ids = [[f"{path}/abcde_0000{i}" for i in range(2)] for path in seen["paths"]]
    assert seen["ids"] == ids  # each trial's id is its experiment's folder and Tune's id: one row each in trials.csv
    assert seen["reported"] == sorted(ids[0] + ids[1])  # every trial on the progress line, apart
    assert all((tmp_path / path / "tuner.pkl").is_file() for path in seen["paths"])  # each saved in its own folder
    assert len(seen["trials"]) == 2 and all(t.startswith(experiments.TRAINABLE + "_") for t in seen["trials"])
    assert seen["again"] == [0.1, 0.5]
    assert sorted(p.name for p in (tmp_path / seen["paths"][0]).iterdir() if p.is_dir()) == seen["trials"]
    assert "Trial status" not in child.stdout + child.stderr  # Tune's own tables off (verbose=0)
