"""A run dir as one file that travels to another machine, and back; or its small result files alone
(the command: study.pack).

The archive holds the run dir's files, Tune's experiment state and every checkpoint; TensorBoard's event
files (Tune's bulky per-trial logs, a copy of result.json) only with --logs. Names are relative to the run
dir, so it unpacks under any path; `resume=<dir>` continues it there. Every output appears whole or not at
all. .tar.zst needs the `zstd` program.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import rundir
from errors import UsageError

FORMATS = (".tar.gz", ".tar.zst")
LOGS = "events.out.tfevents."  # TensorBoard files Tune writes beside result.json
SMALL = (rundir.STUDY, rundir.TRIALS, rundir.EPOCHS, rundir.SUMMARY, "claims.md", "claims.csv", rundir.PROVENANCE)
SKIPPED = (rundir.LOCK,)  # the launcher's lock: this machine's only


def suffix(archive: Path) -> str:
    for fmt in FORMATS:
        if archive.name.endswith(fmt):
            if fmt == ".tar.zst" and shutil.which("zstd") is None:
                raise UsageError(f"{archive}: .tar.zst needs the zstd program, not found on PATH (apt install zstd); "
                                 "or write a .tar.gz")
            return fmt
    raise UsageError(f"{archive} is invalid: an archive must end in {' or '.join(FORMATS)}")


@contextlib.contextmanager
def stream(path: Path, fmt: str, mode: str) -> Iterator[IO[bytes]]:
    """The raw tar stream of an archive file: gzip by Python, zstd by its program."""
    if fmt == ".tar.gz":
        yield path
        return
    args = ["zstd", "-q", "-f", "-o", str(path)] if mode == "w" else ["zstd", "-q", "-dc", str(path)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE if mode == "w" else None,
                            stdout=None if mode == "w" else subprocess.PIPE)
    pipe = proc.stdin if mode == "w" else proc.stdout
    try:
        yield pipe
    finally:
        pipe.close()
        if proc.wait() != 0:
            raise UsageError(f"{path}: zstd failed (exit {proc.returncode})")


def open_tar(path: Path | IO[bytes], fmt: str, mode: str) -> tarfile.TarFile:
    if fmt == ".tar.gz":
        return tarfile.open(path, f"{mode}:gz")
    return tarfile.open(fileobj=path, mode=f"{mode}|")


def pack(run_dir: Path, archive: Path, logs: bool = False) -> int:
    """Write the archive atomically; the number of files in it."""
    fmt = suffix(archive)
    rundir.check_stopped(run_dir)
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name not in SKIPPED
                   and (logs or not p.name.startswith(LOGS)))
    with rundir.atomic_path(archive) as tmp, stream(tmp, fmt, "w") as out, open_tar(out, fmt, "w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(run_dir)))
    return len(files)


def as_new(folder: Path) -> None:
    """Give a folder and everything under it the modes this user's new ones get (0777 or 0666 & ~umask):
    mkdtemp makes 0700, tar keeps the modes it was packed with, and a lab reads studies on shared storage."""
    mask = rundir.umask()
    for path in [folder, *(p for p in folder.rglob("*") if not p.is_symlink())]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def unpack(archive: Path, target: Path) -> int:
    """Extract into a new folder `target` (made whole, by renaming a sibling temp folder); the number of files."""
    fmt = suffix(archive)
    if not archive.is_file():
        raise UsageError(f"{archive} is invalid: it must be an archive file")
    if target.exists():
        raise UsageError(f"{target} exists: unpack into a new folder (it becomes the run dir)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        try:
            with stream(archive, fmt, "r") as raw, open_tar(raw, fmt, "r") as tar:
                tar.extractall(tmp, filter="data")  # no absolute names, no links out of the folder
        except (tarfile.TarError, EOFError) as exc:  # not a tar, cut short, or a member outside the folder
            raise UsageError(f"{archive} cannot be unpacked: {exc}") from None
        if not (tmp / rundir.STUDY).is_file():
            raise UsageError(f"{archive} holds no run dir: it has no {rundir.STUDY} at its top")
        as_new(tmp)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sum(p.is_file() for p in target.rglob("*"))


def small(run_dir: Path, target: Path) -> list[str]:
    """Copy the small result files (SMALL and the figures) into `target`, replacing what an earlier copy put
    there; their names."""
    rundir.check_stopped(run_dir)
    names = sorted(p.name for p in run_dir.iterdir() if p.is_file() and (p.name in SMALL or p.suffix == ".png"))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    old = target.with_name(f".{target.name}.old")
    try:
        for name in names:
            shutil.copy2(run_dir / name, tmp / name)
        as_new(tmp)
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return names
