"""runner=local: a study's groups trained one after another in this process, without Ray: for one machine, and
for a lent GPU whose image has no Ray. The plan, the groups, Trial and fit are the Tune path's (study.trainable
reports the same Trial.metrics); each group leaves a rundir.Result as a Tune trial does, so trials.csv,
epochs.csv, the analysis and provenance.json (runner: local) come out the same. Its state, under
<run_dir>/local/:

    groups.json   the groups as planned, each a list of member configs (a resumed study trains these)
    <id>.pt       a group's last checkpoint: its members' weights and optimizer state, and its epochs so far
    <id>.json     a finished group's epochs, written as its last one ends

trials.csv and epochs.csv are rewritten, atomically, as each group ends; the study's progress line
(study.console) moves after each epoch. resume= (or run_dir= on this study) skips the finished groups and goes
on with a partial one from its checkpoint. budget= stops between epochs,
before one that would end past it, and the first SIGINT or SIGTERM after the current epoch: both save a
checkpoint there and end as the Tune path does (exit 75 or 128 + the signal, and the resume= line); a second
signal stops at once (the last checkpoint stands). A group that raises is retried from its checkpoint, up to
max_failures times. One group at a time gets resources.cpu threads; train.device=auto is the CPU unless
resources.gpu > 0, as Ray hides GPUs from a trial that asked for none.
"""

from __future__ import annotations

import contextlib
import platform
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import rundir
from study import console, cost, provenance, slices
from study.config import Config
from study.grid import placed, with_value
from study.preflight import Plan
from study.trial import Trial

NODE = platform.node()  # trials.csv's node_id: Tune's is a Ray node id; here the one host


class Stop(Exception):
    """Raised between epochs to end a group early; its checkpoint is saved first."""


@dataclass
class Watch:
    """Why a local study stops between epochs: its budget, or a signal."""

    budget: float | None  # seconds; None: no budget
    start: float = field(default_factory=time.monotonic)
    signals: list[int] = field(default_factory=list)
    spent: bool = False

    def stopping(self, next_s: float = 0.0) -> bool:
        """A signal came, or `next_s` more seconds (the next epoch's, as long as the last) would end past the budget."""
        if self.budget is not None and time.monotonic() - self.start + next_s > self.budget:
            self.spent = True
        return bool(self.signals) or self.spent


@contextlib.contextmanager
def watching(budget: float | None) -> Iterator[Watch]:
    """A Watch whose first SIGINT or SIGTERM is recorded (the study stops after the current epoch); a second one
    raises KeyboardInterrupt at once."""
    watch = Watch(budget)

    def handler(signum: int, frame: Any) -> None:
        watch.signals.append(signum)
        if len(watch.signals) > 1:
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield watch
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def result(configs: list[dict[str, Any]], history: list[dict[str, Any]], error: BaseException | None = None) -> rundir.Result:
    """A group's Result: its epochs as Tune keeps a trial's (the last one's metrics, and a frame of all)."""
    import pandas as pd

    return rundir.Result({"members": configs}, history[-1] if history else None,
                         pd.json_normalize(history, sep="/") if history else None, error)


def save(path: Path, trial: Trial, history: list[dict[str, Any]]) -> None:
    with rundir.atomic_path(path) as tmp:
        torch.save({"trial": trial.state_dict(), "history": history}, tmp)


def train(gid: str, configs: list[dict[str, Any]], folder: Path, watch: Watch, retries: int,
          report: Callable[[int], None]) -> rundir.Result:
    """Train one group to its last epoch (from its checkpoint, if it has one), or until the watch stops it;
    retried from its checkpoint `retries` times (-1: for ever) when it raises. `report` gets its epoch as it
    starts (or restarts) and after each epoch."""
    checkpoint, attempt = folder / f"{gid}.pt", 0
    while True:
        history: list[dict[str, Any]] = []
        try:
            trial = Trial(configs)
            if checkpoint.is_file():
                state = torch.load(checkpoint, map_location=trial.device)
                trial.load_state_dict(state["trial"])
                history = state["history"]
            report(len(history))
            last = time.monotonic()

            def on_epoch(reports: list) -> None:
                nonlocal last
                took, last = time.monotonic() - last, time.monotonic()
                epoch = reports[0].epoch
                history.append({**trial.metrics(reports), "node_id": NODE, "trial_id": gid})
                report(epoch)
                stop = epoch < configs[0]["train"]["epochs"] and watch.stopping(took)
                if stop or trial.checkpoint_due(epoch):
                    save(checkpoint, trial, history)
                if stop:
                    raise Stop

            trial.run(on_epoch)
        except Stop:
            return result(configs, history)
        except Exception as exc:  # as a Tune trial's error: retried, then recorded, and the study goes on
            if 0 <= retries <= attempt:
                traceback.print_exc()
                return result(configs, history, exc)
            attempt += 1
            print(f"group {gid} failed ({exc!r}): retry {attempt} from its last checkpoint", file=sys.stderr, flush=True)
            continue
        rundir.write_json({"history": history}, folder / f"{gid}.json")
        checkpoint.unlink(missing_ok=True)
        return result(configs, history)


def prepared(configs: list[dict[str, Any]], paths: dict[str, Any], gpu: float) -> list[dict[str, Any]]:
    """Member configs as this launch trains them: its PLACED paths (a resumed study), and train.device=auto
    on the CPU without a GPU request."""
    out = []
    for config in placed(configs, paths):
        if not gpu and config["train"]["device"] == "auto":
            config = with_value(config, "train.device", "cpu")
        out.append(config)
    return out


def run(cfg: Config, plan: Plan, groups: list[list[dict[str, Any]]], resources: dict[str, float], run_dir: Path,
        restore: bool) -> tuple[list[rundir.Result], str, console.Progress]:
    """Train the groups one after another (restore: those of the study held in run_dir, the finished ones
    skipped), shown on the study's progress line as Tune trials are; their results in plan order, how this
    launch ended (recorded in provenance.json) and the progress (what advanced of the groups it left partial)."""
    started = time.time()
    folder = run_dir / rundir.LOCAL
    folder.mkdir(exist_ok=True)
    if restore:
        groups = rundir.read_json(folder / rundir.LOCAL_GROUPS)
    else:
        rundir.write_json(groups, folder / rundir.LOCAL_GROUPS)
    paths = slices.placed(plan.base, plan.grids) if restore else {}
    threads = max(1, int(resources["cpu"]))
    torch.set_num_threads(threads)
    ids = [f"local_{i:05d}" for i in range(len(groups))]
    results = {gid: result(group, rundir.read_json(folder / f"{gid}.json")["history"])
               for gid, group in zip(ids, groups) if (folder / f"{gid}.json").is_file()}
    epochs = {gid: group[0]["train"]["epochs"] for gid, group in zip(ids, groups)}
    work = {gid: cost.examples(group[0]) * len(group) for gid, group in zip(ids, groups)}  # what the ETA weighs
    progress = console.Progress(len(groups))
    earlier = {gid: console.TrialState("done", epochs[gid], epochs[gid], work[gid]) for gid in results}

    def reporter(gid: str, status: str = "running") -> Callable[[int], None]:
        def report(epoch: int) -> None:  # the groups finished before this launch go with the first report
            progress.update({**earlier, gid: console.TrialState(status, epoch, epochs[gid], work[gid])})
            earlier.clear()
        return report

    watch = Watch(None)
    try:
        with watching(slices.seconds(cfg.budget)) as watch:
            for gid, group in zip(ids, groups):
                if gid in results:
                    continue
                if watch.stopping():
                    break
                results[gid] = train(gid, prepared(group, paths, resources["gpu"]), folder, watch, cfg.max_failures,
                                     reporter(gid))
                history = results[gid].metrics_dataframe
                epoch = 0 if history is None else len(history)
                if gid in rundir.finished_ids([results[gid]]):
                    reporter(gid, "done")(epoch)
                    rundir.write_results([results[g] for g in ids if g in results], plan.paths, run_dir,
                                         finished_only=True)
                elif results[gid].error is not None:
                    reporter(gid, "failed")(epoch)
        if earlier:  # every group had finished before this launch: no report carried them to the line
            progress.update(earlier)
    except KeyboardInterrupt:  # a second signal: each group's last checkpoint stands
        progress.close()
        record(run_dir, started, threads, resources["gpu"], "interrupted")
        done = len(rundir.finished_ids(results.values()))
        raise slices.Interrupted((watch.signals or [signal.SIGINT])[-1], run_dir, done, len(groups)) from None
    progress.close()
    ordered = [results[gid] for gid in ids if gid in results]
    done = len(rundir.finished_ids(ordered))
    outcome = "interrupted" if watch.signals else "budget spent" if watch.spent and done < len(groups) else "finished"
    record(run_dir, started, threads, resources["gpu"], outcome)
    for reason, count in rundir.failures(ordered).items():
        print(f"{count} trial(s) failed: {reason}", file=sys.stderr, flush=True)
    if watch.signals:
        raise slices.Interrupted(watch.signals[0], run_dir, done, len(groups))
    return ordered, outcome, progress


def record(run_dir: Path, started: float, threads: int, gpu: float, outcome: str) -> None:
    """provenance.json's entry for this launch: its threads, or the one GPU it trained on."""
    provenance.record(run_dir, started, {"CPU": threads, "GPU": 1.0 if gpu else 0.0}, gpu, outcome, runner="local")
