"""study.cost.estimate against hand-computed GPU-hours: the measured-rate path and the model path."""

from __future__ import annotations

import math

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
