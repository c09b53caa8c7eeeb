"""study.groups by hand: which configs share a group for every noise source, the group sizes each train.fuse
gives (balanced, in order of first appearance), the CPU cap read from bench.train's tables, and the seeds of
every replicate (fused training itself: tests/test_fused.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from study import cost, groups
from study.groups import max_members, partition, replicate
from tests.conftest import trial_config

SOURCES = ("same", "novel", "white", "cifar100")


def config(source: str = "same", lr: float = 0.1, seed: int = 0, noise_seed: int = 0, fuse: object = "auto",
           arch: str = "conv4", alpha: float = 5.0) -> dict:
    c = trial_config(Path("/data"))
    c["noise"].update(source=source, seed=noise_seed, alpha=alpha)
    c["train"].update(lr=lr, seed=seed, fuse=fuse)
    c["model"]["arch"] = arch
    return c


@pytest.mark.parametrize("source", SOURCES)
def test_members_differ_in_lr_init_and_labels_and_share_images(source: str) -> None:
    """Eight configs varying lr, train.seed and noise.seed: one group, unless noise.seed picks the images too
    (novel, white): then one group per noise.seed, in order of first appearance."""
    configs = [config(source, lr, seed, noise_seed) for noise_seed in (0, 1) for seed in (0, 1) for lr in (0.1, 0.5)]
    got = partition(configs, on_gpu=True)
    if source in ("novel", "white"):
        assert got == [configs[:4], configs[4:]]
    else:
        assert got == [configs]


def test_the_group_key_ignores_the_order_of_a_configs_keys() -> None:
    a, b = config(lr=0.1), config(lr=0.5)
    b = {section: dict(reversed(values.items())) for section, values in reversed(b.items())}
    assert partition([a, b], on_gpu=True) == [[a, b]]


@pytest.mark.parametrize("key, value", [("noise.alpha", 0.0), ("data.order_seed", 1), ("data.subset_seed", 1),
                                        ("model.arch", "conv2"), ("train.batch_size", 64), ("data.n_clean", 500)])
def test_any_other_key_splits_the_group(key: str, value: object) -> None:
    other = config()
    section, name = key.split(".")
    other[section][name] = value
    a, b = config(lr=0.5), config(seed=1)
    assert partition([a, other, b], on_gpu=True) == [[a, b], [other]]


@pytest.mark.parametrize("fuse, want", [
    (4, [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]),  # ceil(10 / 4) = 3 groups, sizes differ by at most one
    (5, [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]),
    (9, [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]),
    (10, [list(range(10))]),
    ("auto", [list(range(10))]),  # on a GPU: up to AUTO_MAX_K
    (1, [[i] for i in range(10)]),
    ("none", [[i] for i in range(10)]),
])
def test_the_cap_gives_balanced_groups(fuse: object, want: list[list[int]]) -> None:
    configs = [config(lr=0.01 * (i + 1), fuse=fuse) for i in range(10)]
    assert partition(configs, on_gpu=True) == [[configs[i] for i in group] for group in want]


def test_resnets_are_never_fused() -> None:
    configs = [config(lr=lr, arch="resnet18", fuse=8) for lr in (0.1, 0.5)]
    assert partition(configs, on_gpu=True) == [[configs[0]], [configs[1]]]
    assert max_members("auto", "resnet50", on_gpu=True) == 1


@pytest.fixture
def cpu_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench.train tables: a CPU one (conv4 faster at K = 4 only, mlp1 at 4 and 8, conv2 never) and a CUDA one."""
    rows = [{"arch": "conv4", "fuse": 1, "vs_unfused": 1.0}, {"arch": "conv4", "fuse": 4, "vs_unfused": 1.3},
            {"arch": "conv4", "fuse": 8, "vs_unfused": 0.9}, {"arch": "mlp1", "fuse": 8, "vs_unfused": 1.5},
            {"arch": "mlp1", "fuse": 4, "vs_unfused": 2.0}, {"arch": "conv2", "fuse": 4, "vs_unfused": 1.0},
            {"arch": "conv2", "fuse": 8, "vs_unfused": None}, {"arch": "conv6", "fuse": 16, "error": "out of memory"}]
    (tmp_path / "train-cpu.json").write_text(json.dumps({"device": "cpu (x86_64)", "rows": rows}))
    cuda = [{"arch": "conv2", "fuse": 64, "vs_unfused": 20.0}, {"arch": "conv4", "fuse": 64, "vs_unfused": 30.0}]
    (tmp_path / "train-h200.json").write_text(json.dumps({"device": "cuda (NVIDIA H200)", "rows": cuda}))
    monkeypatch.setattr(cost, "RESULTS", tmp_path)
    groups.cpu_gains.cache_clear()
    yield
    groups.cpu_gains.cache_clear()


def test_auto_on_a_cpu_is_the_largest_k_measured_faster(cpu_tables: None) -> None:
    assert groups.cpu_gains() == {"conv4": 4, "mlp1": 8}
    assert [max_members("auto", arch, on_gpu=False) for arch in ("conv4", "mlp1", "conv2", "conv6")] == [4, 8, 1, 1]
    assert max_members("auto", "conv2", on_gpu=True) == groups.AUTO_MAX_K == 64
    assert max_members(3, "conv2", on_gpu=False) == 3 and max_members("none", "mlp1", on_gpu=False) == 1
    configs = [config(lr=0.01 * (i + 1)) for i in range(9)]
    assert [len(g) for g in partition(configs, on_gpu=False)] == [3, 3, 3]  # ceil(9 / 4) = 3 groups


def test_replicates_follow_their_configs_with_every_seed_shifted() -> None:
    a, b = config(lr=0.1, seed=3, noise_seed=2**32 - 1500), config(lr=0.5, seed=4, noise_seed=9)
    a["data"].update(order_seed=11, subset_seed=12)
    before = copy.deepcopy([a, b])
    out = replicate([a, b], 3)
    assert [a, b] == before  # the configs given are not changed
    assert out[:2] == [a, b] and len(out) == 6
    for (r, base), got in zip([(1, a), (1, b), (2, a), (2, b)], out[2:]):
        want = copy.deepcopy(base)
        want["train"]["seed"] += 1000 * r
        want["data"]["order_seed"] += 1000 * r
        want["data"]["subset_seed"] += 1000 * r
        want["noise"]["seed"] = (want["noise"]["seed"] + 1000 * r) % 2**32
        assert got == want
    assert out[4]["noise"]["seed"] == 500  # 2**32 - 1500 + 2000 wraps
    assert replicate([a, b], 1) == [a, b]
    assert replicate([config(seed=2**32 - 1)], 2)[1]["train"]["seed"] == 2**32 + 999  # only noise.seed wraps
    pinned = replicate([a], 2, pinned=("train.seed", "data.order_seed"))[1]
    assert (pinned["train"]["seed"], pinned["data"]["order_seed"], pinned["data"]["subset_seed"],
            pinned["noise"]["seed"]) == (3, 11, 1012, 2**32 - 500)
