"""study.experiments.fit in pytest's own process: what it hands Tune for a new experiment (the trainable's name,
the param space, Tune's and the run's config, the callbacks), when it resumes one instead (Tuner.restore), and what it
makes of the results Tune gives back (rundir.Result, a trial's id prefixed with its experiment's folder), one
experiment on this thread and several side by side, in order. Ray itself does not start here (in pytest's process it
crashed pytest at exit): tune.register_trainable and tune.Tuner are recorders; the real Tune runs in
tests/test_experiments.py's child Python."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray
from ray import tune

import rundir
from study import config, experiments, preflight
from study.console import Progress
from study.tune_progress import Report
from study.watch import NoGpuWatch

SMALL = ["exp=uniform_mnist", "preset=smoke", "grid.noise.alpha=[0,10]", "grid.model.arch=[mlp1]",
         "grid.train.lr=[0.1,0.5]", "max_failures=5"]


@functools.cache
def composed(*overrides: str) -> config.Config:
    """Composed once per set of overrides (fit only reads it)."""
    cfg, _ = config.compose([*SMALL, *overrides])
    return cfg


def trainable(config: dict) -> None:
    """What fit registers; never run here."""


def tune_result(path: str, n: int, metrics: Any = "default") -> SimpleNamespace:
    """What Tune's ResultGrid yields (ray.tune.Result's four attributes): trial n of experiment `path`."""
    if metrics == "default":
        metrics = {"trial_id": f"abcde_0000{n}", "test_acc": 0.5 + n, "epoch": 2}
    return SimpleNamespace(config={"exp": path, "n": n}, metrics=metrics, metrics_dataframe=object(),
                           error=RuntimeError(f"{path}/{n}") if n else None)


class Tune:
    """Ray's calls, recorded: register_trainable's, each Tuner's (new or restored) and which thread fitted it."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, Any]] = []
        self.tuners: list[Any] = []  # every Tuner, in the order they were made
        self.asked: list[Any] = []  # can_restore's arguments
        self.restorable: set[str] = set()  # experiment folders (as str) can_restore says yes to
        self.given: dict[str, list[Any]] = {}  # Tune's results per experiment folder (the Tuner's path, as str)
        self.fitted: list[tuple[str, threading.Thread]] = []
        self.pools: list[tuple[tuple, dict]] = []  # ThreadPoolExecutor's arguments
        self.lock = threading.Lock()

    def tuner(self, path: str) -> Any:
        (tuner,) = [t for t in self.tuners if t.path == path]
        return tuner


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Tune:
    seen = Tune()

    def no_init(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ray.init called")

    class Tuner:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.how, self.args, self.kwargs = "new", args, kwargs
            run = kwargs.get("run_config")
            self.path = str(Path(run.storage_path) / run.name) if run else None
            self.progress = Report.progress
            with seen.lock:
                seen.tuners.append(self)

        @classmethod
        def can_restore(cls, path: Any) -> bool:
            with seen.lock:
                seen.asked.append(path)
            return str(path) in seen.restorable

        @classmethod
        def restore(cls, *args: Any, **kwargs: Any) -> Any:
            tuner = cls.__new__(cls)
            tuner.how, tuner.args, tuner.kwargs, tuner.path = "restored", args, kwargs, str(args[0]) if args else None
            tuner.progress = Report.progress  # the restored Report reports to this launch's progress line
            with seen.lock:
                seen.tuners.append(tuner)
            return tuner

        def fit(self) -> list[Any]:
            with seen.lock:
                seen.fitted.append((self.path, threading.current_thread()))
            return seen.given.get(self.path, [])

    class Pool(ThreadPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.pools.append((args, kwargs))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ray, "init", no_init)
    monkeypatch.setattr(tune, "register_trainable", lambda name, f: seen.registered.append((name, f)))
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(experiments, "ThreadPoolExecutor", Pool)
    monkeypatch.setattr(Report, "progress", None)  # the class attribute fit sets, put back after each test
    yield seen
    assert not ray.is_initialized()


def exps(*paths: str) -> list[experiments.Experiment]:
    return [experiments.Experiment(p, {"exp": p, "train": {"lr": {"grid_search": [0.1, 0.5]}}}) for p in paths]


def test_trial_dirname_is_the_trainable_and_tunes_id() -> None:
    trial = SimpleNamespace(trainable_name=experiments.TRAINABLE, trial_id="abcde_00001", config={"a": 1})
    assert experiments.trial_dirname(trial) == "study_trial_abcde_00001"


def test_a_new_experiment_gets_the_trainables_name_and_its_run_config(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    plan = preflight.plan(cfg)
    (exp, _) = experiments.plan(cfg, plan.base, plan.grids, [])
    assert experiments.TRAINABLE == "study_trial"
    experiments.fit([exp], trainable, cfg, tmp_path, restore=False)
    assert calls.registered == [("study_trial", trainable)]  # once, before any Tuner
    (tuner,) = calls.tuners
    assert tuner.how == "new" and tuner.args == ("study_trial",)
    assert set(tuner.kwargs) == {"param_space", "tune_config", "run_config"}
    assert tuner.kwargs["param_space"] is exp.param_space
    run = tuner.kwargs["run_config"]
    assert isinstance(run, tune.RunConfig)
    assert (run.storage_path, run.name) == (str(tmp_path / "tune"), "cell-000")
    assert isinstance(run.failure_config, tune.FailureConfig) and run.failure_config.max_failures == 5
    assert isinstance(run.checkpoint_config, tune.CheckpointConfig) and run.checkpoint_config.num_to_keep == 2
    assert run.verbose == 0
    (report,) = run.callbacks  # CPU trials: no GPU watch
    assert type(report) is Report and report.experiment == "tune/cell-000"
    assert calls.asked == []  # not resuming: Tune's saved state is not even looked at


def test_each_experiment_is_saved_in_its_own_folder(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    experiments.fit(exps("tune", "tune/cell-001", "tune-extra1/cell-000"), trainable, cfg, tmp_path, restore=False)
    folders = sorted((t.kwargs["run_config"].storage_path, t.kwargs["run_config"].name) for t in calls.tuners)
    assert folders == [(str(tmp_path), "tune"), (str(tmp_path / "tune"), "cell-001"),
                       (str(tmp_path / "tune-extra1"), "cell-000")]
    reports = sorted(t.kwargs["run_config"].callbacks[0].experiment for t in calls.tuners)
    assert reports == ["tune", "tune-extra1/cell-000", "tune/cell-001"]
    assert calls.registered == [("study_trial", trainable)]


def tune_fields(tc: Any) -> tuple:
    return (tc.metric, tc.mode, type(tc.search_alg).__name__, tc.num_samples, type(tc.scheduler).__name__,
            tc.max_concurrent_trials, tc.trial_dirname_creator, tc.reuse_actors)


@pytest.mark.parametrize("overrides,fields", [
    ((), (None, None, "NoneType", 1, "NoneType", None, experiments.trial_dirname, True)),
    (("max_concurrent_trials=3",), (None, None, "NoneType", 1, "NoneType", 3, experiments.trial_dirname, True)),
    (("scheduler=asha", "train.epochs=9", "scheduler.grace_period=2", "scheduler.reduction_factor=3"),
     ("test_acc", "max", "NoneType", 1, "AsyncHyperBandScheduler", None, experiments.trial_dirname, True)),
    (("search=optuna", "search.seed=7", "search.trials_per_cell=4", "+search.space.train.lr.loguniform=[0.001,1.0]"),
     ("test_acc", "max", "OptunaSearch", 4, "NoneType", None, experiments.trial_dirname, True)),
], ids=["grid", "max_concurrent", "asha", "optuna"])
def test_a_new_experiment_gets_tunes_config_of_each_search_and_scheduler(overrides: tuple, fields: tuple, calls: Tune,
                                                                        tmp_path: Path) -> None:
    cfg = composed(*overrides)
    experiments.fit(exps("tune/cell-000"), trainable, cfg, tmp_path, restore=False)
    (tuner,) = calls.tuners
    tc = tuner.kwargs["tune_config"]
    assert isinstance(tc, tune.TuneConfig) and tune_fields(tc) == fields
    if tc.scheduler is not None:
        s = tc.scheduler
        assert (s._time_attr, s._max_t, s._reduction_factor, s._brackets[0]._rungs[-1][0]) == ("epoch", 9, 3, 2)
    if tc.search_alg is not None:
        assert tc.search_alg._seed == 7


@pytest.mark.parametrize("overrides,watch", [
    (("ray.address=10.0.0.1:6379", "resources.gpu=0.5", "resources.gpu_wait=2m"), (0.5, 120.0, "2m")),
    (("ray.address=10.0.0.1:6379",), None),  # CPU trials on a cluster
    (("resources.gpu=0.5", "resources.gpu_wait=2m"), None),  # GPU trials on this machine's own Ray
], ids=["cluster-gpu", "cluster-cpu", "local-gpu"])
def test_the_no_gpu_watch_joins_the_report_only_for_gpu_trials_on_a_cluster(overrides: tuple, watch: Any, calls: Tune,
                                                                           tmp_path: Path) -> None:
    cfg = composed(*overrides)
    experiments.fit(exps("tune/cell-000", "tune/cell-001"), trainable, cfg, tmp_path, restore=False)
    for tuner in calls.tuners:
        report, *watches = tuner.kwargs["run_config"].callbacks
        assert type(report) is Report and f"{tmp_path}/{report.experiment}" == tuner.path
        assert [(type(w), w.gpu, w.wait_s, w.wait) for w in watches] == ([(NoGpuWatch, *watch)] if watch else [])


def test_resuming_restores_the_experiments_tune_saved_and_starts_the_others(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    first, second = exps("tune/cell-000", "tune/cell-001")
    calls.restorable = {str(tmp_path / first.path)}
    progress = Progress(4)
    experiments.fit([first, second], trainable, cfg, tmp_path, restore=True, progress=progress)
    assert sorted(calls.asked) == [tmp_path / "tune/cell-000", tmp_path / "tune/cell-001"]
    assert all(isinstance(path, Path) for path in calls.asked)
    restored = calls.tuner(str(tmp_path / "tune/cell-000"))
    assert restored.how == "restored" and restored.args == (str(tmp_path / "tune/cell-000"), "study_trial")
    assert type(restored.args[0]) is str
    assert restored.kwargs == {"resume_errored": True, "param_space": first.param_space}
    assert restored.kwargs["param_space"] is first.param_space
    assert restored.progress is progress  # its Report (restored from tuner.pkl) reports to this launch
    started = calls.tuner(str(tmp_path / "tune/cell-001"))  # nothing saved yet: a new Tuner
    assert started.how == "new" and started.kwargs["param_space"] is second.param_space
    assert started.kwargs["run_config"].callbacks[0].experiment == "tune/cell-001"
    assert len(calls.tuners) == 2 and calls.registered == [("study_trial", trainable)]


def test_without_resume_a_saved_experiment_starts_anew(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    calls.restorable = {str(tmp_path / "tune/cell-000")}
    experiments.fit(exps("tune/cell-000"), trainable, cfg, tmp_path, restore=False)
    (tuner,) = calls.tuners
    assert tuner.how == "new" and calls.asked == []


def test_tunes_results_become_rundir_results_with_the_experiments_folder_in_the_trial_id(calls: Tune,
                                                                                       tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    given = [tune_result("tune/cell-000", 0), tune_result("tune/cell-000", 1), tune_result("tune/cell-000", 2, None),
             tune_result("tune/cell-000", 3, {})]
    calls.given[str(tmp_path / "tune/cell-000")] = given
    (results,) = experiments.fit(exps("tune/cell-000"), trainable, cfg, tmp_path, restore=False)
    assert [type(r) for r in results] == [rundir.Result] * 4
    for r, g in zip(results, given):
        assert r.config is g.config and r.metrics_dataframe is g.metrics_dataframe and r.error is g.error
    assert results[0].metrics == {"trial_id": "tune/cell-000/abcde_00000", "test_acc": 0.5, "epoch": 2}
    assert results[1].metrics == {"trial_id": "tune/cell-000/abcde_00001", "test_acc": 1.5, "epoch": 2}
    assert results[2].metrics is None  # no report yet: no metrics, and no trial id made up
    assert results[3].metrics == {}
    assert given[0].metrics["trial_id"] == "abcde_00000"  # Tune's own result left as it was


def test_a_restored_experiments_results_get_the_same_trial_ids(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    calls.restorable = {str(tmp_path / "tune-extra1/cell-002")}
    calls.given[str(tmp_path / "tune-extra1/cell-002")] = [tune_result("x", 1)]
    (results,) = experiments.fit(exps("tune-extra1/cell-002"), trainable, cfg, tmp_path, restore=True)
    (result,) = results
    assert calls.tuners[0].how == "restored"
    assert result.metrics["trial_id"] == "tune-extra1/cell-002/abcde_00001" and result.error is not None


def test_one_experiment_runs_on_this_thread(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    calls.given[str(tmp_path / "tune")] = [tune_result("tune", 0)]
    grids = experiments.fit(exps("tune"), trainable, cfg, tmp_path, restore=False)
    assert isinstance(grids, list) and len(grids) == 1 and [r.metrics["trial_id"] for r in grids[0]] == ["tune/abcde_00000"]
    assert calls.pools == [] and calls.fitted == [(str(tmp_path / "tune"), threading.current_thread())]


@pytest.mark.parametrize("n", [2, 3])
def test_several_experiments_run_side_by_side_and_keep_their_order(n: int, calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    paths = [f"tune/cell-{i:03d}" for i in range(n)]
    for i, path in enumerate(paths):
        calls.given[str(tmp_path / path)] = [tune_result(path, k) for k in range(i + 1)]
    grids = experiments.fit(exps(*paths), trainable, cfg, tmp_path, restore=False)
    assert [[(r.config["exp"], r.metrics["trial_id"]) for r in grid] for grid in grids] == [
        [(path, f"{path}/abcde_0000{k}") for k in range(i + 1)] for i, path in enumerate(paths)]
    assert calls.pools == [((), {"max_workers": n})]  # one thread per experiment: all at once
    assert sorted(path for path, _ in calls.fitted) == [str(tmp_path / p) for p in paths]
    assert all(thread is not threading.current_thread() for _, thread in calls.fitted)
    assert calls.registered == [("study_trial", trainable)]  # Tune's registry is not thread-safe: once, up front


def test_the_progress_line_is_the_reports_and_none_without_one(calls: Tune, tmp_path: Path) -> None:
    cfg = composed("scheduler=asha")
    progress = Progress(2)
    experiments.fit(exps("tune/cell-000"), trainable, cfg, tmp_path, restore=False, progress=progress)
    assert Report.progress is progress and calls.tuners[0].progress is progress
    experiments.fit(exps("tune/cell-000"), trainable, cfg, tmp_path, restore=False)
    assert Report.progress is None and calls.tuners[1].progress is None  # no earlier launch's line
