"""storage.root: every path a trial reads is made absolute under one root in the driver, explicit keys win,
and a root that cannot be written is one line (study.storage; the cluster check: tests/test_multinode.py)."""

from __future__ import annotations

import sys
import types
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
    # resolved: `make setup` links the cache's datasets/ to ../shared/datasets where that exists
    assert b["data"]["cache"] == str((user_dir() / "ffcv").resolve())
    assert b["data"]["root"] == str((user_dir() / "datasets").resolve())
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
    with pytest.raises(storage.NotVisible) as err:
        storage.check_token(str(stale), value)
    assert str(err.value) == storage.not_visible(tmp_path, "gpu-7 (10.0.0.7, node 0123456789ab)", "", stale)
    assert str(err.value).startswith(f"storage.root={str(tmp_path)!r} is not visible on node gpu-7 (10.0.0.7, node "
                                     f"0123456789ab) (another file at {stale}): mount the shared")
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


class FakeRay:
    """Ray's API as check_nodes uses it (nodes, remote, options, wait, get), on one machine: each node reads
    the token by running the real task, reads a stale copy, or never answers. The real cluster check is in
    tests/test_multinode.py (slow); this one pins down check_nodes' own logic in the fast suite."""

    def __init__(self, nodes: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
        self.nodes_, self.tasks, self.waited = nodes, [], None
        self.monkeypatch = monkeypatch
        module = types.ModuleType("ray")
        module.nodes, module.remote, module.wait, module.get = self.nodes, self.remote, self.wait, self.get
        strategies = types.ModuleType("ray.util.scheduling_strategies")
        strategies.NodeAffinitySchedulingStrategy = lambda node_id, soft: (node_id, soft)
        for name, mod in (("ray", module), ("ray.util", types.ModuleType("ray.util")),
                          ("ray.util.scheduling_strategies", strategies)):
            monkeypatch.setitem(sys.modules, name, mod)

    def nodes(self) -> list[dict]:
        return self.nodes_

    def remote(self, **resources):
        fake = self

        class Task:
            def options(self, scheduling_strategy):
                return types.SimpleNamespace(remote=lambda path: fake.run(resources, scheduling_strategy, path))

        def wrap(fn):
            fake.fn = fn
            return Task()
        return wrap

    def run(self, resources: dict, strategy: tuple, path: str) -> tuple:
        node = next(n for n in self.nodes_ if n["NodeID"] == strategy[0])
        self.tasks.append((resources, strategy, path))
        label = f"{node['NodeManagerHostname']} ({node['NodeManagerAddress']}, node {node['NodeID'][:12]})"
        if node["reads"] == "stale":
            return ("answer", (label, "0" * 32, ""))
        if node["reads"] == "late":
            return ("late", None)
        self.monkeypatch.setattr(storage, "node_name", lambda: label)
        return ("answer", self.fn(path))

    def wait(self, refs: list, num_returns: int, timeout: float) -> tuple[list, list]:
        self.waited = (num_returns, timeout)
        return [r for r in refs if r[0] == "answer"], [r for r in refs if r[0] == "late"]

    def get(self, refs: list) -> list:
        return [r[1] for r in refs]


def node(host: str, ip: str, node_id: str, reads: str = "token", alive: bool = True) -> dict:
    return {"NodeManagerHostname": host, "NodeManagerAddress": ip, "NodeID": node_id, "Alive": alive, "reads": reads}


def test_check_nodes_pins_one_read_to_each_alive_node_and_names_a_stale_or_silent_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    head, gpu = node("head", "10.0.0.1", "a" * 40), node("gpu-1", "10.0.0.2", "b" * 40)
    gone = node("gpu-0", "10.0.0.9", "c" * 40, reads="late", alive=False)  # dead nodes are not asked
    fake = FakeRay([head, gone, gpu], monkeypatch)
    path, value = storage.check_nodes(tmp_path / "lab" / "root")  # made, parents too
    assert Path(path).parent == tmp_path / "lab" / "root" and Path(path).read_text() == value and len(value) == 32
    assert fake.tasks == [({"num_cpus": 0, "max_retries": 0}, ("a" * 40, False), path),
                          ({"num_cpus": 0, "max_retries": 0}, ("b" * 40, False), path)]
    assert fake.waited == (2, storage.NODE_TIMEOUT_S)

    stale = node("gpu-2", "10.0.0.3", "0123456789abcdef", reads="stale")
    FakeRay([head, stale, gpu], monkeypatch)
    with pytest.raises(UsageError) as err:
        storage.check_nodes(tmp_path / "stale")
    (written,) = (tmp_path / "stale").glob(".visible-*")
    assert str(err.value).startswith(f"storage.root={str(tmp_path / 'stale')!r} is not visible on node gpu-2 "
                                     f"(10.0.0.3, node 0123456789ab) (another file at {written}): mount the shared")

    late = node("gpu-3", "10.0.0.4", "fedcba9876543210", reads="late")
    FakeRay([head, gpu, late], monkeypatch)
    with pytest.raises(UsageError) as err:
        storage.check_nodes(tmp_path / "root")
    assert str(err.value) == (f"storage.root={str(tmp_path / 'root')!r}: node gpu-3 (10.0.0.4, node fedcba987654) did "
                              "not answer within 120 s, so it is not known to see the root")


@pytest.fixture
def denied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths under /denied cannot be resolved, as behind a folder one may not search (root searches every folder,
    so the error is raised here rather than made with chmod)."""
    resolve = Path.resolve

    def guarded(self: Path, strict: bool = False) -> Path:
        if str(self).startswith("/denied"):
            raise PermissionError(13, "Permission denied", "/denied")
        return resolve(self, strict)
    monkeypatch.setattr(Path, "resolve", guarded)


@pytest.mark.parametrize("overrides, env, shown", [
    (["data.root=/denied/data"], {}, "data.root='/denied/data'"),
    ([], {"STUDY_DATA_ROOT": "/denied/env"}, "data.root='/denied/env'"),
    (["data.cache=/denied/cache"], {}, "data.cache='/denied/cache'"),
    (["noise.confusion=/denied/c.npy"], {}, "noise.confusion='/denied/c.npy'"),
    (["storage.root=/denied/root"], {}, "storage.root='/denied/root'"),
])
def test_a_path_that_cannot_be_resolved_is_one_line_naming_its_key(
        overrides: list[str], env: dict[str, str], shown: str, denied: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError) as err:
        base(monkeypatch, *overrides, env=env)
    assert str(err.value) == f"{shown} is invalid: it must be a path you may read (Permission denied: /denied)"


def test_each_path_a_trial_reads_is_absolute_and_annotation_names_are_kept(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDY_ROOT", raising=False)
    placed = lambda *argv: trial_base(compose(["exp=uniform_mnist", "preset=smoke", *argv])[0])  # noqa: E731
    got = placed("data.root=mine", "noise.matrix='~/m.npy'", "storage.root=lab")
    assert got["data"]["root"] == str(tmp_path / "mine")  # the root given, not datasets/ under the storage root
    assert got["data"]["cache"] == str(tmp_path / "lab" / "ffcv")
    assert got["noise"]["matrix"] == str(tmp_path / "home" / "m.npy")
    human = placed("noise.labels=cifar10n:aggre", "data.dataset=cifar10")
    assert human["noise"]["labels"] == "cifar10n:aggre"  # names annotations, not a file
    assert placed("noise.labels=votes.csv", "data.dataset=cifar10")["noise"]["labels"] == str(tmp_path / "votes.csv")
    assert placed("data.dataset=folder", "data.path=imgs")["data"]["path"] == str(tmp_path / "imgs")


def test_a_file_a_trial_reads_that_cannot_be_resolved_is_one_line_naming_its_key(denied: None) -> None:
    cfg, _ = compose(["exp=uniform_mnist", "preset=smoke", "noise.matrix=/denied/m.npy"])
    with pytest.raises(UsageError, match=r"^noise.matrix='/denied/m.npy' is invalid: it must be a path you may read"):
        trial_base(cfg)


def test_setup_links_the_data_under_an_existing_root_and_keeps_a_link_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDY_ROOT", str(tmp_path / "root"))
    (tmp_path / "root").mkdir()  # the storage root exists already, its datasets/ not yet
    (tmp_path / "shared").mkdir()
    assert storage.link_datasets(tmp_path / "shared") == (f"data root: {tmp_path / 'root' / 'datasets'} -> "
                                                         f"{tmp_path / 'shared'} (every command of this checkout reads it)")
    assert (tmp_path / "root" / "datasets").resolve() == tmp_path / "shared"
    line = storage.link_datasets(tmp_path / "other")  # a link to other data stays, and is said so
    assert line.startswith(f"data root: {tmp_path / 'root' / 'datasets'} exists, kept (the data beside the checkout, "
                           f"{tmp_path / 'other'}, is read only with STUDY_DATA_ROOT=")
    assert (tmp_path / "root" / "datasets").resolve() == tmp_path / "shared"
