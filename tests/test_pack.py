"""study.pack (rundir.pack) on a run dir made by hand: the archive round-trips every file byte for byte under another path
(TensorBoard logs only with --logs, never the lock), --small copies exactly the result files, and bad input
is one line, exit 2, with nothing written."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest

from rundir.pack import SMALL
from study import pack

FILES = {
    "study.json": b'{"exp": "uniform_mnist"}', "trials.csv": b"alpha,lr\n0,0.1\n", "epochs.csv": b"epoch\n1\n",
    "summary.csv": b"alpha\n0\n", "fig1.png": b"\x89PNG", "claims.md": b"# claims", "claims.csv": b"figure\n",
    "provenance.json": b"{}", "confusion.npy": b"\x93NUMPY",
    "tune/experiment_state-1.json": b"{}", "tune/tuner.pkl": b"\x80\x04",
    "tune/study_trial_a_00000/result.json": b'{"epoch": 1}\n',
    "tune/study_trial_a_00000/checkpoint_000000/trial.pt": os.urandom(4096),
    "tune/study_trial_a_00000/events.out.tfevents.1.vm": b"tb" * 1000,
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / "uniform_mnist-paper"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / ".lock").touch()  # left by a launcher that ended: not held
    return root


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fmt", [".tar.gz", ".tar.zst"])
@pytest.mark.parametrize("logs", [False, True])
def test_round_trip_at_another_path(fmt: str, logs: bool, run_dir: Path, tmp_path: Path) -> None:
    if fmt == ".tar.zst" and shutil.which("zstd") is None:
        pytest.skip("no zstd program")
    archive = tmp_path / f"run{fmt}"
    assert pack.main([str(run_dir), str(archive), *(["--logs"] if logs else [])]) == 0
    moved = tmp_path / "elsewhere" / "deep" / "run"
    assert pack.main(["--unpack", str(archive), str(moved)]) == 0
    want = {k: v for k, v in FILES.items() if logs or "tfevents" not in k}
    assert tree(moved) == want
    assert [p.name for p in moved.parent.iterdir()] == ["run"]  # no temp folder left beside it


def test_small_copies_exactly_the_result_files(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "paper" / "uniform_mnist"
    target.mkdir(parents=True)
    (target / "stale.csv").write_text("from an earlier copy")
    assert pack.main(["--small", str(run_dir), str(target)]) == 0
    assert sorted(tree(target)) == sorted([*SMALL, "fig1.png"])
    assert tree(target) == {k: v for k, v in FILES.items() if k in tree(target)}
    assert sorted(p.name for p in target.parent.iterdir()) == ["uniform_mnist"]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_input(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pack.main([str(run_dir), str(tmp_path / "run.zip")]) == 2
    assert one_line(capsys) == f"error: {tmp_path / 'run.zip'} is invalid: an archive must end in .tar.gz or .tar.zst"
    assert pack.main([str(tmp_path), str(tmp_path / "x.tar.gz")]) == 2
    assert "has no study.json" in one_line(capsys)
    archive = tmp_path / "run.tar.gz"
    assert pack.main([str(run_dir), str(archive)]) == 0
    assert pack.main(["--unpack", str(archive), str(run_dir)]) == 2
    assert "exists: unpack into a new folder" in one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.tar.gz", "runs"]  # nothing half-written


def test_a_running_study_is_not_packed(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fd = os.open(run_dir / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as rundir.lock holds it while the study runs
    try:
        assert pack.main([str(run_dir), str(tmp_path / "run.tar.gz")]) == 2
    finally:
        os.close(fd)
    assert "is in use" in one_line(capsys)
    assert not (tmp_path / "run.tar.gz").exists()


def modes(folder: Path) -> dict[str, int]:
    """The permission bits of a folder and of everything under it, by relative name ('.': the folder)."""
    return {str(p.relative_to(folder)): p.stat().st_mode & 0o7777 for p in [folder, *folder.rglob("*")]}


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_what_pack_small_and_unpack_write_has_the_modes_of_a_new_file(mask: int, run_dir: Path, tmp_path: Path) -> None:
    """Every file and folder they write is as this user's umask makes a new one (files 0666 & ~umask, folders
    0777 & ~umask), whatever the modes in the run dir or the archive: a lab reads a study on shared storage."""
    for path in [run_dir / "trials.csv", run_dir / "tune" / "tuner.pkl"]:
        path.chmod(0o600)  # as mkstemp leaves a file
    (run_dir / "tune").chmod(0o700)  # as mkdtemp leaves a folder
    file_mode, folder_mode = 0o666 & ~mask, 0o777 & ~mask
    previous = os.umask(mask)
    try:
        archive = tmp_path / "out" / "run.tar.gz"
        archive.parent.mkdir()
        assert pack.main([str(run_dir), str(archive)]) == 0
        unpacked = tmp_path / "lab" / "run"
        assert pack.main(["--unpack", str(archive), str(unpacked)]) == 0
        small = tmp_path / "paper" / "uniform_mnist"
        assert pack.main(["--small", str(run_dir), str(small)]) == 0
    finally:
        os.umask(previous)
    assert archive.stat().st_mode & 0o7777 == file_mode
    for folder in (unpacked, small):
        got = modes(folder)
        want = {name: folder_mode if (folder / name).is_dir() else file_mode for name in got}
        assert got == want, folder
    assert (tmp_path / "lab").stat().st_mode & 0o7777 == folder_mode  # a parent made on the way


def test_help_names_the_command_and_each_option(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit) as done:
        pack.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m study.pack [-h] [--unpack | --small] [--logs] source target\n\n"
                          "The run dir as one file that travels to another machine, and back; or its small result "
                          "files alone\n")
    for line in ("  source      a run dir (or, with --unpack, an archive)",
                 "  target      the archive (or, with --unpack and --small, a new folder)",
                 "  --unpack    extract an archive into a new run dir", "  --small     copy only the small result files",
                 "  --logs      keep Tune's TensorBoard event files"):
        assert line in out.splitlines()


def test_the_command_line_is_read_from_sys_argv_and_small_names_what_it_copied(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "small"
    monkeypatch.setattr("sys.argv", ["python -m study.pack", "--small", str(run_dir), str(target)])
    assert pack.main() == 0
    assert capsys.readouterr().out == f"{target}: {', '.join(sorted(tree(target)))}\n"


def test_an_archive_that_is_no_tar_or_reaches_outside_is_one_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import tarfile

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name in ("study.json", "../outside.txt"):
            member = tarfile.TarInfo(name)
            member.size = 2
            tar.addfile(member, io.BytesIO(b"{}"))
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    for archive, why in ((evil, "'../outside.txt' would be extracted to"), (junk, "not a gzip file")):
        assert pack.main(["--unpack", str(archive), str(tmp_path / "out" / "run")]) == 2
        assert one_line(capsys).startswith(f"error: {archive} cannot be unpacked: {why}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "junk.tar.gz", "out"]
    assert list((tmp_path / "out").iterdir()) == []  # no temp folder left
    assert not (tmp_path / "outside.txt").exists()
    assert pack.main(["--unpack", str(tmp_path / "none.tar.gz"), str(tmp_path / "x")]) == 2
    assert one_line(capsys) == f"error: {tmp_path / 'none.tar.gz'} is invalid: it must be an archive file"


def test_an_archive_without_a_run_dir_and_zstd_missing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import tarfile

    bare = tmp_path / "bare.tar.gz"
    with tarfile.open(bare, "w:gz") as tar:
        tar.add(run_dir / "trials.csv", arcname="trials.csv")
    assert pack.main(["--unpack", str(bare), str(tmp_path / "run")]) == 2
    assert one_line(capsys) == f"error: {bare} holds no run dir: it has no study.json at its top"
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert pack.main([str(run_dir), str(tmp_path / "run.tar.zst")]) == 2
    assert one_line(capsys) == (f"error: {tmp_path / 'run.tar.zst'}: .tar.zst needs the zstd program, not found on "
                                "PATH (apt install zstd); or write a .tar.gz")
    assert pack.main([str(run_dir), str(tmp_path / "run.tar.gz")]) == 0  # gzip needs no program


def test_pack_leaves_the_logs_out_by_default_and_unpack_counts_the_files(run_dir: Path, tmp_path: Path) -> None:
    from rundir import pack as formats

    archive = tmp_path / "run.tar.gz"
    assert formats.pack(run_dir, archive) == len(FILES) - 1  # the TensorBoard events file stays behind
    (tmp_path / "existing").mkdir()  # unpacked beside a folder that exists: its parent
    assert formats.unpack(archive, tmp_path / "existing" / "run") == len(FILES) - 1
    assert formats.small(run_dir, tmp_path / "a" / "b" / "small") == sorted([*SMALL, "fig1.png"])
