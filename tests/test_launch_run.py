"""study.launch.run, the Tune path's loop, in pytest's own process: what it hands Tune, and what it makes of the
results Tune gives back (the outcome recorded in provenance.json, the failures named on stderr, a signal or a
Ctrl-C as Interrupted). Ray itself does not start here (in pytest's process it crashed pytest at exit): its calls
are recorders, experiments.fit returns results built as rundir.Result; the slow tests run the real Tune."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray
from ray import tune

import rundir
from study import config, experiments, launch, preflight, slices
from study.trainable import trainable

SMALL = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[perceptron]",
         "grid.noise.alpha=[0,1]", "grid.train.lr=[0.1]", "train.epochs=2", "figures=[]"]


def result(trial_id: str, epoch: int, error: BaseException | None = None) -> rundir.Result:
    """A group Tune left: `epoch` of its 2 epochs reported."""
    cfg = {"train": {"epochs": 2}}
    metrics = {"trial_id": trial_id, "epoch": epoch} if epoch else None
    return rundir.Result({"members": [cfg]}, metrics, pd.DataFrame([metrics]) if epoch else None, error)


@pytest.fixture
def tune_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Ray's calls recorded: with_parameters' and with_resources' arguments, and fit's; fit returns `given`."""
    seen: dict[str, Any] = {"given": [[result("a", 2)], [result("b", 2)]]}
    monkeypatch.setattr(tune, "with_parameters", lambda f, **kw: seen.setdefault("parameters", (f, kw)) and "wrapped")
    monkeypatch.setattr(tune, "with_resources", lambda f, r: seen.setdefault("resources", (f, r)) and "runnable")
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 3.0})
    monkeypatch.setattr(launch, "connect", lambda cfg: "127.0.0.1:8265")

    def fit(plan, runnable, cfg, run_dir, restore, progress):
        seen["fit"] = (plan, runnable, cfg, run_dir, restore, progress)
        if isinstance(seen["given"], BaseException):
            raise seen["given"]
        return seen["given"]

    monkeypatch.setattr(experiments, "fit", fit)
    return seen


def ran(tmp_path: Path, argv: list[str] = (), restore: bool = False, total: int = 2,
        token: tuple[str, str] | None = None):
    cfg, _ = config.compose([*SMALL, *argv])
    plan = preflight.plan(cfg)
    resources = {"cpu": 1.0, "gpu": 0.0}
    return cfg, plan, launch.run(cfg, plan, ["exp"], resources, tmp_path, restore, total, token)


def launches(run_dir: Path) -> list[tuple[str, str, int]]:
    return [(x["outcome"], x["runner"], x["cpus"]) for x in rundir.read_json(run_dir / rundir.PROVENANCE)["launches"]]


def test_run_hands_tune_the_trainable_and_records_a_finished_study(tmp_path: Path, tune_calls: dict[str, Any],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg, plan, (results, outcome, progress) = ran(tmp_path, token=("root", "t0k"))
    assert tune_calls["parameters"] == (trainable, {"paths": None, "token": ("root", "t0k")})
    assert tune_calls["resources"] == ("wrapped", {"cpu": 1.0, "gpu": 0.0})
    plan_given, runnable, cfg_given, run_dir, restore, progress_given = tune_calls["fit"]
    assert (plan_given, runnable, cfg_given, run_dir, restore) == (["exp"], "runnable", cfg, tmp_path, False)
    assert progress_given is progress and progress.total == 2
    assert [r.metrics["trial_id"] for r in results] == ["a", "b"] and outcome == "finished"
    assert launches(tmp_path) == [("finished", "tune", 3.0)]
    out, err = capsys.readouterr()
    assert out.splitlines()[:2] == ["dashboard: http://127.0.0.1:8265", launch.console.tensorboard_line(tmp_path)]
    assert err == ""


def test_a_resumed_study_reads_this_launchs_paths(tmp_path: Path, tune_calls: dict[str, Any]) -> None:
    cfg, plan, _ = ran(tmp_path, restore=True)
    assert tune_calls["parameters"][1] == {"paths": slices.placed(plan.base, plan.grids), "token": None}
    assert tune_calls["parameters"][1]["paths"] and tune_calls["fit"][4] is True


def test_failed_trials_are_named_once_per_reason(tmp_path: Path, tune_calls: dict[str, Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    tune_calls["given"] = [[result("a", 1, RuntimeError("x\nno CUDA on node n1")), result("b", 2)],
                           [result("c", 0, RuntimeError("no CUDA on node n1")), result("d", 2, ValueError())]]
    _, _, (results, outcome, _) = ran(tmp_path, total=4)
    assert len(results) == 4 and outcome == "finished"  # Tune ran to its end: the failures are the trials'
    assert capsys.readouterr().err.splitlines() == ["2 trial(s) failed: no CUDA on node n1", "1 trial(s) failed: ValueError"]


@contextlib.contextmanager
def spent_budget(seconds: float | None):
    yield [True]


@pytest.mark.parametrize("finished,outcome", [(1, "budget spent"), (2, "finished")])
def test_a_spent_budget_is_the_outcome_only_while_trials_are_left(finished: int, outcome: str, tmp_path: Path,
                                                                  tune_calls: dict[str, Any],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slices, "budget_timer", spent_budget)
    tune_calls["given"] = [[result("a", 2)], [result("b", 2 if finished == 2 else 1)]]
    _, _, (_, got, _) = ran(tmp_path, ["budget=1h"])
    assert got == outcome and launches(tmp_path) == [(outcome, "tune", 3.0)]


def test_the_budget_timer_gets_the_budget_in_seconds(tmp_path: Path, tune_calls: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    @contextlib.contextmanager
    def timer(seconds: float | None):
        asked.append(seconds)
        yield []

    monkeypatch.setattr(slices, "budget_timer", timer)
    ran(tmp_path, ["budget=90m"])
    assert asked == [5400.0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_tune_listened_to_ends_as_interrupted(signum: int, tmp_path: Path, tune_calls: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    @contextlib.contextmanager
    def received():
        yield [signum, signal.SIGINT]  # the first one names the stop

    monkeypatch.setattr(slices, "stoppable", received)
    tune_calls["given"] = [[result("a", 2)], [result("b", 1, RuntimeError("boom"))]]
    with pytest.raises(slices.Interrupted) as stopped:
        ran(tmp_path)
    assert stopped.value.code == 128 + signum
    assert f"interrupted by {signal.Signals(signum).name}: 1 of 2 trials finished" in str(stopped.value)
    assert f"resume={tmp_path}" in str(stopped.value)
    assert launches(tmp_path) == [("interrupted", "tune", 3.0)]
    assert capsys.readouterr().err == "1 trial(s) failed: boom\n"  # named before the stop


@pytest.mark.parametrize("received,code", [([], 130), ([signal.SIGTERM, signal.SIGINT], 130),
                                           ([signal.SIGINT, signal.SIGTERM], 143)])
def test_a_keyboard_interrupt_out_of_tune_is_the_last_signal(received: list[int], code: int, tmp_path: Path,
                                                            tune_calls: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    @contextlib.contextmanager
    def stoppable():
        yield received

    monkeypatch.setattr(slices, "stoppable", stoppable)
    tune_calls["given"] = KeyboardInterrupt()
    closed = []
    monkeypatch.setattr(launch.console.Progress, "close", lambda self: closed.append(self))
    with pytest.raises(slices.Interrupted) as stopped:
        ran(tmp_path, total=5)
    assert stopped.value.code == code and "0 of 5 trials finished" in str(stopped.value)
    assert len(closed) == 1 and not (tmp_path / rundir.PROVENANCE).exists()  # Tune's last saved state stands
