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
