"""The results files of a run dir, and atomic writes for them.

<run_dir>/study.json   what ran: experiment, preset, resolved config, figures to draw
<run_dir>/trials.csv   one row per trial: config columns, final and best test accuracy
<run_dir>/epochs.csv   one row per trial and epoch
<run_dir>/summary.csv, figN.png   written by analysis.report
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

STUDY = "study.json"
TRIALS = "trials.csv"
EPOCHS = "epochs.csv"
SUMMARY = "summary.csv"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def read_study(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / STUDY).read_text())
