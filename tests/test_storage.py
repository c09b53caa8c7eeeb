"""storage.root: every path a trial reads is made absolute under one root in the driver, explicit keys win,
and a root that cannot be written is one line (study.storage; the cluster check: tests/test_multinode.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from errors import UsageError
from loaders.datasets import user_dir
from study import storage
from study.config import Config, compose
from study.storage import trial_base


def base(monkeypatch: pytest.MonkeyPatch, *overrides: str, env: dict[str, str] | None = None) -> tuple[Config, dict]:
    for name in ("STUDY_ROOT", "STUDY_DATA_ROOT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    cfg, _ = compose(["exp=structured", "preset=smoke", *overrides])
    return cfg, trial_base(cfg)


def test_every_trial_path_is_under_the_named_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg, b = base(monkeypatch, f"storage.root={tmp_path}")
    assert b["data"]["root"] == str(tmp_path / "datasets")
    assert b["data"]["cache"] == str(tmp_path / "ffcv")
    assert b["noise"]["confusion"] == str(tmp_path / "confusion" / "mnist.npy")
    assert storage.runs_root(cfg) == tmp_path / "runs"


def test_study_root_names_the_root_and_explicit_keys_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data, cache, matrix = tmp_path / "d", tmp_path / "c", tmp_path / "m.npy"
    cfg, b = base(monkeypatch, f"data.cache={cache}", f"noise.confusion={matrix}",
                  env={"STUDY_ROOT": str(tmp_path / "root"), "STUDY_DATA_ROOT": str(data)})
    assert (b["data"]["root"], b["data"]["cache"], b["noise"]["confusion"]) == (str(data), str(cache), str(matrix))
    assert storage.runs_root(cfg) == tmp_path / "root" / "runs"
    cfg, b = base(monkeypatch, f"storage.root={tmp_path / 'key'}", env={"STUDY_ROOT": str(tmp_path / "env")})
    assert b["data"]["cache"] == str(tmp_path / "key" / "ffcv")  # the config key before the environment


def test_no_root_named_keeps_the_local_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, b = base(monkeypatch)
    assert b["data"]["cache"] == str(user_dir() / "ffcv") and b["data"]["root"] == str(user_dir() / "datasets")
    assert storage.runs_root(cfg) == Path("runs")  # runs stay beside you on a laptop


def test_a_root_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match=r"^storage.root='.*/file/root' is invalid: it must be a folder you may write"):
        storage.check_nodes(tmp_path / "file" / "root")


def test_a_node_that_reads_no_token_or_another_one_is_named(tmp_path: Path) -> None:
    """check_nodes' verdict on what each node read: the token the driver wrote, or the first node that read
    nothing, an empty file (a write not yet seen) or a stale token (another file system's copy) is named."""
    path = tmp_path / ".visible-abc"
    ok = [("head (10.0.0.1, node 1)", "abc", ""), ("gpu-1 (10.0.0.2, node 2)", "abc", "")]
    storage.check_answers(ok, "abc", tmp_path, path)
    for seen, why, shown in ((None, "No such file or directory", "No such file or directory"), ("", "", "another file"),
                             ("old", "", "another file"), ("abc\n", "", "another file")):
        answers = [*ok, ("gpu-2 (10.0.0.3, node 3)", seen, why), ("gpu-3 (10.0.0.4, node 4)", None, "Permission denied")]
        with pytest.raises(UsageError) as err:
            storage.check_answers(answers, "abc", tmp_path, path)
        assert str(err.value) == (f"storage.root={str(tmp_path)!r} is not visible on node gpu-2 (10.0.0.3, node 3) "
                                  f"({shown} at {path}): mount the shared file system there at the same path, or set "
                                  "storage.root (STUDY_ROOT) to a path every node sees")


def test_a_trial_on_a_node_that_reads_another_token_fails_in_one_line_naming_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(storage, "node_name", lambda: "gpu-7 (10.0.0.7, node 0123456789ab)")
    path, value = storage.token(tmp_path)
    assert Path(path).parent == tmp_path and Path(path).read_text() == value and len(value) == 32
    storage.check_token(path, value)  # this node sees the root: the trial goes on
    stale = tmp_path / "stale"
    stale.write_text("0" * 32)  # e.g. a local folder left at the mount point by an earlier launch
    with pytest.raises(storage.NotVisible, match=r"^storage.root='.*' is not visible on node gpu-7 \(10.0.0.7, node "
                                                 r"0123456789ab\) \(another file at .*stale\): mount the shared"):
        storage.check_token(str(stale), value)
    with pytest.raises(storage.NotVisible, match=r"on node gpu-7 .*\(No such file or directory at .*missing\)"):
        storage.check_token(str(tmp_path / "missing"), value)


def test_the_trainable_checks_the_token_before_anything_trains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from study import trainable

    monkeypatch.setattr(storage, "node_name", lambda: "late-node (10.0.0.9, node fedcba987654)")
    built = []
    monkeypatch.setattr(trainable, "Trial", lambda configs: built.append(configs))
    path, _ = storage.token(tmp_path)
    with pytest.raises(storage.NotVisible, match="not visible on node late-node"):
        trainable.trainable({"members": []}, token=(path, "f" * 32))
    assert built == []  # nothing was built, let alone trained
