"""study.launch.run_study's Tune branch in pytest's own process, through launch.main: what it hands launch.run and
launch.write (both real: the run dir gets trials.csv, epochs.csv, summary.csv and provenance.json), the dashboard held
only for a local Ray with dashboard=true, Ray shut down however the study ends; a cluster (ray.address): connected,
its nodes' storage token handed to the trials; the cost guard's and the study's fused groups for a GPU share
(resources.gpu=0.5); the lines a job's log must show at once (flushed); and runner=local's arguments and study.json.

Ray never starts: its calls are recorders (as in tests/test_launch_run.py), experiments.fit returns rundir.Result
groups built from the plan Tune would get, and preflight.prepare (the data and .betons no fake trial reads) is a
no-op. Nothing waits on the wall clock."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
from ray import tune

import rundir
from study import config, console, experiments, launch, local, preflight, slices, storage
from study.trainable import trainable
from tests.helpers import launched

# Two groups (alpha 0 and 1), each fusing the two learning rates: 4 configs (runner=tune, the default).
STUDY = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[perceptron]",
         "grid.noise.alpha=[0,1]", "grid.train.lr=[0.1,0.5]", "train.epochs=2", "figures=[]"]
# Nine learning rates, one alpha: two groups on the CPU (the perceptron fuses 8 there), one on a GPU.
NINE = [*(a for a in STUDY if not a.startswith(("grid.train.lr=", "grid.noise.alpha="))), "grid.noise.alpha=[0]",
        "grid.train.lr=[0.01,0.02,0.05,0.1,0.2,0.3,0.5,0.7,1.0]"]
DASHBOARD = "127.0.0.1:8265"
TOKEN = ("/cluster/root/.token", "t0k")


def group_result(group: list[dict[str, Any]], trial_id: str, epochs: int,
                 error: BaseException | None = None) -> rundir.Result:
    """A fused group as Tune leaves it: `epochs` epochs reported, each member's metrics under members/<k>/."""
    history = [{"trial_id": trial_id, "epoch": e, "node_id": "node-1",
                "members": {str(k): {"epoch": e, "train_loss": 1.0 / e, "test_acc": 0.5 + 0.1 * e + 0.01 * k,
                                     "test_top5": 0.9, "images_per_s": 100.0, "val_acc": float("nan")}
                            for k in range(len(group))}} for e in range(1, epochs + 1)]
    return local.result(group, history, error)


@dataclass
class Calls:
    """What the launch handed each recorded call; `results(groups, progress)` is what experiments.fit returns
    (a list per experiment), or an exception it raises."""

    results: Callable[[list[list[dict[str, Any]]], console.Progress], list[rundir.Result]] | BaseException = None
    cluster: dict[str, float] = field(default_factory=lambda: {"CPU": 3.0})
    run: list[dict[str, Any]] = field(default_factory=list)
    run_returned: list[Any] = field(default_factory=list)
    write: list[dict[str, Any]] = field(default_factory=list)
    local: list[dict[str, Any]] = field(default_factory=list)
    fit: list[dict[str, Any]] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)
    connect: list[Any] = field(default_factory=list)
    cost: list[tuple[list[list[dict[str, Any]]], dict[str, float]]] = field(default_factory=list)
    budgets: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # shutdown, hold_dashboard, check_address, check_nodes, in order


def finished_groups(groups: list[list[dict[str, Any]]], progress: console.Progress) -> list[rundir.Result]:
    return [group_result(g, f"tune/t_{i:05d}", g[0]["train"]["epochs"]) for i, g in enumerate(groups)]


def spy(monkeypatch: pytest.MonkeyPatch, name: str, names: list[str], calls: list[dict[str, Any]],
        returned: list[Any] | None = None) -> None:
    """launch.<name> recorded (its arguments by name) and run as it is."""
    real = getattr(launch, name)

    def spied(*args: Any) -> Any:
        assert len(args) == len(names), args
        calls.append(dict(zip(names, args)))
        out = real(*args)
        if returned is not None:
            returned.append(out)
        return out

    monkeypatch.setattr(launch, name, spied)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls(results=finished_groups)
    for name in ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "RAY_AIR_NEW_OUTPUT"):
        monkeypatch.setenv(name, "0")  # console.quiet_ray sets these: restored after the test
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("STUDY_ROOT", raising=False)
    monkeypatch.setattr(preflight, "prepare", lambda configs: set())
    monkeypatch.setattr(tune, "with_parameters",
                        lambda f, **kw: seen.parameters.append({"trainable": f, **kw}) or "wrapped")
    monkeypatch.setattr(tune, "with_resources", lambda f, r: "runnable")
    monkeypatch.setattr(ray, "cluster_resources", lambda: seen.cluster)
    monkeypatch.setattr(ray, "shutdown", lambda: seen.events.append("shutdown"))
    monkeypatch.setattr(console, "hold_dashboard", lambda: seen.events.append("hold_dashboard"))
    monkeypatch.setattr(launch, "check_address", lambda cfg: seen.events.append(f"check_address {cfg.ray.address}"))

    def connect(cfg: config.Config) -> str:
        seen.connect.append(cfg)
        return DASHBOARD

    monkeypatch.setattr(launch, "connect", connect)

    def fit(tune_plan: list[experiments.Experiment], runnable: Any, cfg: config.Config, run_dir: Path, restore: bool,
            progress: console.Progress) -> list[list[rundir.Result]]:
        seen.fit.append({"plan": tune_plan, "runnable": runnable, "cfg": cfg, "run_dir": run_dir, "restore": restore,
                         "progress": progress})
        if isinstance(seen.results, BaseException):
            raise seen.results
        (experiment,) = tune_plan
        return [seen.results(experiment.param_space["members"]["grid_search"], progress)]

    monkeypatch.setattr(experiments, "fit", fit)
    real_guard, real_budget = preflight.cost_guard, slices.check_budget

    def cost_guard(cfg: config.Config, groups: list, resources: dict[str, float]) -> None:
        seen.cost.append((groups, resources))
        real_guard(cfg, groups, resources)

    def check_budget(cfg: config.Config, groups: int) -> None:
        seen.budgets.append(groups)
        real_budget(cfg, groups)

    monkeypatch.setattr(preflight, "cost_guard", cost_guard)
    monkeypatch.setattr(slices, "check_budget", check_budget)
    spy(monkeypatch, "run", ["cfg", "plan", "tune_plan", "resources", "run_dir", "restore", "total", "token"], seen.run,
        seen.run_returned)
    spy(monkeypatch, "write", ["cfg", "plan", "results", "outcome", "advanced", "run_dir", "total"], seen.write)
    yield seen
    assert rundir.LOCKS == {}


def launches(run_dir: Path) -> list[dict[str, Any]]:
    return rundir.read_json(run_dir / rundir.PROVENANCE)["launches"]


# ---------------------------------------------------------------------------------------------------------------
# A new study on a local Ray


def test_a_new_tune_study_runs_and_writes_with_what_it_planned(tmp_path: Path, calls: Calls) -> None:
    run_dir = tmp_path / "run"
    done = launched([*STUDY, f"run_dir={run_dir}"])
    assert (done.code, done.err) == (0, ""), done.err
    cfg, _ = config.compose([*STUDY, f"run_dir={run_dir}"])

    (run,) = calls.run
    plan = run["plan"]
    assert isinstance(plan, preflight.Plan) and plan.configs == preflight.plan(cfg).configs
    assert run["cfg"] == cfg and run["run_dir"] == run_dir
    assert run["restore"] is False and run["total"] == 2 and run["token"] is None
    assert run["resources"] == {"cpu": 1, "gpu": 0}
    groups = plan.groups(cfg, False)
    assert [len(g) for g in groups] == [2, 2]
    (experiment,) = run["tune_plan"]
    assert experiment.path == "tune" and experiment.param_space["members"]["grid_search"] == groups

    (fit,) = calls.fit
    assert fit["plan"] is run["tune_plan"] and fit["restore"] is False and fit["run_dir"] == run_dir
    assert fit["progress"].total == 2
    assert calls.parameters == [{"trainable": trainable, "paths": None, "token": None}]
    assert calls.connect == [cfg]  # no cluster: connected once, by run (a local Ray)

    (write,) = calls.write
    results, outcome, progress = calls.run_returned[0]
    assert write["cfg"] is run["cfg"] and write["plan"] is plan and write["results"] is results
    assert write["outcome"] == outcome == "finished" and write["advanced"] == progress.advanced() == []
    assert write["run_dir"] == run_dir and write["total"] == 2
    assert [r.metrics["trial_id"] for r in results] == ["tune/t_00000", "tune/t_00001"]

    # the run dir: study.json, trials.csv, epochs.csv, the analysis and provenance.json
    study = rundir.read_study(run_dir)
    assert study["experiments"] == ["tune"] and study["trials"] == 4 and study["config"]["runner"] == "tune"
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert trials["trial_id"].tolist() == ["tune/t_00000-0", "tune/t_00000-1", "tune/t_00001-0", "tune/t_00001-1"]
    assert trials["alpha"].tolist() == [0, 0, 1, 1] and trials["lr"].tolist() == [0.1, 0.5, 0.1, 0.5]
    assert (trials["status"] == "ok").all() and (trials["epochs"] == 2).all()
    assert len(pd.read_csv(run_dir / rundir.EPOCHS)) == 8 and (run_dir / "summary.csv").is_file()
    (entry,) = launches(run_dir)
    assert (entry["outcome"], entry["runner"], entry["gpus"], entry["cpus"]) == ("finished", "tune", 0, 3.0)

    # Ray: shut down once, no dashboard held (dashboard=false); the cost guarded on the CPU's groups
    assert calls.events == ["check_address None", "shutdown"]
    assert calls.cost == [(groups, {"cpu": 1, "gpu": 0.0})] and calls.budgets == [2]

    # the lines, each flushed as printed (a job's log shows them at once)
    assert done.out.splitlines()[1:5] == ["trials: 2 groups of 4 configs (train.fuse=auto)", f"run dir: {run_dir}",
                                          f"dashboard: http://{DASHBOARD}", console.tensorboard_line(run_dir)]
    for line in done.out.splitlines()[:5]:
        assert done.said(line), line
    assert done.out.endswith(f"results: {run_dir}\n")


def test_a_default_run_dir_is_named_after_the_exp_and_preset(tmp_path: Path, calls: Calls) -> None:
    root = tmp_path / "root"
    done = launched([*STUDY, f"storage.root={root}"])
    assert (done.code, done.err) == (0, ""), done.err
    (run_dir,) = (root / "runs").iterdir()
    assert run_dir.name.startswith("uniform_mnist-smoke-") and calls.run[0]["run_dir"] == run_dir
    assert done.said(f"run dir: {run_dir}") and (run_dir / rundir.TRIALS).is_file()


def test_a_default_run_dir_that_cannot_be_resolved_is_named_run_dir(tmp_path: Path, calls: Calls) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "runs").symlink_to(root / "runs")  # a link loop: <root>/runs/<exp>-<preset>-<time> cannot be resolved
    done = launched([*STUDY, f"storage.root={root}"])
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith(f"error: run_dir='{root / 'runs' / 'uniform_mnist-smoke-'}")
    assert "' is invalid: it must be a path you may read (" in done.err and done.err.count("\n") == 1
    assert calls.run == [] and calls.events == []


def test_failed_trials_are_written_then_ray_shuts_down_and_the_dashboard_is_held(tmp_path: Path,
                                                                                 calls: Calls) -> None:
    def one_failed(groups: list, progress: console.Progress) -> list[rundir.Result]:
        return [group_result(groups[0], "tune/t_00000", 2), group_result(groups[1], "tune/t_00001", 1,
                                                                        RuntimeError("trace\nboom"))]

    calls.results = one_failed
    run_dir = tmp_path / "run"
    done = launched([*STUDY, "dashboard=true", f"run_dir={run_dir}"])
    assert done.code == 1
    assert done.err == ("1 trial(s) failed: boom\n"
                        f"error: 1 of 2 trials failed (their reasons above; trials.csv marks them status=error): "
                        f"results in {run_dir}\n")
    assert done.warned("1 trial(s) failed: boom")  # flushed as printed, before the study's end
    assert calls.events == ["check_address None", "hold_dashboard", "shutdown"]  # write raised: both all the same
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    assert trials["status"].tolist() == ["ok", "ok", "error", "error"]
    assert [x["outcome"] for x in launches(run_dir)] == ["finished"]


def test_an_interrupt_out_of_tune_shuts_ray_down_and_names_the_run_dir(tmp_path: Path, calls: Calls) -> None:
    calls.results = KeyboardInterrupt()
    run_dir = tmp_path / "run"
    done = launched([*NINE, "dashboard=true", f"run_dir={run_dir}"])
    assert done.code == 130
    # no GPU: the cost guard and the study take the CPU's groups (9 learning rates fused 5 + 4)
    assert [len(g) for g in calls.cost[0][0]] == [5, 4] and calls.run[0]["total"] == 2 and calls.budgets == [2]
    assert done.said("trials: 2 groups of 9 configs (train.fuse=auto)")
    assert done.err == (f"interrupted by SIGINT: 0 of 2 trials finished; finish the study with: {sys.executable} -m "
                        f"study.launch resume={run_dir}\n")
    assert calls.events == ["check_address None", "shutdown"] and calls.write == []  # nothing to hold: none ran


@contextlib.contextmanager
def spent(seconds: float | None) -> Iterator[list[bool]]:
    yield [True]


def test_a_spent_budget_writes_the_finished_trials_and_what_this_slice_advanced(
        tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    def one_partial(groups: list, progress: console.Progress) -> list[rundir.Result]:
        for epoch in (0, 1):  # the second group ran one of its 2 epochs in this slice
            progress.update({"tune/t_00001": console.TrialState("running", epoch, 2, 1.0)})
        return [group_result(groups[0], "tune/t_00000", 2), group_result(groups[1], "tune/t_00001", 1)]

    monkeypatch.setattr(slices, "budget_timer", spent)
    calls.results = one_partial
    run_dir = tmp_path / "run"
    done = launched([*STUDY, "budget=1h", f"run_dir={run_dir}"])
    assert done.code == slices.EXIT_BUDGET, done.err
    assert done.out.splitlines()[-3].startswith(
        "budget 1h spent: 1 of 2 trials finished, 1 partial (each goes on from its last checkpoint; this slice "
        "advanced 1 of them, epochs 0 → 1 of 2), 0 not started")
    (write,) = calls.write
    assert (write["outcome"], write["advanced"], write["total"]) == ("budget spent", [(0, 1, 2)], 2)
    assert calls.budgets == [2]
    assert pd.read_csv(run_dir / rundir.TRIALS)["trial_id"].tolist() == ["tune/t_00000-0", "tune/t_00000-1"]
    assert calls.events == ["check_address None", "shutdown"]


def test_resume_restores_the_tune_study(tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    assert launched([*STUDY, f"run_dir={run_dir}"]).code == 0
    monkeypatch.setattr(tune.Tuner, "can_restore", lambda path: path == run_dir / "tune")
    calls.run.clear(), calls.fit.clear(), calls.parameters.clear(), calls.cost.clear(), calls.events.clear()
    done = launched([f"resume={run_dir}"])
    assert (done.code, done.err) == (0, ""), done.err
    (run,) = calls.run
    assert run["restore"] is True and run["total"] == 2 and run["token"] is None and run["run_dir"] == run_dir
    assert calls.fit[0]["restore"] is True
    assert calls.parameters[0]["paths"] == slices.placed(run["plan"].base, run["plan"].grids) != {}
    assert calls.cost == [] and not done.out.startswith("estimate:")  # a resumed study is not costed again
    assert calls.events == ["check_address None", "shutdown"]
    assert [x["outcome"] for x in launches(run_dir)] == ["finished", "finished"]


# ---------------------------------------------------------------------------------------------------------------
# A GPU share per trial, a cluster


def test_a_gpu_share_fuses_the_gpus_groups(tmp_path: Path, calls: Calls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "gpu_missing", lambda cfg: False)
    monkeypatch.setattr(launch, "check_resources", lambda cfg: {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})
    calls.cluster = {"CPU": 3.0, "GPU": 1.0, "accelerator_type:H100": 1.0}
    run_dir = tmp_path / "run"
    argv = [*NINE, "resources.gpu=0.5", f"run_dir={run_dir}"]
    done = launched(argv)
    assert (done.code, done.err) == (0, ""), done.err
    cfg, plan = calls.run[0]["cfg"], calls.run[0]["plan"]
    assert cfg.resources.gpu == 0.5
    on_gpu, on_cpu = plan.groups(cfg, True), plan.groups(cfg, False)
    assert (len(on_gpu), len(on_cpu)) == (1, 2)
    assert calls.cost == [(on_gpu, {"cpu": 1, "gpu": 0.5})]
    assert calls.run[0]["resources"] == {"cpu": 1, "gpu": 0.5} and calls.run[0]["total"] == 1
    assert calls.run[0]["tune_plan"][0].param_space["members"]["grid_search"] == on_gpu
    assert calls.budgets == [1] and done.said("trials: 1 groups of 9 configs (train.fuse=auto)")
    (entry,) = launches(run_dir)
    assert (entry["gpus"], entry["cpus"], entry["device"]) == (1.0, 0, "1 x H100")  # a GPU study: GPU-minutes


def test_a_cluster_checks_its_nodes_storage_and_hands_the_trials_its_token(tmp_path: Path, calls: Calls,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    checked = []

    def check_nodes(root: Path) -> tuple[str, str]:
        checked.append(root)
        calls.events.append("check_nodes")
        return TOKEN

    monkeypatch.setattr(storage, "check_nodes", check_nodes)
    monkeypatch.setattr(launch, "gpu_missing", lambda cfg: pytest.fail("a cluster's GPUs are not this machine's"))
    root, run_dir = tmp_path / "root", tmp_path / "run"
    argv = [*STUDY, "ray.address=10.1.2.3:6379", f"storage.root={root}", "dashboard=true",
            f"run_dir={run_dir}"]
    done = launched(argv)
    assert (done.code, done.err) == (0, ""), done.err
    cfg = calls.run[0]["cfg"]
    assert cfg.ray.address == "10.1.2.3:6379" and checked == [storage.storage_root(cfg)] == [root.resolve()]
    # joined before the nodes are checked; run asks again (for the dashboard's address)
    assert calls.connect == [cfg, cfg] and calls.connect[0] is cfg
    assert calls.run[0]["token"] == TOKEN and calls.parameters[0]["token"] == TOKEN
    assert calls.cost == []  # a cluster is not costed as this machine
    # dashboard=true holds a local Ray's dashboard only
    assert calls.events == ["check_address 10.1.2.3:6379", "check_nodes", "shutdown"]
    assert done.said(f"dashboard: http://{DASHBOARD}") and done.said(f"run dir: {run_dir}")
    assert not done.out.startswith("estimate:")


# ---------------------------------------------------------------------------------------------------------------
# runner=local: no Tune plan, local.run's arguments


def test_runner_local_plans_no_tune_experiments_and_restores_only_on_resume(tmp_path: Path, calls: Calls,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def run(cfg: config.Config, plan: preflight.Plan, groups: list, resources: dict[str, float], run_dir: Path,
            restore: bool) -> tuple[list[rundir.Result], str, console.Progress]:
        seen.append({"cfg": cfg, "plan": plan, "groups": groups, "resources": resources, "run_dir": run_dir,
                     "restore": restore})
        (run_dir / rundir.LOCAL).mkdir(exist_ok=True)
        rundir.write_json(groups, run_dir / rundir.LOCAL / rundir.LOCAL_GROUPS)
        return finished_groups(groups, None), "finished", console.Progress(len(groups))

    monkeypatch.setattr(local, "run", run)
    monkeypatch.setattr(experiments, "plan", lambda *a: pytest.fail("runner=local plans no Tune experiment"))
    run_dir = tmp_path / "run"
    argv = [*STUDY, "runner=local", f"run_dir={run_dir}"]
    done = launched(argv)
    assert (done.code, done.err) == (0, ""), done.err
    assert rundir.read_study(run_dir)["experiments"] == []
    assert seen[0]["restore"] is False and seen[0]["run_dir"] == run_dir and seen[0]["cfg"].runner == "local"
    assert seen[0]["groups"] == seen[0]["plan"].groups(seen[0]["cfg"], False)
    assert len(pd.read_csv(run_dir / rundir.TRIALS)) == 4
    assert done.said("trials: 2 groups of 4 configs (train.fuse=auto)") and done.said(f"run dir: {run_dir}")

    done = launched([f"resume={run_dir}"])
    assert (done.code, done.err) == (0, ""), done.err
    assert seen[1]["restore"] is True and seen[1]["run_dir"] == run_dir
    assert calls.run == [] and calls.events == ["check_address None", "check_address None"]  # no Ray
