"""The study's progress line (study.console) fed by Ray Tune: a Callback that reports every trial's state.

Tune pickles its callbacks with the Tuner (tuner.pkl) and restores them with `resume=`: a Report holds only its
experiment's folder, and reports to the Progress of the launch that runs it (the class attribute `progress`, set by
study.experiments.fit)."""

from __future__ import annotations

from typing import Any, ClassVar

from ray import tune

from study import console, cost

STATUS = {"PENDING": "pending", "PAUSED": "pending", "RUNNING": "running", "TERMINATED": "done", "ERROR": "failed"}


class Report(tune.Callback):
    progress: ClassVar[console.Progress | None] = None
    work: ClassVar[dict[str, float]] = {}  # examples a trial trains in all, per trial (its config is fixed)
    experiment = ""  # a class default: a Report pickled before experiments had one restores with it

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment

    def key(self, trial: Any) -> str:
        """The trial's id in the study: Tune's ids are unique within one experiment only."""
        return f"{self.experiment}/{trial.trial_id}"

    def state(self, trial: Any) -> console.TrialState:
        members, key = trial.config.get("members") or [trial.config], self.key(trial)
        if key not in self.work:
            self.work[key] = float(cost.examples(members[0]) * len(members))
        epoch, epochs = int((trial.last_result or {}).get("epoch") or 0), members[0]["train"]["epochs"]
        status = STATUS.get(trial.status, "pending")
        if status == "done" and epoch < epochs:  # stopped by a budget or a signal: it goes on when resumed
            status = "pending"
        return console.TrialState(status, epoch, epochs, self.work[key])

    def report(self, trials: list[Any]) -> None:
        if self.progress is not None:
            self.progress.update({self.key(t): self.state(t) for t in trials if t.config})

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.report(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.report(trials)
