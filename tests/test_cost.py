"""study.cost.estimate against hand-computed GPU-hours: the measured-rate path and the model path."""

from __future__ import annotations

import json
import math
from pathlib import Path
import os

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
