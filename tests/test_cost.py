"""study.cost.estimate against hand-computed GPU-hours: the measured-rate path and the model path."""

from __future__ import annotations

import json
import math
from pathlib import Path
import os
import socket

import pytest

from study import cost


def config(arch: str = "perceptron", k_seed: int = 0, n_clean: int = 1000, alpha: float = 2.0, epochs: int = 5,
           batch: int = 128, loss: str = "ce") -> dict:
    return {"data": {"dataset": "mnist", "n_clean": n_clean},
            "noise": {"alpha": alpha, "seed": k_seed},
            "model": {"arch": arch, "mlp_hidden": 256, "conv_channels": [32, 32, 64, 64, 128, 128], "fc_hidden": 128},
            "train": {"lr": 0.1, "batch_size": batch, "epochs": epochs, "seed": k_seed, "loss": loss}}


def test_examples_by_hand() -> None:
    assert cost.examples(config()) == 1000 * 3 * 5  # (1 + alpha) copies per clean example, 5 epochs
    assert cost.examples(config(loss="h_alpha")) == 1000 * 5  # H_alpha trains on the clean examples
    assert cost.examples(config(n_clean=None, alpha=0, epochs=1)) == 60_000


def test_measured_rate_gives_examples_times_k_over_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "measured_throughput", lambda: {("mnist", "perceptron", 128): {1: 1000.0, 4: 3000.0}})
    group = [config(k_seed=s) for s in range(4)]  # one trial of K = 4 members, 15,000 examples each
    out = cost.estimate([group], gpu_fraction=1.0)
    assert out["gpu_hours"] == pytest.approx(15_000 * 4 / 3000.0 / 3600, rel=1e-12)
    assert (out["configs"], out["trials"], out["max_members"], out["examples_total"]) == (4, 1, 4, 60_000)
    assert out["source"] == "measured (bench/results/*.json)"
    # K = 2 lies between the measured sizes: log-log interpolation, rate 1000 * 3 ** 0.5
    two = cost.estimate([group[:2], group[2:]], gpu_fraction=1.0)
    assert two["gpu_hours"] == pytest.approx(2 * 15_000 * 2 / (1000 * math.sqrt(3)) / 3600, rel=1e-12)
    assert cost.group_rate({1: 1000.0, 4: 3000.0}, 8) == 3000.0  # never extrapolated


def test_perceptron_forward_flops_by_hand() -> None:
    c = config()
    assert cost.forward_flops("perceptron", c["data"], c["model"]) == 2 * 784 * 10
    assert cost.forward_flops("mlp1", c["data"], c["model"]) == 2 * (784 * 256 + 256 * 10)


def test_model_path_overhead_bound_and_compute_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "measured_throughput", lambda: {})
    steps = math.ceil(15_000 / 128)
    out = cost.estimate([[config()]], gpu_fraction=0.25)  # tiny net: the per-step floor, shared 4 ways
    assert out["gpu_hours"] == pytest.approx(steps * cost.STEP_OVERHEAD_S * 0.25 / 3600, rel=1e-12)
    assert out["source"].startswith("model: H200")
    assert cost.estimate([[config()]], gpu_fraction=2.0)["gpu_hours"] == pytest.approx(
        steps * cost.STEP_OVERHEAD_S / 3600, rel=1e-12)  # the fraction is capped at one GPU
    monkeypatch.setattr(cost, "SUSTAINED_FLOPS", 1e6)  # compute-bound now
    group = [config(k_seed=s) for s in range(3)]
    compute_s = 3 * 3 * (2 * 784 * 10) * 128 / 1e6
    out = cost.estimate([group], gpu_fraction=0.25)
    assert out["gpu_hours"] == pytest.approx(steps * compute_s / 3600, rel=1e-12)


@pytest.fixture
def tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Benchmark tables by hand: bench.train on CUDA and on a 4-thread CPU, and bench.gpu_check's `table`."""
    def row(arch: str, fuse: int, images: float, model: float | None = None, **extra: object) -> dict:
        out = {"dataset": "mnist", "arch": arch, "batch_size": 128, "fuse": fuse, "images_per_s": images, **extra}
        return out if model is None else {**out, "model_images_per_s": model}

    files = {
        "train-h100.json": {"device": "cuda (NVIDIA H100)", "rows": [
            row("conv4", 1, 100.0, 100.0), row("conv4", 4, 50.0, 200.0), row("conv4", 2, 150.0),  # no model rate: K = 1's
            row("conv4", 8, 1.0, 8.0, error="out of memory")]},
        "gpu_check-h200.json": {"device": "NVIDIA H200", "table": [row("mlp1", 16, 10.0, 160.0)]},
        "train-vm.json": {"device": "x86_64", "threads": 4, "rows": [row("conv4", 1, 10.0, 10.0), row("conv4", 4, 4.0, 16.0),
                                                                     row("perceptron", 1, 400.0, 400.0)]},
        "loaders-vm.json": {"device": "cuda", "rows": [row("conv2", 1, 1e9, 1e9)]},  # not a throughput table
    }
    for name, table in files.items():
        (tmp_path / name).write_text(json.dumps(table))
    monkeypatch.setattr(cost, "RESULTS", tmp_path)
    return tmp_path


def test_rates_come_from_model_images_per_s_of_the_right_device(tables: Path) -> None:
    """A fused group's rate is its model-images/s (K members' images), not the images it loads; CUDA tables
    for the GPU estimate, CPU tables (per thread) for the local one; rows with an error count in neither."""
    assert cost.measured_throughput() == {("mnist", "conv4", 128): {1: 100.0, 4: 200.0, 2: 150.0},
                                          ("mnist", "mlp1", 128): {16: 160.0}}
    assert cost._cpu_rates() == {("mnist", "conv4", 128): {1: 2.5, 4: 4.0}, ("mnist", "perceptron", 128): {1: 100.0}}
    assert cost.cpu_factor() == 100.0 / 2.5  # conv4 unfused: the one net both measured
    assert cost.cpu_factor({}) == cost.CPU_FACTOR


def test_local_hours_by_hand(tables: Path) -> None:
    conv4 = config(arch="conv4", alpha=3.0, epochs=2)  # 1000 * 4 * 2 = 8,000 examples per member
    groups = [[conv4] * 4, [conv4] * 4, [conv4]]
    core_s = 2 * 8000 * 4 / 4.0 + 8000 / 2.5  # per core: K = 4 at 4 model-images/s, K = 1 at 2.5
    hours, device = cost.local_hours(groups, cpus_per_trial=1, cpus=2, gpu_per_trial=0, gpus=0)
    assert device == "2 CPU cores" and hours == pytest.approx(core_s / 2 / 3600, rel=1e-12)  # two trials side by side
    hours, _ = cost.local_hours(groups, cpus_per_trial=2, cpus=8, gpu_per_trial=0, gpus=0)
    assert hours == pytest.approx(core_s / 6 / 3600, rel=1e-12)  # 3 trials of 2 cores at once
    mlp = config(arch="mlp2")  # no CPU row: its GPU estimate times cpu_factor
    hours, _ = cost.local_hours([[mlp]], cpus_per_trial=1, cpus=1, gpu_per_trial=0, gpus=0)
    assert hours == pytest.approx(cost.estimate([[mlp]], 1.0)["gpu_hours"] * 40.0, rel=1e-12)
    hours, device = cost.local_hours(groups, cpus_per_trial=1, cpus=2, gpu_per_trial=0.5, gpus=2)
    assert device == "2 GPU" and hours == pytest.approx(cost.estimate(groups, 0.5)["gpu_hours"] / 2, rel=1e-12)
    gpu = cost.estimate(groups, 1.0)  # CUDA rates: K = 4 at 200 model-images/s, K = 1 at 100
    assert gpu["gpu_hours"] == pytest.approx((2 * 8000 * 4 / 200.0 + 8000 / 100.0) / 3600, rel=1e-12)


def test_dry_run_costs_the_device_it_asks_for_with_the_fixed_cost(capsys: pytest.CaptureFixture[str]) -> None:
    from study import config, launch, preflight

    argv = ["exp=uniform_mnist", "preset=smoke", "dry_run=true", "grid.noise.alpha=[0,10]"]
    for runner in ("tune", "local"):
        assert launch.main([*argv, f"runner={runner}"]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        cfg, _ = config.compose([*argv, f"runner={runner}"])
        groups = preflight.plan(cfg).groups(cfg, False)
        train_h, device = cost.local_hours(groups, cfg.resources.cpu, cost.cores(cfg), 0, 0)
        fixed_s, fixed = cost.fixed_cost(groups, runner, False)
        assert line == (f"estimated time on this machine's CPUs (resources.gpu=0): {train_h + fixed_s / 3600:.3g} hours "
                        f"on {device} [CPU rows of bench/results/train-*.json; {fixed}]")
        assert cost.cores(cfg) == (1 if runner == "local" else cfg.ray.num_cpus or os.cpu_count())  # one group at a time
    assert launch.main([*argv, "resources.gpu=0.25"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("estimated GPU time: ") and " GPU-hours at 0.25 GPU per trial on NVIDIA H200 [" in line
    assert "fixed for runner=tune" in line


def test_durations_in_words() -> None:
    assert [cost.duration(s) for s in (0, 44.6, 89.4, 90, 5399, 5400, 36000)] == [
        "0 s", "45 s", "89 s", "1.5 min", "90.0 min", "1.5 h", "10.0 h"]


@pytest.fixture
def overhead(tables: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """bench.launch_overhead tables: this host's (tune and local) and another host's (tune only); 20 s to compile."""
    host = socket.gethostname()
    (tables / "launch_overhead-a-host.json").write_text(json.dumps({"fixed": {"tune": {"launch_s": 40.0, "group_s": 1.5}}}))
    (tables / f"launch_overhead-{host}.json").write_text(json.dumps(
        {"fixed": {"local": {"launch_s": 60.0, "group_s": 2.0}, "tune": {"launch_s": 30.0, "group_s": 0.5}}}))
    monkeypatch.setattr(cost, "compile_seconds", lambda: 20.0)
    return host


def test_launch_overhead_prefers_this_hosts_table(overhead: str, tables: Path) -> None:
    assert cost.launch_overhead("local") == {"launch_s": 60.0, "group_s": 2.0, "host": overhead}
    (tables / f"launch_overhead-{overhead}.json").unlink()  # then the first table, for the runners it measured
    assert cost.launch_overhead("tune") == {"launch_s": 40.0, "group_s": 1.5, "host": "a-host"}
    assert cost.launch_overhead("local") == {"launch_s": 0.0, "group_s": 0.0, "host": None}
    (tables / "launch_overhead-a-host.json").unlink()
    assert cost.launch_overhead("tune") == {"launch_s": 0.0, "group_s": 0.0, "host": None}


CONV4 = config(arch="conv4", alpha=3.0, epochs=2)  # 1000 * 4 * 2 = 8,000 examples per member
GROUPS = [[CONV4] * 4, [CONV4] * 4, [CONV4]]


def test_fixed_cost_by_hand(overhead: str, tables: Path) -> None:
    assert cost.fixed_cost(GROUPS, "local", on_cuda=True) == (60 + 3 * 2 + 2 * 20, (
        f"with 1.8 min fixed for runner=local measured on {overhead}: 60 s a launch + 3 x 2.0 s a group "
        "+ 2 x 20 s to compile"))  # two fused groups compile on CUDA
    assert cost.fixed_cost(GROUPS, "local", on_cuda=False) == (
        66, f"with 66 s fixed for runner=local measured on {overhead}: 60 s a launch + 3 x 2.0 s a group")
    for table in tables.glob("launch_overhead-*.json"):
        table.unlink()
    assert cost.fixed_cost(GROUPS, "tune", on_cuda=False) == (
        0, "with 0 s fixed for runner=tune not measured (bench.launch_overhead): 0 s a launch + 3 x 0.0 s a group")


def test_dry_run_text_by_hand(overhead: str) -> None:
    from study import config as study_config

    grids = [{"noise.alpha": [0, 3], "train.lr": [0.1, 0.5]}, {}]
    cfg, _ = study_config.compose(["exp=uniform_mnist", "preset=smoke", "runner=local", "resources.cpu=2",
                                   "replicates=3"])
    lines = cost.dry_run_text(cfg, {"exp": "e", "preset": "p"}, grids, GROUPS).splitlines()
    assert lines[:3] == ["dry run: exp=e preset=p (nothing started, nothing written)",
                         "configs: 9 (noise.alpha 2 x train.lr 2 + 1, x 3 replicates), in 3 trials (fused groups of "
                         "up to 4 members)",
                         "examples per config: 8,000 to 8,000 (total 7.2e+04)"]
    # per core: K = 4 at 4 model-images/s, K = 1 at 2.5; one group at a time on its 2 cores; 66 s fixed
    hours = ((2 * 8000 * 4 / 4.0 + 8000 / 2.5) / 2 + 66) / 3600
    assert lines[3] == (f"estimated time on this machine's CPUs (resources.gpu=0): {hours:.3g} hours on 2 CPU cores "
                        f"[CPU rows of bench/results/train-*.json; with 66 s fixed for runner=local measured on "
                        f"{overhead}: 60 s a launch + 3 x 2.0 s a group]")
    cfg, _ = study_config.compose(["exp=uniform_mnist", "preset=smoke", "resources.gpu=0.5"])
    lines = cost.dry_run_text(cfg, {"exp": "e", "preset": "p"}, grids[:1], GROUPS).splitlines()
    assert lines[1] == "configs: 9 (noise.alpha 2 x train.lr 2), in 3 trials (fused groups of up to 4 members)"
    # CUDA: K = 4 at 200 model-images/s, K = 1 at 100; Tune's 30 s + 3 x 0.5 s + two compilations of 20 s
    hours = (2 * 8000 * 4 / 200 + 8000 / 100 + 30 + 1.5 + 40) / 3600
    assert lines[3] == (f"estimated GPU time: {hours:.3g} GPU-hours at 0.5 GPU per trial on NVIDIA H200 or cuda (NVIDIA "
                        f"H100) [measured (bench/results/*.json); with 72 s fixed for runner=tune measured on "
                        f"{overhead}: 30 s a launch + 3 x 0.5 s a group + 2 x 20 s to compile]")


def test_device_names_and_rows_of_each_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "RESULTS", tmp_path)
    assert cost.cuda_devices() == []
    row = {"dataset": "mnist", "arch": "mlp1", "batch_size": 128, "images_per_s": 10.0}  # no fuse: one member
    for name, table in {"train-a.json": {"device": "cuda:0", "rows": [row]},
                        "gpu_check-b.json": {"device": "NVIDIA A100", "table": [{**row, "fuse": 2, "images_per_s": 30.0}]},
                        "train-c.json": {"device": "NVIDIA A100"},  # no rows at all
                        "train-d.json": {"rows": [{**row, "images_per_s": 5.0}], "clock": "cpu", "threads": 8},
                        "train-e.json": {"device": "x86_64", "rows": [{**row, "arch": "conv2", "images_per_s": 6.0}]},
                        "loaders-f.json": {"device": "NVIDIA B200", "rows": [row]}}.items():
        (tmp_path / name).write_text(json.dumps(table))
    assert cost.cuda_devices() == ["NVIDIA A100", "cuda:0"]
    assert cost.measured_throughput() == {("mnist", "mlp1", 128): {1: 10.0, 2: 30.0}}
    # a table without a device is a CPU's; a --clock cpu table's rates are per core already; no threads: one
    assert cost._cpu_rates() == {("mnist", "mlp1", 128): {1: 5.0}, ("mnist", "conv2", 128): {1: 6.0}}


def test_group_rate_interpolates_between_the_sizes_around_k() -> None:
    rates = {2: 100.0, 8: 400.0, 16: 500.0}
    assert cost.group_rate(rates, 4) == pytest.approx(200.0, rel=1e-12)  # log-log: halfway from 2 to 8
    assert cost.group_rate(rates, 1) == 100.0 and cost.group_rate(rates, 64) == 500.0  # the nearest measured


def test_cpu_factor_compares_unfused_rates_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "measured_throughput", lambda: {("mnist", "conv4", 128): {1: 100.0, 2: 150.0},
                                                              ("mnist", "mlp1", 128): {4: 1e6}})
    assert cost.cpu_factor({("mnist", "conv4", 128): {1: 2.5}, ("mnist", "mlp1", 128): {1: 1.0, 4: 1.0}}) == 40.0


def test_local_hours_picks_the_device_and_adds_every_unmeasured_group(tables: Path) -> None:
    cpu_h = (2 * 8000 * 4 / 4.0 + 8000 / 2.5) / 2 / 3600
    assert cost.local_hours(GROUPS, 1, 2, 0, 2)[0] == pytest.approx(cpu_h, rel=1e-12)  # CPU trials beside GPUs
    assert cost.local_hours(GROUPS, 1, 2, 0.5, 0)[1] == "2 CPU cores"  # a GPU request, no GPU here
    assert cost.local_hours(GROUPS, 1, 2, 1.0, 1) == (pytest.approx(cost.estimate(GROUPS, 1.0)["gpu_hours"]), "1 GPU")
    assert cost.local_hours(GROUPS, 2, 3, 0, 0)[0] == pytest.approx(cpu_h, rel=1e-12)  # one 2-core trial at a time
    mlps = [[config(arch="mlp2")], [config(arch="mlp4")]]  # no rows: each group's GPU estimate times cpu_factor
    gpu_s = sum(cost.estimate([g], 1.0)["gpu_hours"] for g in mlps) * 3600
    assert cost.local_hours(mlps, 1, 1, 0, 0)[0] == pytest.approx(gpu_s * 40.0 / 3600, rel=1e-12)
    assert cost.local_hours(mlps, 1, 1, 0.5, 2)[0] == pytest.approx(  # unmeasured on the GPU: the model path
        (cost.estimate(mlps, 0.5)["gpu_hours"]) / 2, rel=1e-12)


def test_the_model_path_counts_each_net_and_names_both_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cost, "measured_throughput", lambda: {("mnist", "perceptron", 128): {1: 1000.0}})
    monkeypatch.setattr(cost, "SUSTAINED_FLOPS", 1e6)  # compute-bound: each net's own FLOPs count
    mlp1, mlp2 = config(arch="mlp1"), config(arch="mlp2")
    steps = math.ceil(15_000 / 128)
    flops = {a: cost.forward_flops(a, mlp1["data"], mlp1["model"]) for a in ("mlp1", "mlp2")}
    out = cost.estimate([[config()], [mlp1], [mlp2]], 1.0)
    model_s = steps * 3 * 128 * (flops["mlp1"] + flops["mlp2"]) / 1e6
    assert out["gpu_hours"] == pytest.approx((15_000 / 1000.0 + model_s) / 3600, rel=1e-12)
    assert out["source"] == "measured (bench/results/*.json); model: H200, 2.7 ms/step floor, 0 TFLOP/s"


def test_shapes_and_sizes_of_every_dataset(tmp_path: Path) -> None:
    from PIL import Image

    assert cost.image_shape({"dataset": "mnist"}) == (1, 28, 28)
    assert cost.image_shape({"dataset": "cifar100", "image_size": 64}) == (3, 32, 32)
    assert cost.image_shape({"dataset": "imagenet"}) == (3, 224, 224)
    assert cost.image_shape({"dataset": "imagenet", "image_size": 64}) == (3, 64, 64)
    for split, count in (("train", 3), ("val", 1)):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20, 12)).save(tmp_path / split / name / f"{i}.png")
    tree = {"dataset": "folder", "path": str(tmp_path), "backend": "tensor", "image_size": 16}
    assert cost.image_shape(tree) == (3, 12, 20)  # one shared size: kept
    assert cost.image_shape({**tree, "backend": "ffcv"}) == (3, 16, 16)  # .betons are centre-cropped
    assert cost.train_size(tree) == 6 and cost.train_size({"dataset": "cifar10"}) == 50_000
    full = config(n_clean=None, alpha=0, epochs=1)
    assert cost.examples({**full, "data": {**full["data"], "n_val": 5000}}) == 55_000  # the held-out split is not trained
    c = config()
    assert cost.forward_flops("conv4", c["data"], c["model"]) != cost.forward_flops(
        "conv4", c["data"], {**c["model"], "fc_hidden": 64})  # the config's widths, not the defaults
