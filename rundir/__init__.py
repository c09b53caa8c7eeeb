"""The run-dir format, owned here: file names, their columns, and atomic writes.

<run_dir>/study.json   what ran: experiment, preset, resolved config, figures to draw
<run_dir>/trials.csv   one row per trial: its config columns (COLUMNS), then TRIAL_METRICS
<run_dir>/epochs.csv   one row per trial and epoch: EPOCH_METRICS, trial_id, the config columns
<run_dir>/summary.csv, figN.png, claims.md   written by analysis.report
<run_dir>/provenance.json   where and how it ran: one entry per launch (device, commit, command, wall time,
                            GPU-minutes), and their totals
<run_dir>/confusion.npy     exp=confusion: the trials' test confusion matrices, summed
<run_dir>/.lock             held by the launcher while the study runs (removed as it ends): a second launcher or a
                            pack is refused
<run_dir>/tune/             Tune's experiment state and checkpoints (study.json lists its experiments)

study/ writes these files and analysis/ reads them; this module imports neither (nor loaders/).
rundir.pack carries a run dir to another machine as one file.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import functools
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import UsageError, invalid

STUDY = "study.json"
TRIALS = "trials.csv"
EPOCHS = "epochs.csv"
SUMMARY = "summary.csv"
PROVENANCE = "provenance.json"
CONFUSION = "confusion.npy"
LOCK = ".lock"
LOCAL, LOCAL_GROUPS = "local", "groups.json"  # runner=local's state: its folder, and the groups it plans in order

COLUMNS = {"noise.alpha": "alpha", "model.arch": "arch", "train.lr": "lr", "train.batch_size": "batch_size",
           "train.seed": "seed", "noise.seed": "noise_seed", "data.order_seed": "order_seed",
           "data.subset_seed": "subset_seed", "noise.matrix": "matrix",
           "noise.labels": "labels", "noise.draw": "draw"}  # config keys always in trials.csv (matrix, labels: the
# noise's file or CIFAR-10N kind; draw: a label per copy or one per image)
# Rows that differ only in these are replicates of one config (a run dir from before order_seed and
# subset_seed varied with the replicate lacks those columns).
REPLICATE_KEYS = ("seed", "noise_seed", "order_seed", "subset_seed")
BEFORE = {"matrix": math.nan, "labels": math.nan, "draw": "copy"}  # what a run from before these columns trained
# with (no noise file, a label per copy): read so, its rows pool with a newer run's of the same config
TRIAL_METRICS = ("trial_id", "group", "status", "epochs", "test_acc", "best_test_acc", "test_top5", "best_test_top5",
                 "train_loss", "images_per_s", "node_id", "val_acc", "best_val_acc")  # every trials.csv column that is no config key
EPOCH_METRICS = ("epoch", "train_loss", "test_acc", "test_top5", "images_per_s", "val_acc")
# val_acc: top-1 on the held-out clean split (data.n_val > 0); NaN when the study has none (n_val = 0) or
# reported none (a run from before val_acc existed)


def column(path: str) -> str:
    """The trials.csv column of a dotted config key: its short name, else its last part."""
    return COLUMNS.get(path, path.rsplit(".", 1)[-1])


def umask() -> int:
    """This process's umask (os.umask can only be read by setting it: set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; it replaces `path` only if the block succeeds, with the permissions
    the umask gives a new file (0666 & ~umask), as open() would."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600: the rest of a lab reads results on shared storage
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_csv(df: Any, path: Path) -> None:
    """A pandas DataFrame as CSV, atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_study(run_dir: Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / STUDY)


def read_trials(run_dir: Path) -> tuple[dict[str, Any], Any]:
    """A finished run's study.json and trials.csv (a pandas DataFrame), with BEFORE's columns where it lacks them."""
    import pandas as pd

    trials = pd.read_csv(Path(run_dir) / TRIALS)
    return read_study(run_dir), trials.assign(**{k: v for k, v in BEFORE.items() if k not in trials})


def named(root: Path, exp: str, preset: str) -> Path:
    """A new run dir's default path: <root>/<exp>-<preset>-<local time>."""
    return Path(root) / f"{exp}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_path(path: Path) -> None:
    """run_dir= is a folder, or a path whose first existing ancestor is one."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise invalid("run_dir", str(path), f"a folder or a path that does not exist yet ({p} is a file)")
            return


def check_study(run_dir: Path, key: str = "") -> None:
    """run_dir holds a study (its study.json); else one line, naming the key it came from."""
    if not (run_dir / STUDY).is_file():
        raise UsageError(f"{key + '=' if key else ''}{run_dir} is not a study run dir: it has no {STUDY}")


LOCKS: dict[Path, int] = {}  # run dir -> the open .lock this process holds


def lock(run_dir: Path) -> None:
    """Hold <run_dir>/.lock until unlock_all (or this process ends): a second launcher on the same run dir is
    refused."""
    if run_dir in LOCKS:
        return
    while True:
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"{run_dir} is in use: its study is still running (another launcher holds "
                             f"{run_dir / LOCK}); wait for it to end, or stop it (Ctrl-C) and resume then") from None
        try:
            if os.stat(run_dir / LOCK).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a .lock its holder removed as it ended: lock the one at the path now
    LOCKS[run_dir] = fd


def unlock_all() -> None:
    """Remove and release every .lock this process holds (removed first: a launcher that opened it meanwhile sees
    another file at the path, and locks that one)."""
    for run_dir, fd in list(LOCKS.items()):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(run_dir / LOCK)
        os.close(fd)
        del LOCKS[run_dir]


def check_stopped(run_dir: Path) -> None:
    """A stopped study run dir: it holds study.json and no launcher holds its lock."""
    check_study(run_dir)
    if (run_dir / LOCK).exists():
        with open(run_dir / LOCK) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UsageError(f"{run_dir} is in use: its study is still running; stop it (Ctrl-C, or a budget) "
                                 "and pack it then") from None


@dataclass
class Result:
    """What a trial (a group) left, as collect reads it: ray.tune.Result has these four attributes (runner=tune),
    and the local runner (study.local) makes these, so both runners write the same rows."""

    config: dict[str, Any]  # {"members": [config, ...]} or one config
    metrics: dict[str, Any] | None  # the last epoch's report, with trial_id; None before the first
    metrics_dataframe: Any  # one row per epoch reported (pandas), nested keys joined by "/"; None before the first
    error: BaseException | None = None


def collect(results: Iterable[Any], paths: Iterable[str]) -> tuple[Any, Any]:
    """trials.csv and epochs.csv frames from results (Result, or ray.tune.Result: config, metrics,
    metrics_dataframe, error); `paths` are the dotted config keys the grid varies.

    A Tune trial trains a group: its config is {"members": [config, ...]} (or one config) and each epoch
    reports member k's metrics as members/k/<metric>. Each member gets its own row; `group` is the Tune
    trial id, and a member's trial_id is <group>-<k>.
    """
    import pandas as pd

    columns = {p: column(p) for p in dict.fromkeys([*COLUMNS, *paths])}
    trials, epochs = [], []
    for result in results:
        if not result.config:  # a trial an interrupted study never started: no config, no metrics
            continue
        group = result.metrics.get("trial_id") if result.metrics else None
        history = result.metrics_dataframe
        if history is not None and "epoch" in history:  # a retried trial may report an epoch twice
            history = history.drop_duplicates("epoch", keep="last")
        for k, config in enumerate(result.config.get("members") or [result.config]):
            # .get: a trial of a study started before a column's key existed has no value for it
            row = {name: functools.reduce(lambda d, key: d.get(key) if isinstance(d, dict) else None, path.split("."),
                                          config) for path, name in columns.items()}
            prefix = f"members/{k}/"
            done = history is not None and f"{prefix}test_acc" in history
            mine = (history.reindex(columns=[prefix + m for m in EPOCH_METRICS]).set_axis(list(EPOCH_METRICS), axis=1)
                    if done else None)  # reindex: a metric never reported (val_acc before it existed) is NaN
            last = mine.iloc[-1] if done else {}
            row.update(
                trial_id=f"{group}-{k}" if group else None, group=group,
                status="error" if result.error else "ok",
                epochs=int(last["epoch"]) if done else 0,
                test_acc=last["test_acc"] if done else float("nan"),
                best_test_acc=mine["test_acc"].max() if done else float("nan"),
                test_top5=last["test_top5"] if done else float("nan"),
                best_test_top5=mine["test_top5"].max() if done else float("nan"),
                train_loss=last["train_loss"] if done else float("nan"),
                images_per_s=mine["images_per_s"].mean() if done else float("nan"),
                node_id=history["node_id"].iloc[-1] if done else None,
                val_acc=last["val_acc"] if done else float("nan"),
                best_val_acc=mine["val_acc"].max() if done else float("nan"),
            )
            trials.append(row)
            if done:
                epochs.append(mine.assign(trial_id=row["trial_id"], group=group, **{c: row[c] for c in columns.values()}))
    epochs_df = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame()
    return pd.DataFrame(trials, columns=[*columns.values(), *TRIAL_METRICS]), epochs_df


def finished_ids(results: Iterable[Any]) -> set[str]:
    """The ids of the Tune trials (groups) that ran every epoch without an error."""
    done = set()
    for r in results:
        config = (r.config or {}).get("members", [r.config])[0] if r.config else None
        if config and not r.error and r.metrics and r.metrics.get("epoch") == config["train"]["epochs"]:
            done.add(r.metrics["trial_id"])
    return done


def write_results(results: list[Any], paths: Iterable[str], run_dir: Path, finished_only: bool = False) -> None:
    """trials.csv (with finished_only, the trials that ran every epoch) and epochs.csv (every epoch reported)."""
    trials, epochs = collect(results, paths)
    if finished_only:
        trials = trials[trials["group"].isin(finished_ids(results))]
    write_csv(trials, run_dir / TRIALS)
    write_csv(epochs, run_dir / EPOCHS)


def failures(results: Iterable[Any]) -> collections.Counter[str]:
    """Each distinct reason trials failed (the last line of its error, e.g. a GPU node without CUDA), counted."""
    return collections.Counter(
        ([line.strip() for line in str(getattr(r.error, "cause", None) or r.error).splitlines() if line.strip()]
         or [type(r.error).__name__])[-1] for r in results if r.error)


def save_confusion(results: Iterable[Any], run_dir: Path, copy_to: Path) -> int:
    """exp=confusion: the trials' test confusion matrices summed into run_dir/confusion.npy and copied to
    copy_to (noise.confusion, where exp=structured reads it), atomically; the number of trials summed."""
    import numpy as np

    matrices = [np.asarray(r.metrics["confusion"]) for r in results if not r.error and "confusion" in (r.metrics or {})]
    if matrices:
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        for path in (run_dir / CONFUSION, copy_to):  # atomic: exp=structured may read the shared copy any time
            with atomic_path(path) as tmp:
                np.save(tmp, np.sum(matrices, axis=0))
    return len(matrices)
