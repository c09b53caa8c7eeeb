"""grid_extra: trials added to a study's grid without crossing them with all of it (Fig. 11's H_alpha runs)."""

from __future__ import annotations

import pytest

from errors import UsageError
from study import config
from study.grid import expand, grids_of
from study.storage import trial_base


def test_batchsize_study_adds_h_alpha_runs_at_one_batch_size() -> None:
    cfg, _ = config.compose(["exp=batchsize", "preset=paper"])
    base = trial_base(cfg)
    grids = grids_of(cfg.grid, cfg.grid_extra)
    configs = [c for grid in grids for c in expand(base, grid)]
    alphas, lrs = len(cfg.grid["noise"]["alpha"]), len(cfg.grid["train"]["lr"])
    ce = [c for c in configs if c["train"]["loss"] == "ce"]
    h_alpha = [c for c in configs if c["train"]["loss"] == "h_alpha"]
    assert len(ce) == alphas * 4 * lrs and {c["train"]["batch_size"] for c in ce} == {32, 64, 128, 256}
    assert len(h_alpha) == alphas * lrs and {c["train"]["batch_size"] for c in h_alpha} == {128}
    assert {c["noise"]["alpha"] for c in h_alpha} == {c["noise"]["alpha"] for c in ce}


def test_grid_extra_must_be_a_list_of_grids() -> None:
    with pytest.raises(UsageError, match=r"^grid_extra=.* is invalid: it must be a list of partial grids$"):
        config.compose(["grid_extra={train: {loss: [h_alpha]}}"])
    with pytest.raises(UsageError, match=r"grid_extra\[0\].train.loss=.h_alpha. is invalid: it must be a non-empty list"):
        grids_of({}, [{"train": {"loss": "h_alpha"}}])


def test_grid_algebra_by_hand() -> None:
    """flatten, with_value, grids_of and expand on a small tree: exact keys, order and copies."""
    from study.grid import flatten, with_value

    tree = {"noise": {"alpha": [0, 5], "seed": 1}, "train": {"lr": [0.1], "conv": {"deep": [1, 2]}}, "k": "v"}
    assert flatten(tree) == {"noise.alpha": [0, 5], "noise.seed": 1, "train.lr": [0.1], "train.conv.deep": [1, 2],
                             "k": "v"}
    assert flatten({}) == {} and flatten({"a": {}}) == {}
    base = {"noise": {"alpha": 0.0, "seed": 0}, "train": {"lr": 0.1, "epochs": 3}}
    moved = with_value(base, "train.lr", 0.5)
    assert moved == {"noise": {"alpha": 0.0, "seed": 0}, "train": {"lr": 0.5, "epochs": 3}}
    assert base["train"]["lr"] == 0.1 and moved["noise"] is base["noise"]  # a copy along the path only
    with pytest.raises(UsageError, match=r"^grid.train.momentum=0.9 is unknown: choose one of lr, epochs$"):
        with_value(base, "train.momentum", 0.9)
    with pytest.raises(UsageError, match=r"^grid.train.lr.x=1 is unknown: choose one of lr, epochs$"):
        with_value(base, "train.lr.x", 1)
    with pytest.raises(UsageError, match=r"^grid.model.arch=.conv2. is unknown: choose one of noise, train$"):
        with_value(base, "model.arch", "conv2")
    grids = grids_of({"noise": {"alpha": [0, 5]}, "train": {"lr": [0.1, 0.5]}},
                     [{"train": {"lr": [1.0]}}, {"noise": {"seed": [3]}}])
    assert grids == [{"noise.alpha": [0, 5], "train.lr": [0.1, 0.5]},
                     {"noise.alpha": [0, 5], "train.lr": [1.0]},
                     {"noise.alpha": [0, 5], "train.lr": [0.1, 0.5], "noise.seed": [3]}]
    points = [(c["noise"]["alpha"], c["train"]["lr"]) for c in expand(base, grids[0])]
    assert points == [(0, 0.1), (0, 0.5), (5, 0.1), (5, 0.5)]  # the last key varies fastest
    assert expand(base, {}) == [base]
    with pytest.raises(UsageError, match=r"^grid.noise.alpha=\[\] is invalid: it must be a non-empty list$"):
        grids_of({"noise": {"alpha": []}}, [])
    with pytest.raises(UsageError, match=r"^grid.noise.alpha=5 is invalid: it must be a non-empty list$"):
        grids_of({"noise": {"alpha": 5}}, [])


def test_placed_sets_each_resolved_path_in_every_member() -> None:
    """grid.placed: the paths this launch resolved (data.root, noise.confusion, ...) set in each member config."""
    from study.grid import placed

    members = [{"data": {"root": "data", "n": 1}, "noise": {"confusion": None}},
               {"data": {"root": "data", "n": 2}, "noise": {"confusion": None}}]
    paths = {"data.root": "/lab/data", "noise.confusion": "/lab/c.npy"}
    assert placed(members, paths) == [{"data": {"root": "/lab/data", "n": 1}, "noise": {"confusion": "/lab/c.npy"}},
                                      {"data": {"root": "/lab/data", "n": 2}, "noise": {"confusion": "/lab/c.npy"}}]
    assert members[0]["data"]["root"] == "data"  # copies: the members given are left as they were
    assert placed(members, None) == members and placed(members, {}) == members
    with pytest.raises(UsageError, match=r"^grid.data.cache='/x' is unknown: choose one of root, n$"):
        placed(members, {"data.cache": "/x"})
