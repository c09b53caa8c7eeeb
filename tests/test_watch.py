"""study.watch: GPU trials pending on a cluster with no GPU at all are said once, after resources.gpu_wait."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray import cloudpickle

from errors import UsageError
from study.config import compose
from study.watch import POLL_S, NoGpuWatch


def trials(*statuses: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(status=s) for s in statuses]


def test_pending_gpu_trials_on_a_gpu_less_cluster_are_said_once_after_the_wait(capsys: pytest.CaptureFixture) -> None:
    now, gpus = [0.0], [0.0]
    watch = NoGpuWatch(0.25, 600, "10m", gpus=lambda: gpus[0], clock=lambda: now[0])
    for t in range(0, 600, 5):  # ten minutes of Tune steps with every trial pending and no GPU: quiet
        now[0] = float(t)
        watch.on_step_end(0, trials("PENDING", "PENDING", "RUNNING"))
    assert capsys.readouterr().err == ""
    now[0] = 600.0
    watch.on_step_end(0, trials("PENDING", "PENDING", "RUNNING"))
    err = capsys.readouterr().err
    assert err == ("warning: 2 trial(s) asking resources.gpu=0.25 have waited 10m and the cluster has no GPU at all "
                   "(`ray status`): its autoscaler started no GPU node (check the GPU worker type, the cloud's GPU quota "
                   "and capacity) or a node's GPUs were not given to Ray (ray start --num-gpus); the study keeps "
                   "waiting; Ctrl-C saves it for resume=, or run it with resources.gpu=0 on CPUs\n")  # how to fix it
    now[0] = 2000.0
    watch.on_step_end(0, trials("PENDING"))
    assert capsys.readouterr().err == ""  # said once


def test_the_wait_restarts_when_a_gpu_joins_or_nothing_waits(capsys: pytest.CaptureFixture) -> None:
    now, gpus = [0.0], [0.0]
    watch = NoGpuWatch(1, 100, "100s", gpus=lambda: gpus[0], clock=lambda: now[0])
    watch.on_step_end(0, trials("PENDING"))
    now[0], gpus[0] = 90.0, 8.0  # a GPU node joined: the trials will run
    watch.on_step_end(0, trials("PENDING"))
    now[0], gpus[0] = 150.0, 0.0  # it left again: the wait starts over
    watch.on_step_end(0, trials("PENDING"))
    now[0] = 240.0
    watch.on_step_end(0, trials("RUNNING"))  # nothing pending: over again
    now[0] = 330.0
    watch.on_step_end(0, trials("PENDING"))
    now[0] = 420.0
    watch.on_step_end(0, trials("PENDING"))
    assert capsys.readouterr().err == ""
    now[0] = 430.0 + POLL_S
    watch.on_step_end(0, trials("PENDING"))
    assert capsys.readouterr().err.startswith("warning: 1 trial(s)")


def test_cpu_trials_are_not_watched_and_a_resumed_study_watches_afresh(capsys: pytest.CaptureFixture) -> None:
    cpu = NoGpuWatch(0, 0, "0s", gpus=lambda: 0, clock=lambda: 1e6)
    cpu.on_step_end(0, trials("PENDING"))
    assert capsys.readouterr().err == ""
    watch = NoGpuWatch(1, 0, "1s", gpus=lambda: 0, clock=lambda: 50.0)
    watch.on_step_end(0, trials("PENDING"))
    assert watch.said and capsys.readouterr().err
    again = cloudpickle.loads(cloudpickle.dumps(watch))  # as Tune saves its callbacks with the experiment
    assert (again.said, again.since, again.polled) == (False, None, -POLL_S)
    assert (watch.said, again.wait_s, again.gpu) == (True, 0, 1)  # the watch itself keeps its state


def test_gpu_wait_is_a_duration() -> None:
    cfg, _ = compose(["resources.gpu_wait=90s"])
    assert cfg.resources.gpu_wait == "90s"
    with pytest.raises(UsageError, match=r"^resources.gpu_wait='soon' is invalid: it must be a duration > 0"):
        compose(["resources.gpu_wait=soon"])
