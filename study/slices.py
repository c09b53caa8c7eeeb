"""A study in slices: a time budget per launch, resuming a run dir (moved or not) with the few overrides
that may change between slices, and `run_dir=` that continues the study already there.

Why not `TuneConfig(time_budget_s=...)`: in Ray 2.60 the budget ends the study by stopping every running and
pending trial as TERMINATED (ray/tune/execution/tune_controller.py, `_stop_experiment_if_needed` and
`_schedule_trial_stop`), which `Tuner.restore` then skips as finished (ResumeConfig.finished=SKIP), and its
TimeoutStopper, already spent, is saved in the experiment state and restored with it (`__getstate__` keeps
`_stopper`; stopper/timeout.py keeps `_budget`), so a resumed study would stop again at once. The budget here
asks Tune to stop the way Ctrl-C does (its SIGUSR1 handler, ray/tune/tune.py `_setup_signal_catching`): Tune
saves the experiment state with the running trials unfinished, each at its last checkpoint (every
`train.checkpoint_every` epochs), and `resume=` continues them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from loaders.errors import UsageError
from study.grid import flatten
from study.schema import DURATION

UNITS = {"s": 1, "m": 60, "h": 3600}
PORTABLE = ("budget", "data.root", "storage.root", "ray.address")  # what may differ between slices of one study
PLACED = ("data.root", "data.cache", "noise.confusion")  # paths the driver resolves afresh for each slice
IGNORED = ("resume", "run_dir", "dry_run", "force")  # how a study is launched, not what it is
EXIT_BUDGET = 75  # sysexits' EX_TEMPFAIL: not finished yet, run the resume command to go on


def seconds(budget: str | None) -> float | None:
    """'90s', '12m', '3h' -> seconds; None -> None. Its form is checked by study.schema."""
    if budget is None:
        return None
    number, unit = DURATION.match(budget).groups()
    return float(number) * UNITS[unit]


def tune_listens() -> bool:
    return signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)


@contextlib.contextmanager
def budget_timer(budget: float | None) -> Iterator[list[bool]]:
    """After `budget` seconds, ask Tune to stop as Ctrl-C does (SIGUSR1: it saves its state and returns); the
    yielded list gets True when it did. A budget spent while Tune is still setting up waits for its handler."""
    spent: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        if budget is None or done.wait(budget):
            return
        while not done.is_set():
            if tune_listens():  # SIGUSR1 with no handler would end the process
                spent.append(True)
                os.kill(os.getpid(), signal.SIGUSR1)
                return
            done.wait(0.5)

    thread = threading.Thread(target=watch, name="study-budget", daemon=True)
    thread.start()
    try:
        yield spent
    finally:
        done.set()
        thread.join()


def check_budget(cfg: dict[str, Any], grouped: bool, groups: int) -> None:
    """A budget needs one Tune grid (Tune generates up to 200 trials at once; all must exist when it stops)
    and checkpoints, or a stopped trial starts again from epoch 0."""
    if cfg["budget"] is None:
        return
    if not grouped:
        raise UsageError(f"budget={cfg['budget']!r} needs search=grid and scheduler=none (optuna and ASHA draw or "
                         "stop trials as they go, and a slice would cut that short): drop budget, or use those")
    if groups > 200:
        raise UsageError(f"budget={cfg['budget']!r} needs at most 200 trials, this study has {groups}: shrink the "
                         "grid, fuse more (train.fuse), or drop budget")
    if not cfg["train"]["checkpoint_every"]:
        raise UsageError(f"budget={cfg['budget']!r} needs train.checkpoint_every >= 1 (0: never), or a trial cut "
                         "by the budget starts again from its first epoch")


def given(argv: list[str]) -> list[str]:
    """The dotted keys of command-line overrides (Hydra's + and ++ prefixes dropped)."""
    return [arg.partition("=")[0].lstrip("+") for arg in argv]


def resume_overrides(argv: list[str], cfg: dict[str, Any]) -> dict[str, Any]:
    """The PORTABLE overrides given beside resume=, with their values; any other is refused in one line."""
    for key in given(argv):
        if key not in ("resume", *PORTABLE):
            raise UsageError(f"{key}= cannot change with resume=: a resumed study keeps the config it started with; "
                             f"only {', '.join(k + '=' for k in PORTABLE)} may be given (another machine, another slice)")
    values = flatten(cfg)
    return {key: values[key] for key in given(argv) if key in PORTABLE}


def portable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The PORTABLE values of a composed config."""
    values = flatten(cfg)
    return {key: values[key] for key in PORTABLE}


def with_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a study's config with these dotted keys set (a key missing from an older study.json is added)."""
    out = {**cfg}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        out[head] = with_overrides(out.get(head) or {}, {rest: value}) if rest else value
    return out


def same_study(held: dict[str, Any], cfg: dict[str, Any], run_dir: str) -> None:
    """run_dir= on a folder that holds a study continues it only with the same config (PORTABLE and IGNORED
    keys aside); else one line names the first key that differs."""
    old, new = flatten(held), flatten(cfg)
    for key in dict.fromkeys([*old, *new]):
        if key.split(".")[0] in IGNORED or key in PORTABLE or old.get(key) == new.get(key):
            continue
        raise UsageError(f"run_dir={run_dir!r} holds another study: {key}={old.get(key)!r} there, {new.get(key)!r} "
                         "here; use the same config to continue it, or another run_dir to start a new study")


class BudgetSpent(Exception):
    """The budget ended this slice of the study: `resume=<run_dir>` goes on from every trial's last checkpoint."""

    def __init__(self, budget: str, run_dir: Any, finished: int, partial: int, total: int) -> None:
        waiting = total - finished - partial
        super().__init__(f"budget {budget} spent: {finished} of {total} trials finished, {partial} partial (resume from "
                         f"their last checkpoint), {waiting} not started; trials.csv holds the finished ones\n"
                         f"continue the study with: {sys.executable} -m study.launch resume={run_dir}")
