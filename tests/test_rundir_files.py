"""Run-dir files (rundir): the permissions the umask gives (issue 11), trials.csv and epochs.csv by hand from Tune
results, the finished trials, failure reasons, the summed confusion matrix, and the names and checks of a run dir."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

import rundir


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_follow_the_umask(mask: int, tmp_path: Path) -> None:
    old = os.umask(mask)
    try:
        rundir.write_json({"a": 1}, tmp_path / "study.json")
        rundir.write_csv(pd.DataFrame({"a": [1]}), tmp_path / "trials.csv")
        with rundir.atomic_path(tmp_path / "fig.png") as tmp:
            tmp.write_bytes(b"x")
        assert rundir.umask() == mask  # reading the umask leaves it as it was
    finally:
        os.umask(old)
    for name in ("study.json", "trials.csv", "fig.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "study.json", "trials.csv"]  # no temp files left


def test_collect_skips_trials_an_interrupted_study_never_started() -> None:
    from types import SimpleNamespace

    unstarted = SimpleNamespace(config=None, metrics=None, metrics_dataframe=None, error=None)
    pending = SimpleNamespace(config={"members": [{"data": {"order_seed": 0, "subset_seed": 0}, "noise": {"alpha": 0, "seed": 0}, "model": {"arch": "mlp1"},
                                                   "train": {"lr": 0.1, "batch_size": 128, "seed": 0}}]},
                              metrics=None, metrics_dataframe=None, error=None)
    trials, epochs = rundir.collect([unstarted, pending], [])
    assert len(trials) == 1 and trials["epochs"].tolist() == [0] and epochs.empty


def member(lr: float, seed: int = 0, delta: float = 0.0) -> dict:
    return {"data": {"order_seed": 3, "subset_seed": 4}, "noise": {"alpha": 5.0, "seed": seed, "delta": delta,
                                                                   "matrix": None, "labels": "own.npy", "draw": "image"},
            "model": {"arch": "conv4"}, "train": {"lr": lr, "batch_size": 128, "seed": seed}}


def history(epochs: list[int], node: str = "n1", val: bool = True) -> pd.DataFrame:
    """Tune's metrics_dataframe of a group of two members: member k's test_acc at epoch e is e / 10 + k / 100."""
    rows = []
    for e in epochs:
        row = {"epoch": e, "trial_id": "g1", "node_id": node}
        for k in range(2):
            row.update({f"members/{k}/epoch": e, f"members/{k}/train_loss": 2.0 - e / 10, f"members/{k}/test_acc": e / 10 + k / 100,
                        f"members/{k}/test_top5": 0.5 + e / 100, f"members/{k}/images_per_s": 100.0 * e})
            if val:
                row[f"members/{k}/val_acc"] = e / 20
        rows.append(row)
    return pd.DataFrame(rows)


def test_collect_by_hand() -> None:
    """Two members of one Tune trial over three epochs (epoch 2 reported twice by a retry, with other values
    the second time), and a failed single trial: every trials.csv and epochs.csv value, in column order."""
    from types import SimpleNamespace

    frame = history([1, 2, 2, 3])
    frame.loc[1, "members/0/test_acc"] = 0.99  # the first report of epoch 2, superseded by the retry's
    group = SimpleNamespace(config={"members": [member(0.1, 0, 0.5), member(0.5, 1, 0.5)]},
                            metrics={"trial_id": "g1", "epoch": 3}, metrics_dataframe=frame, error=None)
    failed = SimpleNamespace(config=member(1.0, 2), metrics={"trial_id": "g2"}, metrics_dataframe=None,
                             error=RuntimeError("boom"))
    trials, epochs = rundir.collect([group, failed], ["noise.delta", "train.lr"])
    assert list(trials.columns) == ["alpha", "arch", "lr", "batch_size", "seed", "noise_seed", "order_seed",
                                    "subset_seed", "matrix", "labels", "draw", "delta", *rundir.TRIAL_METRICS]
    first = trials.iloc[0].to_dict()
    assert first == {"alpha": 5.0, "arch": "conv4", "lr": 0.1, "batch_size": 128, "seed": 0, "noise_seed": 0,
                     "order_seed": 3, "subset_seed": 4, "matrix": None, "labels": "own.npy", "draw": "image",
                     "delta": 0.5, "trial_id": "g1-0", "group": "g1",
                     "status": "ok", "epochs": 3, "test_acc": 0.3, "best_test_acc": 0.3, "test_top5": 0.53,
                     "best_test_top5": 0.53, "train_loss": pytest.approx(1.7), "images_per_s": pytest.approx(200.0),
                     "node_id": "n1", "val_acc": 0.15, "best_val_acc": 0.15}
    assert trials.iloc[1][["trial_id", "lr", "seed", "test_acc"]].tolist() == ["g1-1", 0.5, 1, pytest.approx(0.31)]
    third = trials.iloc[2]
    assert (third["trial_id"], third["group"], third["status"], third["epochs"]) == ("g2-0", "g2", "error", 0)
    assert pd.isna(third["test_acc"]) and pd.isna(third["best_val_acc"]) and pd.isna(third["node_id"])
    assert len(epochs) == 6 and epochs["epoch"].tolist() == [1, 2, 3] * 2  # the retried epoch once, its last report
    assert epochs["test_acc"].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.11, 0.21, 0.31])
    assert epochs["trial_id"].tolist() == ["g1-0"] * 3 + ["g1-1"] * 3 and set(epochs["group"]) == {"g1"}
    assert epochs["lr"].tolist() == [0.1] * 3 + [0.5] * 3 and set(epochs["delta"]) == {0.5}
    assert list(epochs.columns[:len(rundir.EPOCH_METRICS)]) == list(rundir.EPOCH_METRICS)


def test_val_acc_missing_from_an_older_run_is_nan() -> None:
    from types import SimpleNamespace

    old = SimpleNamespace(config={"members": [member(0.1), member(0.5)]}, metrics={"trial_id": "g1"},
                          metrics_dataframe=history([1, 2], val=False), error=None)
    trials, epochs = rundir.collect([old], [])
    assert trials["val_acc"].isna().all() and trials["best_val_acc"].isna().all() and epochs["val_acc"].isna().all()
    assert trials["test_acc"].tolist() == pytest.approx([0.2, 0.21])


def test_finished_ids_failures_and_write_results(tmp_path: Path) -> None:
    from types import SimpleNamespace

    def result(tid: str, epoch: int, error: Exception | None = None) -> SimpleNamespace:
        config = member(0.1)
        config["train"]["epochs"] = 3
        return SimpleNamespace(config={"members": [config, config]}, metrics={"trial_id": tid, "epoch": epoch},
                               metrics_dataframe=history(list(range(1, epoch + 1))), error=error)

    results = [result("g1", 3), result("g2", 2), result("g3", 3, RuntimeError("x")), result("g4", 3),
               SimpleNamespace(config=None, metrics=None, metrics_dataframe=None, error=None)]
    assert rundir.finished_ids(results) == {"g1", "g4"}
    rundir.write_results(results, [], tmp_path, finished_only=True)
    assert pd.read_csv(tmp_path / rundir.TRIALS)["group"].tolist() == ["g1", "g1", "g4", "g4"]
    assert len(pd.read_csv(tmp_path / rundir.EPOCHS)) == 2 * (3 + 2 + 3 + 3)  # every epoch reported
    rundir.write_results(results, [], tmp_path)
    assert pd.read_csv(tmp_path / rundir.TRIALS)["group"].tolist() == ["g1", "g1", "g2", "g2", "g3", "g3", "g4", "g4"]
    cuda = RuntimeError("Traceback (most recent call last):\n  ...\nstudy.trainable.NoCuda: no CUDA on node a\n\n")
    failed = [SimpleNamespace(error=cuda), SimpleNamespace(error=RuntimeError("x\nout of memory")),
              SimpleNamespace(error=None), SimpleNamespace(error=cuda), SimpleNamespace(error=KeyError())]
    assert rundir.failures(failed) == {"study.trainable.NoCuda: no CUDA on node a": 2, "out of memory": 1, "KeyError": 1}


def test_save_confusion_sums_the_trials_and_copies(tmp_path: Path) -> None:
    import numpy as np
    from types import SimpleNamespace

    results = [SimpleNamespace(error=None, metrics={"confusion": [[1, 2], [3, 4]]}),
               SimpleNamespace(error=RuntimeError(), metrics={"confusion": [[100, 0], [0, 100]]}),
               SimpleNamespace(error=None, metrics={"confusion": [[10, 0], [0, 20]]}),
               SimpleNamespace(error=None, metrics={"test_acc": 0.5}), SimpleNamespace(error=None, metrics=None)]
    copy_to = tmp_path / "shared" / "confusion" / "mnist.npy"
    assert rundir.save_confusion(results, tmp_path, copy_to) == 2
    for path in (tmp_path / rundir.CONFUSION, copy_to):
        assert np.load(path).tolist() == [[11, 2], [3, 24]]
    assert rundir.save_confusion(results[1:2], tmp_path / "none", tmp_path / "none.npy") == 0
    assert not (tmp_path / "none.npy").exists()


def test_names_paths_and_checks(tmp_path: Path) -> None:
    from errors import UsageError

    assert rundir.column("noise.alpha") == "alpha" and rundir.column("data.subset_seed") == "subset_seed"
    assert rundir.column("noise.delta") == "delta" and rundir.column("budget") == "budget"
    named = rundir.named(tmp_path, "uniform_mnist", "paper")
    assert named.parent == tmp_path and named.name.startswith("uniform_mnist-paper-20") and len(named.name) == 35
    (tmp_path / "file").write_text("")
    rundir.check_path(tmp_path / "new" / "deeper")
    with pytest.raises(UsageError, match=rf"^run_dir='{tmp_path}/file/run' is invalid: it must be a folder or a path "
                                         rf"that does not exist yet \({tmp_path}/file is a file\)$"):
        rundir.check_path(tmp_path / "file" / "run")
    with pytest.raises(UsageError, match=rf"^resume={tmp_path} is not a study run dir: it has no study.json$"):
        rundir.check_study(tmp_path, "resume")
    with pytest.raises(UsageError, match=rf"^{tmp_path} is not a study run dir"):
        rundir.check_study(tmp_path)
    rundir.write_json({"exp": "x", "when": Path("/p")}, tmp_path / rundir.STUDY)
    assert rundir.read_study(tmp_path) == {"exp": "x", "when": "/p"}
    rundir.check_stopped(tmp_path)  # no lock file: stopped
    rundir.lock(tmp_path)
    try:
        rundir.lock(tmp_path)  # held by this process already: nothing more
        with pytest.raises(UsageError, match="is in use: its study is still running; stop it"):
            rundir.check_stopped(tmp_path)
    finally:
        os.close(rundir.LOCKS.pop(tmp_path))
    rundir.check_stopped(tmp_path)


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path: Path) -> None:
    (tmp_path / "trials.csv").write_text("old")
    with pytest.raises(RuntimeError):
        with rundir.atomic_path(tmp_path / "trials.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert (tmp_path / "trials.csv").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_provenance_records_each_launch_and_totals_its_minutes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """study.provenance.record by hand: three launches of one study (Tune on 2 CPUs, runner=local on one thread,
    Tune on 4 H100s for trials asking half a GPU), each with its device, cores or GPUs, wall time and minutes; the
    totals over the launches, with one launch from before provenance.json had CPU-minutes. A CPU study has
    CPU-minutes (wall x cores), a GPU study GPU-minutes (wall x GPUs). Walls are not whole seconds, so each rounding
    shows."""
    import platform
    import subprocess
    import sys
    import time
    from types import SimpleNamespace

    import ray
    import torch

    from study import provenance

    older = {"ended": "1970-01-01T00:00:00Z", "outcome": "finished", "device": "1 x A100", "gpus": 1.0,
             "wall_s": 6.0, "gpu_minutes": 0.1}  # written before launches had cpu_minutes
    rundir.write_json({"launches": [older]}, tmp_path / rundir.PROVENANCE)
    clock = [1000.3456]
    monkeypatch.setattr(provenance, "time", SimpleNamespace(time=lambda: clock[0], strftime=time.strftime,
                                                            gmtime=lambda: time.gmtime(86400)))
    monkeypatch.setattr(sys, "argv", ["launch.py", "exp=uniform_mnist", "budget=2h"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    provenance.record(tmp_path, 880.0, {"CPU": 2.0}, 0, "budget spent")
    clock[0] = 2000.7788
    provenance.record(tmp_path, 1940.0, {"CPU": 1.0, "GPU": 0.0}, 0, "finished", runner="local")
    clock[0] = 3001.2345
    provenance.record(tmp_path, 2700.0, {"CPU": 16.0, "GPU": 4.0, "accelerator_type:H100": 1.0}, 0.5, "interrupted")
    got = rundir.read_json(tmp_path / rundir.PROVENANCE)
    lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    cpu = lines[0].split(":", 1)[1].strip() if lines else platform.processor() or platform.machine()
    assert provenance.cpu_name() == cpu
    head = subprocess.run(["git", "-C", str(provenance.REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    same = {"ended": "1970-01-02T00:00:00Z", "command": f"{sys.executable} -m study.launch exp=uniform_mnist budget=2h",
            "commit": head.stdout.strip() if head.returncode == 0 else None, "host": platform.node(),
            "python": platform.python_version(), "torch": torch.__version__}
    dirty = [launch.pop("dirty") for launch in got["launches"][1:]]
    assert dirty == [dirty[0]] * 3 and isinstance(dirty[0], bool)
    assert got == {
        "device": f"1 x A100 + CPU ({cpu}, 2 cores to Ray) + CPU ({cpu}, 1 core) + 4 x H100", "wall_s": 488.3,
        "gpu_minutes": 20.18, "cpu_minutes": 5.02, "launches": [older,
            {**same, "outcome": "budget spent", "runner": "tune", "device": f"CPU ({cpu}, 2 cores to Ray)", "gpus": 0,
             "cpus": 2.0, "wall_s": 120.3, "gpu_minutes": 0.0, "cpu_minutes": 4.01, "ray": ray.__version__},
            {**same, "outcome": "finished", "runner": "local", "device": f"CPU ({cpu}, 1 core)", "gpus": 0,
             "cpus": 1.0, "wall_s": 60.8, "gpu_minutes": 0.0, "cpu_minutes": 1.01},
            {**same, "outcome": "interrupted", "runner": "tune", "device": "4 x H100", "gpus": 4.0, "cpus": 0,
             "wall_s": 301.2, "gpu_minutes": 20.08, "cpu_minutes": 0.0, "ray": ray.__version__}]}
    assert provenance.device({"GPU": 2.0}, 2.0) == f"CPU ({cpu}, 0 cores to Ray)"  # no GPU kind known, no CUDA here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    assert provenance.device({"GPU": 2.0}, 2.0) == "2 x NVIDIA H200 #0"
    assert provenance.device({"GPU": 1.0, "accelerator_type:A100": 1.0, "accelerator_type:H100": 1.0}, 1.0) == \
        "1 x A100+H100"
    assert provenance.git("no-such-git-command") is None  # git answers with an error: nothing recorded

    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "git")
    monkeypatch.setattr(provenance.subprocess, "run", missing)  # no git on the machine
    assert provenance.git("rev-parse", "HEAD") is None

    def hung(*args: object, timeout: float | None = None, **kwargs: object) -> None:
        assert timeout is not None, "a git that never answers would hang the launch's last step"
        raise subprocess.TimeoutExpired(args[0], timeout)
    monkeypatch.setattr(provenance.subprocess, "run", hung)
    assert provenance.git("rev-parse", "HEAD") is None


def test_provenance_gpus_and_cores_from_what_the_trials_ask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPUs count only when the trials ask for some (a GPU cluster running CPU trials has CPU-minutes); trials
    asking GPUs of a cluster that has none count none; a cluster that reports no CPUs counts none."""
    import torch

    from study import provenance

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cases = [({"CPU": 16.0, "GPU": 4.0}, 0.0, (0, 16.0)), ({"CPU": 2.0}, 1.0, (0, 2.0)), ({}, 0.0, (0, 0))]
    for i, (cluster, per_trial, want) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        provenance.record(tmp_path / str(i), 0.0, cluster, per_trial, "finished", runner="local")
        (launch,) = rundir.read_json(tmp_path / str(i) / rundir.PROVENANCE)["launches"]
        assert (launch["gpus"], launch["cpus"]) == want, cluster


def test_provenance_dirty_means_tracked_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit a launch ran and whether tracked files differed from it: an untracked file is not dirty, an
    edited tracked file is."""
    import subprocess

    from study import provenance

    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                              check=True, capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    (repo / "a.py").write_text("1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "a")
    (repo / "notes.txt").write_text("untracked\n")
    monkeypatch.setattr(provenance, "REPO", repo)
    (tmp_path / "run").mkdir()
    provenance.record(tmp_path / "run", 0.0, {"CPU": 1.0}, 0, "finished", runner="local")
    (repo / "a.py").write_text("2\n")
    provenance.record(tmp_path / "run", 0.0, {"CPU": 1.0}, 0, "finished", runner="local")
    launches = rundir.read_json(tmp_path / "run" / rundir.PROVENANCE)["launches"]
    head = git("rev-parse", "HEAD")
    assert [(x["commit"], x["dirty"]) for x in launches] == [(head, False), (head, True)]


def test_cpu_name_from_cpuinfo_or_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU's model name is everything after the first colon of /proc/cpuinfo's line (names may hold colons);
    without that file, or without that line, platform's processor, else its machine."""
    from study import provenance

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Acme CPU: rev 2 @ 2.0GHz \nflags\t: fpu\n")
    monkeypatch.setattr(provenance, "Path", lambda p: info if p == "/proc/cpuinfo" else Path(p))
    assert provenance.cpu_name() == "Acme CPU: rev 2 @ 2.0GHz"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "")
    monkeypatch.setattr(provenance.platform, "machine", lambda: "aarch64")
    info.write_text("processor\t: 0\nBogoMIPS\t: 48.00\n")  # no model name line (some ARM kernels)
    assert provenance.cpu_name() == "aarch64"
    info.unlink()
    assert provenance.cpu_name() == "aarch64"
    monkeypatch.setattr(provenance.platform, "processor", lambda: "x86_64 Acme")
    assert provenance.cpu_name() == "x86_64 Acme"
