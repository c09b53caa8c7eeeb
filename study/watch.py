"""What the driver watches while Tune runs a study on a cluster: GPU trials that wait for a GPU the cluster
does not have. Tune would leave them PENDING for ever and say nothing; this says so in one line."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import ray
from ray.tune import Callback

POLL_S = 10.0  # how often the cluster's resources are read: a Tune step comes every few milliseconds


class NoGpuWatch(Callback):
    """Once GPU trials have been pending for `wait_s` seconds while the cluster had no GPU at all, one warning
    line with what to do about it (the study keeps waiting: a GPU node may still come)."""

    def __init__(self, gpu: float, wait_s: float, wait: str,
                 gpus: Callable[[], float] = lambda: ray.cluster_resources().get("GPU", 0),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gpu, self.wait_s, self.wait, self.gpus, self.clock = gpu, wait_s, wait, gpus, clock
        self.since: float | None = None  # since when trials have waited with no GPU in the cluster
        self.polled = -POLL_S
        self.said = False

    def __getstate__(self) -> dict:
        """Tune saves its callbacks with the experiment: a resumed study watches afresh (a new process's clock)."""
        return {**self.__dict__, "since": None, "polled": -POLL_S, "said": False}

    def on_step_end(self, iteration: int, trials: list, **info: object) -> None:
        now = self.clock()
        if self.said or not self.gpu or now - self.polled < POLL_S:
            return
        self.polled = now
        pending = sum(trial.status == "PENDING" for trial in trials)
        if not pending or self.gpus():
            self.since = None
            return
        self.since = now if self.since is None else self.since
        if now - self.since >= self.wait_s:
            self.said = True
            print(f"warning: {pending} trial(s) asking resources.gpu={self.gpu:g} have waited {self.wait} and the "
                  "cluster has no GPU at all (`ray status`): its autoscaler started no GPU node (check the GPU "
                  "worker type, the cloud's GPU quota and capacity) or a node's GPUs were not given to Ray "
                  "(ray start --num-gpus); the study keeps waiting; Ctrl-C saves it for resume=, or run it with "
                  "resources.gpu=0 on CPUs", file=sys.stderr, flush=True)
