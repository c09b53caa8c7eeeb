"""What the tests that run the launcher share: the one `launch()` of a real `python -m study.launch` process,
the tiny study of the bad-input tests and their check that bad input is one line and exit 2, and `launched()`:
study.launch.main in this process, with what stdout and stderr held at each flush."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from study import launch as launcher
from tests.conftest import REPO

LAUNCHER = [sys.executable, "-m", "study.launch"]  # the real entry point, for processes a test starts itself
# A study that would take seconds: bad-input tests add the one override they test.
SMOKE = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.noise.alpha=[0]", "grid.model.arch=[perceptron]",
         "grid.train.lr=[0.1]", "data.n_clean=500", "data.n_test=500", "train.epochs=1"]


def launch(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m study.launch <args>` from the repository root, run to its end: its exit code, stdout, stderr."""
    return subprocess.run([*LAUNCHER, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def fails(argv: list[str], capsys: pytest.CaptureFixture[str], run: Path | None = None) -> str:
    """The launcher (in this process) refuses argv: exit 2 and one line on stderr, which is returned. With `run`,
    argv gets run_dir=<run>, and nothing is written there."""
    assert launcher.main([*argv, *([f"run_dir={run}"] if run else [])]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in captured.out + captured.err, err
    assert run is None or not run.exists()
    return err


class Output(io.StringIO):
    """Where a progress line or printed line goes: a terminal or not (a log file), and what it held each time it was
    flushed (a log file is block-buffered: a line not flushed stays unseen)."""

    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.terminal, self.flushed = tty, []

    def isatty(self) -> bool:
        return self.terminal

    def flush(self) -> None:
        self.flushed.append(self.getvalue())
        super().flush()


@dataclass
class Launch:
    """What study.launch.main did in this process: its exit code, stdout and stderr, and what each held at every
    flush (a log file shows no more)."""

    code: int
    out: str
    err: str
    out_flushed: list[str]
    err_flushed: list[str]

    def said(self, line: str) -> bool:
        """`line` was flushed to stdout as it was printed (a job's log shows it at once)."""
        return any(text.endswith(line + "\n") for text in self.out_flushed)

    def warned(self, line: str) -> bool:
        """`line` was flushed to stderr as it was printed."""
        return any(text.endswith(line + "\n") for text in self.err_flushed)


def launched(argv: list[str]) -> Launch:
    """study.launch.main(argv) in this process, stdout and stderr block-buffered (as a log file)."""
    out, err = Output(), Output()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = launcher.main(argv)
    return Launch(code, out.getvalue(), err.getvalue(), out.flushed, err.flushed)
