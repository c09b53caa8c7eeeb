"""study.preflight: every bad value a trial's data or a local Ray would reject is one line on stderr and exit 2,
before the run dir exists (issue 11); the cost guard."""

from __future__ import annotations

import copy
import dataclasses
import errno
import re
import sys
from pathlib import Path

import pytest

from errors import UsageError, invalid
from loaders import data as loader_data, datasets
from study import config, launch, preflight, storage
from study.config import Config, Ray, Resources
from study.grid import with_value
from tests.conftest import trial_config
from tests.helpers import SMOKE, Output, fails


@pytest.mark.parametrize("argv, line", [
    (["data.n_clean=70000"], "data.n_clean=70000 is invalid: it must be an integer in [1, 60000] "
                             "(the mnist training split)"),
    (["data.n_test=10001"], "data.n_test=10001 is invalid: it must be an integer in [1, 10000] (the mnist test split)"),
    (["data.dataset=cifar100", "data.n_clean=6000"],
     "data.n_clean=6000 is invalid: it must be an integer in [1, 5000] (the stand-in cifar100 training split)"),
    (["exp=repeated", "grid.noise.alpha=[1000]", "grid.noise.source=[same,novel]"],
     "noise.alpha=1000 is invalid: noise.source=novel needs 500000 unused training images (n_clean x alpha) but "
     "only 59500 lie outside the 500 clean ones: lower noise.alpha to at most 119 or data.n_clean"),
    (["grid.model.arch=[conv4]", "model.conv_channels=[4]"], "model.conv_channels has 1 widths; conv4 needs 4"),
    (["resources.cpu=64", "ray.num_cpus=2"], "resources.cpu=64.0 is invalid: it must be at most 2, the CPUs of the "
                                             "local Ray"),
])
def test_bad_plan_is_one_line(argv: list[str], line: str, data_root: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in SMOKE if not a.startswith("exp=")] + argv if any(a.startswith("exp=") for a in argv) else [*SMOKE, *argv]
    assert line in fails(args, capsys, tmp_path / "run")


def test_run_dir_is_a_file(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert launch.main([*SMOKE, f"run_dir={file}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: run_dir={str(file)!r} is invalid: it must be a folder or a path that does not exist yet ({file} is a file)"
    assert launch.main([*SMOKE, f"run_dir={file / 'under'}"]) == 2
    assert "is a file" in capsys.readouterr().err and file.read_text() == "x"


def test_unreadable_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "locked"

    def denied(name: str, where: Path) -> bool:  # what stat under a folder without read/search permission raises
        raise PermissionError(errno.EACCES, "Permission denied", str(where / "MNIST"))

    monkeypatch.setattr(datasets, "present", denied)
    err = fails([*SMOKE, f"data.root={root}"], capsys, tmp_path / "run")
    assert err == f"error: data.root={str(root)!r} is invalid: it must be a folder you may read (Permission denied: {root / 'MNIST'})"


def test_max_failures_minus_one_retries_forever() -> None:
    config.check_value("max_failures", -1)
    with pytest.raises(UsageError, match=r"max_failures=-2 is invalid: it must be an integer >= -1 \(-1: retry forever\)"):
        config.check_value("max_failures", -2)


def test_cost_guard_stops_a_study_of_days(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in SMOKE if not a.startswith(("grid.noise.alpha", "grid.model", "train.epochs"))]
    err = fails([*argv, "grid.noise.alpha=[100000]", "grid.model.arch=[conv4]", "train.epochs=10", "ray.num_cpus=2"],
                capsys, tmp_path / "run")
    assert "hours on this machine (2 CPU cores), over 24:" in err and "force=true to run it anyway" in err


def test_cost_guard_prints_the_estimate_and_force_runs_anyway(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from study import cost

    monkeypatch.setattr(cost, "local_hours", lambda *args: (100.0, "2 CPU cores"))
    monkeypatch.setattr(cost, "launch_overhead", lambda runner: {"launch_s": 1800.0, "group_s": 900.0, "host": "vm"})
    cfg = Config(ray=Ray(num_cpus=2), force=True)
    preflight.cost_guard(cfg, [[{}], [{}, {}]], {"cpu": 1, "gpu": 0})
    assert capsys.readouterr().out == (  # the launch's fixed cost included: 100 h + 0.5 h + 2 x 0.25 h
        "estimate: 3 configs in 2 trials, about 101 hours on this machine (2 CPU cores, with 60.0 min fixed for "
        "runner=tune measured on vm: 1800 s a launch + 2 x 900.0 s a group; dry_run=true for the details)\n")
    with pytest.raises(UsageError, match="about 101 hours on this machine .* over 24: .* force=true"):
        preflight.cost_guard(Config(ray=Ray(num_cpus=2)), [[{}]], {"cpu": 1, "gpu": 0})


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_a_paper_study_on_a_laptop_is_refused_with_its_cost_first(data_root: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """preset=paper asks for GPUs: on a CPU machine the first line is the cost on its cores, and the refusal names
    preset=smoke and force=true (with the CPU fallback), not the missing GPU (issue 23)."""
    err = fails(["exp=uniform_mnist", "preset=paper", "data.download=false"], capsys, tmp_path / "run")
    assert re.match(r"error: this study would take about [\d.]+ hours on this machine \(\d+ CPU cores, no GPU visible\), "
                    r"over 24: run preset=smoke for a small study", err), err
    assert err.endswith("or pass force=true resources.allow_cpu_fallback=true to run it on these CPUs anyway")


def test_a_folder_takes_the_sizes_that_fit_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An experiment's or preset's n_clean, n_test and n_val apply where the folder holds them; else the folder's
    own sizes, said in one line; a size given on the command line stays as given (and is checked as it is)."""
    from tests.test_folder import tree

    path = tree(tmp_path / "shapes", {"a": (30, 10), "b": (30, 10), "c": (30, 10)})
    cfg, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}", "data.n_val=6"])
    fitted = preflight.fitted(cfg, ["preset", "data.dataset", "data.path", "data.n_val"])
    assert (fitted.data.n_clean, fitted.data.n_test, fitted.data.n_val) == (None, None, 6)
    assert capsys.readouterr().out == ("data: shapes holds 90 training and 30 test images, fewer than data.n_clean=2000, "
                                       "data.n_test=2000 of this experiment and preset ask for: data.n_clean=null, "
                                       "data.n_test=null instead (null: all of them; 0: no held-out split); set them "
                                       "on the command line to choose\n")
    paper, _ = config.compose(["preset=paper", "data.dataset=folder", f"data.path={path}", "data.n_clean=20"])
    fitted = preflight.fitted(paper, ["data.dataset", "data.path", "data.n_clean"])
    assert (fitted.data.n_clean, fitted.data.n_test, fitted.data.n_val) == (20, None, 0)  # n_val=5000 of preset=paper
    given, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}", "data.n_test=20"])
    assert preflight.fitted(given, ["data.n_test", "data.n_clean"]).data.n_clean == 2000  # given: left to the checks
    small, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}", "data.n_clean=50",
                               "data.n_test=5"])
    assert preflight.fitted(small, []) == small  # they fit: kept


def test_local_hours_from_cpu_rows() -> None:
    from study import cost

    config = {"data": {"dataset": "mnist", "n_clean": 1000}, "noise": {"alpha": 0.0}, "model": {"arch": "perceptron"},
              "train": {"batch_size": 128, "epochs": 1, "loss": "ce"}}
    rate = cost._cpu_rates()[("mnist", "perceptron", 128)][1]
    hours, device = cost.local_hours([[config]], 1, 2, 0, 0)
    assert device == "2 CPU cores" and hours == pytest.approx(1000 / rate / 3600)
    assert cost.cpu_factor() > 10  # conv4: a CUDA device is ~48 CPU cores


def test_resume_of_a_run_dir_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl
    import json
    import os

    (tmp_path / "study.json").write_text(json.dumps({"experiments": ["tune"], "config": {}}))
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)  # what a running launcher holds
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert launch.main([f"resume={tmp_path}"]) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {tmp_path} is in use: its study is still running (another launcher holds "
                   f"{tmp_path / '.lock'}); wait for it to end, or stop it (Ctrl-C) and resume then")


# Exact behaviour of each preflight step (mutation testing of study/preflight.py): what each one calls, with which
# arguments, how often, and the exact lines it prints or raises.

def reversed_dict(d: dict) -> dict:
    """The same items in the other insertion order."""
    return dict(reversed(list(d.items())))


PLAN = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "data.n_clean=500", "data.n_test=500",
        "train.epochs=1", "train.lr=0.3", "grid.noise.alpha=[0,10]", "grid.model.arch=[perceptron]",
        "grid.train.lr=[0.1,0.5]", "+grid_extra=[{noise:{alpha:[5]}}]"]


def point(base: dict, **values: object) -> dict:
    """base with dotted keys (written with __ for .) set."""
    for path, value in values.items():
        base = with_value(base, path.replace("__", "."), value)
    return base


def test_plan_of_a_grouped_study_expands_every_grid_then_its_replicates(data_root: Path) -> None:
    cfg, _ = config.compose([*PLAN, "replicates=2", "replicate_pin=[noise.seed]"])
    plan = preflight.plan(cfg)
    base = storage.trial_base(cfg)
    assert plan.base == base
    assert plan.grids == [{"noise.alpha": [0, 10], "model.arch": ["perceptron"], "train.lr": [0.1, 0.5]},
                          {"noise.alpha": [5], "model.arch": ["perceptron"], "train.lr": [0.1, 0.5]}]
    assert plan.searched == ["train.lr"]  # once, though both grids hold it
    cells = [(0, 0.1), (0, 0.5), (10, 0.1), (10, 0.5), (5, 0.1), (5, 0.5)]
    first = [point(base, noise__alpha=a, model__arch="perceptron", train__lr=lr) for a, lr in cells]
    # the replicate shifts every replicated seed by 1000 but the pinned noise.seed
    second = [point(c, train__seed=1000, data__order_seed=1000, data__subset_seed=1000) for c in first]
    assert plan.configs == first + second


def test_plan_of_a_study_per_cell_leaves_the_searched_keys_to_each_cell(data_root: Path) -> None:
    cfg, _ = config.compose([*PLAN, "scheduler=asha"])
    plan = preflight.plan(cfg)
    assert plan.searched == ["train.lr"] and plan.base == storage.trial_base(cfg)
    assert plan.grids[1] == {"noise.alpha": [5], "model.arch": ["perceptron"], "train.lr": [0.1, 0.5]}
    assert plan.configs == [point(plan.base, noise__alpha=a, model__arch="perceptron") for a in (0, 10, 5)]
    assert {c["train"]["lr"] for c in plan.configs} == {0.3}  # the base value: the grid's lrs are the cell's search


def test_check_runs_each_data_check_and_each_model_once(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One loaders.data.check per distinct (data, noise, clean_only), one model on the meta device per distinct
    (image shape, model): equal sections in another key order are the same."""
    data_calls: list[tuple] = []
    model_calls: list[tuple] = []
    real_check, real_flops = preflight.data.check, preflight.cost.forward_flops

    def check(*args: object) -> None:
        data_calls.append(copy.deepcopy(args))
        real_check(*args)

    def flops(*args: object) -> float:
        model_calls.append(copy.deepcopy(args))
        return real_flops(*args)

    monkeypatch.setattr(preflight.data, "check", check)
    monkeypatch.setattr(preflight.cost, "forward_flops", flops)
    ce = trial_config(data_root)
    other_lr = trial_config(data_root, train={"lr": 0.05})
    h_alpha = trial_config(data_root, train={"loss": "h_alpha"})
    reordered = {**ce, "data": reversed_dict(ce["data"]), "noise": reversed_dict(ce["noise"]),
                 "model": reversed_dict(ce["model"]), "train": {**ce["train"], "lr": 0.2}}
    assert list(reordered["data"]) != list(ce["data"]) and list(reordered["model"]) != list(ce["model"])
    smaller = trial_config(data_root, data={"n_clean": 1000})  # other data, the same model and images
    wider = trial_config(data_root, model={"fc_hidden": 64})  # another model, the same data
    preflight.check([ce, other_lr, h_alpha, reordered, smaller, wider, h_alpha])
    assert data_calls == [(ce["data"], ce["noise"], False), (ce["data"], ce["noise"], True),
                          (smaller["data"], smaller["noise"], False)]
    assert [type(call[2]) for call in data_calls] == [bool] * 3
    assert model_calls == [("conv2", ce["data"], ce["model"]), ("conv2", wider["data"], wider["model"])]


def test_a_model_that_does_not_fit_its_images_is_one_line(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ("Given input size: (128x1x1). Calculated output size: (128x0x0). Output size is too small; "
             "the feature map of this layer has no pixel left for a pooling window of this kernel size")
    assert len(first) > 161

    def too_small(arch: str, data: dict, model: dict) -> float:
        raise RuntimeError(f"{first}\nsecond line")

    monkeypatch.setattr(preflight.cost, "forward_flops", too_small)
    with pytest.raises(UsageError) as error:
        preflight.check([trial_config(data_root)])
    assert str(error.value) == ("model.arch='conv2' is invalid: it must be an architecture that fits "
                                f"data.dataset=mnist images of shape (1, 28, 28) ({first[:160]})")
    assert error.value.__cause__ is None and error.value.__suppress_context__


def cost_recorders(monkeypatch: pytest.MonkeyPatch, hours: float, fixed_s: float) -> dict[str, tuple]:
    """cost.local_hours and cost.fixed_cost answering hours and fixed_s; what they were asked, by name."""
    calls: dict[str, tuple] = {}

    def local_hours(*args: object) -> tuple[float, str]:
        calls["local_hours"] = args
        return hours, "4 CPU cores"

    def fixed_cost(*args: object) -> tuple[float, str]:
        calls["fixed_cost"] = args
        return fixed_s, "with 1 h fixed"

    monkeypatch.setattr(preflight.cost, "local_hours", local_hours)
    monkeypatch.setattr(preflight.cost, "fixed_cost", fixed_cost)
    return calls


def test_cost_guard_asks_for_the_gpus_and_share_of_each_runner(monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """runner=local: one GPU (a group at a time has it whole); Tune: every visible GPU, resources.gpu a trial;
    no GPU asked: none."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    calls = cost_recorders(monkeypatch, 20.0, 7200.0)
    groups = [[{}], [{}, {}]]
    line = ("estimate: 3 configs in 2 trials, about 22 hours on this machine (4 CPU cores, with 1 h fixed; "
            "dry_run=true for the details)\n")
    for cfg, resources, asked, on_cuda in (
            (Config(runner="local", resources=Resources(cpu=2, gpu=0.5)), {"cpu": 2.0, "gpu": 0.5}, (2, 1.0, 1), True),
            (Config(runner="local", resources=Resources(cpu=2)), {"cpu": 2.0, "gpu": 0.0}, (2, 1.0, 0), False),
            (Config(ray=Ray(num_cpus=4), resources=Resources(gpu=0.25)), {"cpu": 1.0, "gpu": 0.25}, (4, 0.25, 3), True),
            (Config(ray=Ray(num_cpus=4)), {"cpu": 1.0, "gpu": 0.0}, (4, 0.0, 0), False)):
        calls.clear()
        preflight.cost_guard(cfg, groups, resources)
        assert calls["local_hours"] == (groups, resources["cpu"], *asked), (cfg.runner, resources)
        assert calls["fixed_cost"][:2] == (groups, cfg.runner) and calls["fixed_cost"][2] is on_cuda
        assert capsys.readouterr().out == line  # 20 h + 7200 s


@pytest.mark.parametrize("hours, fixed_s, stops", [
    (23.0, 3600.0, False),  # exactly MAX_LOCAL_HOURS: runs
    (0.0, 24 * 3600 + 1.0, True),  # one second over, all of it fixed: seconds / 3600
    (24.0001, 0.0, True),
])
def test_cost_guard_stops_over_max_local_hours_only(hours: float, fixed_s: float, stops: bool,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cost_recorders(monkeypatch, hours, fixed_s)
    cfg = Config(ray=Ray(num_cpus=4))
    if stops:
        with pytest.raises(UsageError) as error:
            preflight.cost_guard(cfg, [[{}]], {"cpu": 1.0, "gpu": 0.0})
        assert str(error.value) == ("this study would take about 24 hours on this machine (4 CPU cores), over 24: run "
                                    "preset=smoke for a small study of the same code, shrink its grid, run it on a "
                                    "cluster (ray.address), or pass force=true to run it anyway")
    else:
        preflight.cost_guard(cfg, [[{}]], {"cpu": 1.0, "gpu": 0.0})
    assert capsys.readouterr().out == ("estimate: 1 configs in 1 trials, about 24 hours on this machine (4 CPU cores, "
                                       "with 1 h fixed; dry_run=true for the details)\n")
    preflight.cost_guard(dataclasses.replace(cfg, force=True), [[{}]], {"cpu": 1.0, "gpu": 0.0})  # force: never stops


def test_cost_guard_of_a_gpu_study_without_a_gpu_names_the_cpu_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    cost_recorders(monkeypatch, 30.0, 0.0)
    with pytest.raises(UsageError) as error:
        preflight.cost_guard(Config(ray=Ray(num_cpus=4), resources=Resources(gpu=1.0)), [[{}]],
                             {"cpu": 1.0, "gpu": 0.0})
    assert str(error.value) == ("this study would take about 30 hours on this machine (4 CPU cores, no GPU visible), "
                                "over 24: run preset=smoke for a small study of the same code, shrink its grid, run it "
                                "on a cluster (ray.address), or pass force=true resources.allow_cpu_fallback=true to "
                                "run it on these CPUs anyway")


def test_described_names_the_dataset_its_classes_and_a_stand_in(tmp_path: Path) -> None:
    from tests.test_folder import tree

    path = tree(tmp_path / "shapes", {"a": (1, 1), "b": (1, 1), "c": (1, 1)})
    folder = {"dataset": "folder", "path": str(path), "root": str(tmp_path)}
    assert preflight.described(folder, {"mnist"}) == {"name": "shapes", "classes": 3, "stand_in": False}
    assert preflight.described({"dataset": "mnist", "path": None}, set()) == {"name": "MNIST", "classes": 10,
                                                                              "stand_in": False}
    assert preflight.described({"dataset": "cifar100", "path": None}, {"cifar100"}) == {
        "name": "CIFAR-100", "classes": 100, "stand_in": True}


def test_prepare_data_makes_each_dataset_ready_once(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A folder is listed (datasets.tree) and nothing else; every other (dataset, root, download, stand_in) is made
    available once, in order, with CIFAR-100 for noise.source=cifar100; a stand-in is one line and returned."""
    from tests.test_folder import tree

    path = tree(tmp_path / "shapes", {"a": (2, 1), "b": (2, 1)})
    listed: list[dict] = []
    asked: list[tuple] = []
    real_tree = datasets.tree

    def listing(d: dict):
        listed.append(d)
        return real_tree(d)

    def ensure(*args: object) -> bool:
        asked.append(args)
        return args[0] == "cifar100"

    monkeypatch.setattr(preflight.datasets, "tree", listing)
    monkeypatch.setattr(preflight.datasets, "ensure_available", ensure)
    folder = trial_config(data_root, data={"dataset": "folder", "path": str(path), "n_clean": None, "n_test": None,
                                           "backend": "tensor"})
    mnist = trial_config(data_root, data={"download": True, "stand_in": False})
    again = trial_config(data_root, data={"download": True, "stand_in": False}, train={"lr": 0.05})
    cifar = trial_config(data_root, data={"dataset": "cifar10", "download": False, "stand_in": True},
                         noise={"source": "cifar100"})
    assert preflight.prepare_data([folder, mnist, again, cifar]) == {"cifar100"}
    assert listed == [folder["data"]]
    root = str(data_root)
    assert asked == [("cifar10", Path(root), False, True), ("cifar100", Path(root), False, True),
                     ("mnist", Path(root), True, False)]
    assert capsys.readouterr().out == (f"data: cifar100 is not under {root}: using a small generated stand-in with its "
                                       "image shape and classes (data.stand_in=true; results say nothing about "
                                       "cifar100)\n")


def test_prepare_data_of_a_root_one_may_not_write_is_one_line(data_root: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "locked"

    def denied(name: str, where: Path, download: bool, stand_in: bool) -> bool:
        raise PermissionError(errno.EACCES, "Permission denied", str(where / "MNIST"))

    monkeypatch.setattr(preflight.datasets, "ensure_available", denied)
    with pytest.raises(UsageError) as error:
        preflight.prepare_data([trial_config(data_root, data={"root": str(root)})])
    assert str(error.value) == str(invalid("data.root", str(root),
                                           f"a folder you may read and write (Permission denied: {root / 'MNIST'})"))
    assert str(error.value) == (f"data.root={str(root)!r} is invalid: it must be a folder you may read and write "
                                f"(Permission denied: {root}/MNIST)")


def test_prepare_betons_writes_each_beton_once(data_root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """data.backend=ffcv: the table's .beton, once per (data_key, source); a folder read from .betons (ffcv, or auto
    over FOLDER_MAX_IMAGES): both split folders, once per (dataset, root, path); anything else: nothing."""
    from tests.test_folder import tree

    shapes = tree(tmp_path / "shapes", {"a": (3, 1), "b": (3, 1)})
    large = tree(tmp_path / "large", {"a": (3, 1), "b": (3, 1)})
    monkeypatch.setattr(preflight.datasets, "FOLDER_MAX_IMAGES", 5)  # 6 training images: on disk under auto
    sources: list[tuple] = []
    prepared: list[tuple] = []
    splits: list[tuple] = []

    def table_source(key: tuple, source: str) -> tuple[str, str]:
        sources.append((key, source))
        return f"{dict(key)['dataset']}+{source}", "images"

    monkeypatch.setattr(preflight.data, "table_source", table_source)
    monkeypatch.setattr(preflight.backends, "prepare", lambda *args: prepared.append(args))
    monkeypatch.setattr(preflight.backends, "folder_split", lambda *args: splits.append(args))

    def folder(path: Path, **more: object) -> dict:
        return trial_config(data_root, data={"dataset": "folder", "path": str(path), "n_clean": None, "n_test": None,
                                             "backend": "ffcv", **more})

    tensor = trial_config(data_root, data={"backend": "tensor"})  # first: nothing to write, and the loop goes on
    ffcv = trial_config(data_root, data={"backend": "ffcv"})
    ffcv_lr = trial_config(data_root, data={"backend": "ffcv"}, train={"lr": 0.05})  # the same .beton
    cifar = trial_config(data_root, data={"dataset": "cifar10", "backend": "ffcv"})
    cifar100 = trial_config(data_root, data={"dataset": "cifar10", "backend": "ffcv"}, noise={"source": "cifar100"})
    on_disk = folder(shapes)
    other_cache = folder(shapes, cache=str(tmp_path / "cache"), image_size=64)  # the same split folders
    auto = folder(large, backend="auto")
    auto_mnist = trial_config(data_root, data={"backend": "auto"})
    preflight.prepare_betons([tensor, ffcv, ffcv_lr, cifar, cifar100, on_disk, other_cache, auto, auto_mnist])
    assert sources == [(loader_data.data_key(ffcv["data"]), "same"), (loader_data.data_key(cifar["data"]), "same"),
                       (loader_data.data_key(cifar100["data"]), "cifar100")]
    assert prepared == [("mnist+same", "images", ffcv["data"]), ("cifar10+same", "images", cifar["data"]),
                        ("cifar10+cifar100", "images", cifar100["data"])]
    assert splits == [(on_disk["data"], True), (on_disk["data"], False), (auto["data"], True), (auto["data"], False)]


def test_fitted_leaves_other_datasets_as_they_are(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = config.compose(["preset=smoke", "data.n_val=100000"])
    monkeypatch.setattr(preflight.datasets, "split_sizes", lambda *args: pytest.fail("sizes of a folder asked"))
    assert preflight.fitted(cfg, []) is cfg


def test_fitted_at_the_folder_sizes_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """90 training and 30 test images: a size equal to its split fits; n_val equal to the training split does not;
    n_clean fits what n_val leaves; a given key is never refitted."""
    from tests.test_folder import tree

    path = tree(tmp_path / "shapes", {"a": (30, 10), "b": (30, 10), "c": (30, 10)})
    resolved: list[tuple] = []
    real_absolute = storage.absolute

    def absolute(key: str, value: object) -> Path:
        resolved.append((key, value))
        return real_absolute(key, value)

    monkeypatch.setattr(preflight.storage, "absolute", absolute)
    cfg, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}"])

    def sized(**sizes: object) -> Config:
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **sizes))

    def head(was: str, now: str) -> str:
        return (f"data: shapes holds 90 training and 30 test images, fewer than {was} of this experiment and preset "
                f"ask for: {now} instead (null: all of them; 0: no held-out split); set them on the command line to "
                "choose\n")

    fitted = preflight.fitted(sized(n_val=90, n_clean=None, n_test=30), [])
    assert fitted == sized(n_val=0, n_clean=None, n_test=30)
    assert capsys.readouterr().out == head("data.n_val=90", "data.n_val=0")
    assert resolved == [("data.path", str(path))]

    kept = sized(n_val=90, n_clean=None, n_test=None)
    assert preflight.fitted(kept, ["data.n_val"]) is kept  # given: left to the checks
    assert capsys.readouterr().out == ""

    fitted = preflight.fitted(sized(n_val=6, n_clean=85, n_test=None), ["data.n_val"])
    assert fitted == sized(n_val=6, n_clean=None, n_test=None)  # 84 left beside the 6 held out
    assert capsys.readouterr().out == head("data.n_clean=85", "data.n_clean=null")
    fits = sized(n_val=6, n_clean=84, n_test=30)
    assert preflight.fitted(fits, ["data.n_val"]) is fits

    fitted = preflight.fitted(sized(n_val=5000, n_clean=50, n_test=50), ["data.n_test"])
    assert fitted == sized(n_val=0, n_clean=50, n_test=50)  # n_clean against the 90 left once n_val is 0
    assert (fitted.model, fitted.train, fitted.grid) == (cfg.model, cfg.train, cfg.grid)
    assert capsys.readouterr().out == head("data.n_val=5000", "data.n_val=0")


def test_every_preflight_line_is_flushed(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate, a stand-in and a refitted folder are each on stdout when printed (a log or pipe, under Ray)."""
    from tests.test_folder import tree

    cost_recorders(monkeypatch, 1.0, 0.0)
    monkeypatch.setattr(preflight.datasets, "ensure_available", lambda *args: True)
    path = tree(tmp_path / "shapes", {"a": (3, 1), "b": (3, 1)})
    cfg, _ = config.compose(["preset=smoke", "data.dataset=folder", f"data.path={path}"])
    for step in (lambda: preflight.cost_guard(Config(ray=Ray(num_cpus=4)), [[{}]], {"cpu": 1.0, "gpu": 0.0}),
                 lambda: preflight.prepare_data([trial_config(data_root, data={"dataset": "cifar10"})]),
                 lambda: preflight.fitted(cfg, [])):
        out = Output()
        monkeypatch.setattr(sys, "stdout", out)
        step()
        assert out.getvalue().count("\n") == 1 and out.flushed and out.flushed[-1] == out.getvalue()
