"""What a user reads while a study runs, owned by the launcher: where the run dir is, the dashboard and how to
authenticate to it, the TensorBoard command, then one progress line per study, whichever runner trains it:

    trials: 3 done, 2 running, 10 pending · ETA 4m10s

`progress_line` is that line; `Progress` keeps the trials' states and the ETA (from the examples trained so far
in this launch) and prints it: redrawn in place on a terminal, a new line now and then in a log. Ray's messages
that say nothing to a user of this tool (QUIET) are filtered, and a Tune trial's workers log warnings only.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

LOG_EVERY_S = 60  # off a terminal: a progress line at least this often, and at most every LOG_CHANGE_S on a change
LOG_CHANGE_S = 10
TOKEN = "~/.ray/auth_token"  # where a local Ray keeps its dashboard token (`ray get-auth-token` prints it)


def duration(seconds: float) -> str:
    """45s, 12m05s, 3h20m."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(done: int, running: int, pending: int, eta_s: float | None, failed: int = 0,
                  took_s: float | None = None) -> str:
    """The one progress line of a study: trials done (of them failed), running and pending, and the time left (or,
    on the last line, the time this launch took)."""
    failures = f" ({failed} failed)" if failed else ""
    time_left = (f"took {duration(took_s)}" if took_s is not None else "ETA --" if eta_s is None
                 else f"ETA {duration(eta_s)}")
    return f"trials: {done} done{failures}, {running} running, {pending} pending · {time_left}"


def shown(path: Path) -> str:
    """A path as a user typed it: relative to the working directory when under it (runs/...), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass
class TrialState:
    status: str  # pending, running, done, failed
    epoch: int  # epochs trained so far (its last report)
    epochs: int  # epochs it trains in all
    work: float  # examples it trains in all (every member, every epoch): what the ETA weighs it by


class Progress:
    """The trials of one study as a runner reports them (`update`, from any thread), and the progress line.
    `total` counts the trials not created yet (Optuna draws them as it goes) as pending."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.total, self.out = total, out or sys.stdout
        self.tty = self.out.isatty()
        self.trials: dict[str, TrialState] = {}
        self.first: dict[str, int] = {}  # each trial's epoch when this launch first saw it
        self.started: float | None = None  # the first report: Ray's start-up is no training
        self.lock = threading.Lock()
        self.last_line, self.last_time = "", -math.inf  # the first report is shown whatever monotonic() reads

    def update(self, trials: dict[str, TrialState]) -> None:
        with self.lock:
            self.started = self.started or time.monotonic()
            for trial_id, state in trials.items():
                self.first.setdefault(trial_id, state.epoch)
                self.trials[trial_id] = state
            self.show(final=False)

    def counts(self) -> tuple[int, int, int, int]:
        """done, failed, running, pending."""
        states = [t.status for t in self.trials.values()]
        done, failed, running = (sum(s in kinds for s in states) for kinds in (("done", "failed"), ("failed",),
                                                                                ("running",)))
        return done, failed, running, max(0, self.total - done - running)

    def eta(self) -> float | None:
        """Seconds left: the examples left to train at the rate this launch has trained them so far."""
        trials = list(self.trials.values())
        if not trials or self.started is None:
            return None
        advanced = sum(t.work * (t.epoch - self.first[i]) / t.epochs for i, t in self.trials.items())
        left = sum(t.work * (1 - t.epoch / t.epochs) for t in trials if t.status not in ("done", "failed"))
        left += (self.total - len(trials)) * sum(t.work for t in trials) / len(trials)
        return None if advanced <= 0 else (time.monotonic() - self.started) * left / advanced

    def line(self, final: bool = False) -> str:
        done, failed, running, pending = self.counts()
        took = time.monotonic() - self.started if final and self.started is not None else None
        return progress_line(done, running, pending, self.eta(), failed, took)

    def show(self, final: bool) -> None:
        """On a terminal the line is redrawn in place; in a log a new line on a change (every LOG_CHANGE_S at
        most) or every LOG_EVERY_S; the final line (with the time taken) always."""
        line, now = self.line(final), time.monotonic()
        counts = line.split(" · ")[0]
        if self.tty:
            if final or line != self.last_line:
                self.out.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
                self.out.flush()
        elif final or now - self.last_time >= LOG_EVERY_S or (
                counts != self.last_line.split(" · ")[0] and now - self.last_time >= LOG_CHANGE_S):
            print(line, file=self.out, flush=True)
        else:
            return
        self.last_line, self.last_time = line, now

    def close(self) -> None:
        with self.lock:
            self.show(final=True)

    def advanced(self) -> list[tuple[int, int, int]]:
        """(epoch when this launch began, epoch now, epochs) of each unfinished trial this launch trained."""
        return [(self.first[i], t.epoch, t.epochs) for i, t in self.trials.items()
                if t.status not in ("done", "failed") and t.epoch > self.first[i]]


class Quiet(logging.Filter):
    """Drops a logger's records whose message starts with one of `prefixes` (and passes `keep`, if given)."""

    def __init__(self, prefixes: tuple[str, ...], keep: object = None) -> None:
        super().__init__()
        self.prefixes, self.keep = prefixes, keep

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.prefixes) and (self.keep is None or not self.keep(message)))


def only_unstarted(message: str) -> bool:
    """"Failed to fetch metrics" names a trial with no result file yet (one a stopped study never started): keep
    the message when any other error is listed."""
    return any(line.startswith("- ") and "FileNotFoundError" not in line for line in message.splitlines())


# Ray's messages the launcher replaces or that say nothing here (logger: message prefixes).
QUIET = {
    "ray._private.authentication.authentication_token_setup": (("Token authentication is enabled",), None),  # the
    # dashboard line says how to authenticate
    "ray._private.worker": (("Started a local Ray instance", "Calling ray.init() again"), None),  # the dashboard
    # line gives the address
    "ray.tune.tune": (("Stop signal received", "Experiment has been interrupted", "Wrote the latest version"), None),
    # the launcher's own line says how the slice ended and gives resume=, not Tuner.restore
    "ray.tune.execution.tune_controller": (("Restoring the run from",), None),
    "ray.tune.analysis.experiment_analysis": (("Failed to fetch metrics",), only_unstarted),
}


def quiet_ray() -> None:
    """Before Tune starts in this process: Ray's known-harmless messages filtered; Tune's warning that saving its
    state every few seconds "may become a bottleneck" (each trial checkpoints every epoch, by design) off; and
    Tune's reporter the one that verbose=0 silences (the newer one still prints its experiment box and a TensorBoard
    command for Ray's temp dir)."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name, (prefixes, keep) in QUIET.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, Quiet) for f in logger.filters):
            logger.addFilter(Quiet(prefixes, keep))


def quiet_worker() -> None:
    """In a trial's worker: Ray Train's and Tune's info lines (a checkpoint saved or restored, every epoch) off;
    their warnings and errors still reach the launcher's console."""
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)


def dashboard_lines(url: str | None) -> list[str]:
    """Where the Ray dashboard is and how to authenticate to it."""
    if not url:
        return ["dashboard: not running (Ray was started without it)"]
    url = url if "://" in url else f"http://{url}"
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return [f"dashboard: {url}"]
    return [f"dashboard: {url} (token authentication: paste the token of `ray get-auth-token`, kept in {TOKEN}, "
            "when the page asks; API calls send it as `Authorization: Bearer <token>`)"]


def tensorboard_line(run_dir: Path) -> str:
    """The TensorBoard command for this run dir's Tune logs."""
    beside = Path(sys.executable).parent / "tensorboard"
    command = shown(beside) if beside.exists() else "tensorboard"
    return f"TensorBoard: {command} --logdir {shown(Path(run_dir) / 'tune')}"


def hold_dashboard() -> None:
    """dashboard=true: the study has ended and its local Ray (with its dashboard) stays up until Ctrl-C or SIGTERM."""
    print("dashboard=true: the dashboard stays up until Ctrl-C", flush=True)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
