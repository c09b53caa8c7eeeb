"""The run-dir format, owned here: file names, their columns, and atomic writes.

<run_dir>/study.json   what ran: experiment, preset, resolved config, figures to draw
<run_dir>/trials.csv   one row per trial: its config columns (COLUMNS), then TRIAL_METRICS
<run_dir>/epochs.csv   one row per trial and epoch: EPOCH_METRICS, trial_id, the config columns
<run_dir>/summary.csv, figN.png, claims.md   written by analysis.report
<run_dir>/provenance.json   where and how it ran: one entry per launch (device, commit, command, wall time,
                            GPU-minutes), and their totals

study/ writes these files and analysis/ reads them; this module imports neither (nor loaders/).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

STUDY = "study.json"
TRIALS = "trials.csv"
EPOCHS = "epochs.csv"
SUMMARY = "summary.csv"
PROVENANCE = "provenance.json"

COLUMNS = {"noise.alpha": "alpha", "model.arch": "arch", "train.lr": "lr", "train.batch_size": "batch_size",
           "train.seed": "seed", "noise.seed": "noise_seed", "data.order_seed": "order_seed",
           "data.subset_seed": "subset_seed"}  # config keys always in trials.csv
# Rows that differ only in these are replicates of one config (a run dir from before order_seed and
# subset_seed varied with the replicate lacks those columns).
REPLICATE_KEYS = ("seed", "noise_seed", "order_seed", "subset_seed")
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


def collect(results: Iterable[Any], paths: Iterable[str]) -> tuple[Any, Any]:
    """trials.csv and epochs.csv frames from Tune results (ray.tune.Result: config, metrics,
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
            row = {name: functools.reduce(lambda d, key: d[key], path.split("."), config)
                   for path, name in columns.items()}
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
