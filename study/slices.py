"""A study in slices: a time budget per launch, Ctrl-C and SIGTERM, resuming a run dir (moved or not) with the
few overrides that may change between slices, and `run_dir=` that continues the study already there.

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
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import rundir
from errors import UsageError
from study import config
from study.config import DURATION, Config
from study.grid import flatten

UNITS = {"s": 1, "m": 60, "h": 3600}
PORTABLE = ("budget", "data.root", "storage.root", "ray.address")  # what may differ between slices of one study
PLACED = ("data.root", "data.cache", "noise.confusion")  # paths the driver resolves afresh for each slice
IGNORED = ("resume", "run_dir", "dry_run", "force")  # how a study is launched, not what it is
EXIT_BUDGET = 75  # sysexits' EX_TEMPFAIL: not finished yet, run the resume command to go on
MAX_TRIALS = 200  # Tune generates up to this many trials at once: a budget needs them all to exist when it stops


def seconds(budget: str | None) -> float | None:
    """'90s', '12m', '3h' -> seconds; None -> None. Its form is checked by study.config."""
    if budget is None:
        return None
    number, unit = DURATION.match(budget).groups()
    return float(number) * UNITS[unit]


def tune_listens() -> bool:
    """Tune's SIGUSR1 handler is installed: it saves the experiment state and returns."""
    return signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)


class Interrupted(Exception):
    """SIGINT or SIGTERM ended the study: Tune saved its state, `resume=<run_dir>` finishes it."""

    def __init__(self, signum: int, run_dir: Path, finished: int, total: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {finished} of {total} trials finished; "
                         f"finish the study with: {sys.executable} -m study.launch resume={run_dir}")

    @property
    def code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports a process they ended


@contextlib.contextmanager
def stoppable() -> Iterator[list[int]]:
    """While Tune runs: the first SIGINT or SIGTERM asks Tune to stop (through its SIGUSR1 handler) and is recorded
    in the yielded list; a second one, or one while no Tune loop listens, raises KeyboardInterrupt."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1 or not tune_listens():
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    disabled = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours, above: SIGTERM too, and it records the signal
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if disabled is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = disabled


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


def placed(base: dict[str, Any], grids: list[dict[str, list[Any]]]) -> dict[str, Any]:
    """The PLACED paths as this launch resolved them, for a resumed study's trials (which keep the configs they
    started with) to read from: a run dir moved to another machine reads this launch's data root, .beton cache
    and confusion artifact. A path a grid varies is the trial's own."""
    values = flatten(base)
    return {k: values[k] for k in PLACED if not any(k in grid for grid in grids)}


def check_budget(cfg: Config, groups: int) -> None:
    """A budget needs every trial of its one Tune grid to exist when it stops (its other rules: study.config)."""
    if cfg.budget is not None and groups > MAX_TRIALS:
        raise UsageError(f"budget={cfg.budget!r} needs at most {MAX_TRIALS} trials, this study has {groups}: shrink "
                         "the grid, fuse more (train.fuse), or drop budget")


def given(argv: list[str]) -> list[str]:
    """The dotted keys of command-line overrides (Hydra's + and ~ prefixes dropped)."""
    return [arg.partition("=")[0].lstrip("+~") for arg in argv]


def value_at(tree: dict[str, Any], key: str) -> Any:
    """The value of a dotted key in a nested config; None where it has none."""
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def named(names: dict[str, str], cfg: Config) -> dict[str, Any]:
    """A study as compared between launches: its exp and preset, then its config."""
    return {"exp": names["exp"], "preset": names["preset"], **asdict(cfg)}


def unchanged(held: dict[str, Any], new: dict[str, Any], keys: Iterable[str], refusal: str, where: Path | str) -> None:
    """Each of `keys` (PORTABLE and IGNORED ones aside) has the held study's value in this launch's config; the
    first that differs is `refusal`, formatted with the key, both values and `where` the study is."""
    for key in keys:
        if key not in IGNORED and key not in PORTABLE and value_at(held, key) != value_at(new, key):
            raise UsageError(refusal.format(key=key, old=value_at(held, key), new=value_at(new, key), where=where))


def restorable(run_dir: Path, study: dict[str, Any]) -> bool:
    """run_dir holds state its study's runner can resume from: Tune's experiment state, or runner=local's."""
    if study["config"].get("runner") == "local":
        return (run_dir / rundir.LOCAL / rundir.LOCAL_GROUPS).is_file()
    from ray import tune

    return any(tune.Tuner.can_restore(run_dir / p) for p in study.get("experiments", ["tune"]))


def held(run_dir: Path) -> dict[str, Any]:
    """The study.json of the study in run_dir, locked for this process (a study still running there is not run
    twice) and with its runner's state to restore; else one line."""
    rundir.check_study(run_dir, "resume")
    rundir.lock(run_dir)
    study = rundir.read_study(run_dir)
    if not restorable(run_dir, study):
        state = ("runner=local state" if study["config"].get("runner") == "local" else
                 "Tune experiment state")
        raise UsageError(f"resume={run_dir} holds no {state} to restore: start the study afresh")
    return study


def resume_overrides(argv: list[str], cfg: Config, names: dict[str, str], study: dict[str, Any],
                     run_dir: Path) -> dict[str, Any]:
    """The PORTABLE overrides given beside resume=, with their values. Any other key given must hold the study's
    value (the command that started it, resume= appended, changes nothing); else one line names it."""
    new = named(names, cfg)
    unchanged(named(study, config.load(study["config"])), new, given(argv),
              "{key}={new!r} cannot change with resume=: the study in {where} has {key}={old!r}; a resumed study "
              f"keeps the config it started with, and only {', '.join(k + '=' for k in PORTABLE)} may change "
              "(another machine, another slice)", run_dir)
    return {key: value_at(new, key) for key in given(argv) if key in PORTABLE}


def portable(cfg: Config) -> dict[str, Any]:
    """The PORTABLE values of a composed config."""
    values = flatten(asdict(cfg))
    return {key: values[key] for key in PORTABLE}


def with_overrides(cfg: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a study's config with these dotted keys set (a key missing from an older study.json is added)."""
    out = {**cfg}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        out[head] = with_overrides(out.get(head) or {}, {rest: value}) if rest else value
    return out


def resumed(study: dict[str, Any], overrides: dict[str, Any]) -> tuple[Config, dict[str, str]]:
    """The held study's config, checked again, with these overrides; and its exp and preset."""
    return (config.load(with_overrides(study["config"], overrides)),
            {"exp": study["exp"], "preset": study["preset"]})


def continues(cfg: Config, names: dict[str, str]) -> bool:
    """run_dir= names a folder that already holds a study with Tune state: the same study (PORTABLE and IGNORED
    keys aside; else one line names the first key that differs), to be continued as resume= would (a requeued
    job re-running its command picks up where it left off)."""
    if not cfg.run_dir or cfg.dry_run or not (Path(cfg.run_dir) / rundir.STUDY).is_file():
        return False
    study = rundir.read_study(Path(cfg.run_dir))
    old, new = named(study, config.load(study["config"])), named(names, cfg)
    unchanged(old, new, dict.fromkeys([*flatten(old), *flatten(new)]),
              "run_dir={where!r} holds another study: {key}={old!r} there, {new!r} here; use the same config to "
              "continue it, or another run_dir to start a new study", cfg.run_dir)
    return restorable(Path(cfg.run_dir), study)


class BudgetSpent(Exception):
    """The budget ended this slice of the study: `resume=<run_dir>` goes on from every trial's last checkpoint, with
    the study's budget again (another slice) or with budget=null (to its end). `advanced`: (epoch when this slice
    began, epoch now, epochs) of each partial trial this slice trained."""

    def __init__(self, budget: str, run_dir: Any, finished: int, partial: int, total: int,
                 advanced: tuple[tuple[int, int, int], ...] | list[tuple[int, int, int]] = ()) -> None:
        waiting = total - finished - partial
        steps = [f"{start} → {now} of {epochs}" for start, now, epochs in sorted(advanced)]
        moved = ("" if not steps else f"; this slice advanced {len(steps)} of them, epochs " + ", ".join(steps[:4])
                 + (f" and {len(steps) - 4} more" if len(steps) > 4 else ""))
        command = f"{sys.executable} -m study.launch resume={run_dir}"
        super().__init__(f"budget {budget} spent: {finished} of {total} trials finished, {partial} partial (each goes on "
                         f"from its last checkpoint{moved}), {waiting} not started; trials.csv holds the finished ones\n"
                         f"another slice of {budget}: {command} budget={budget}\n"
                         f"finish the study (no budget): {command} budget=null")
