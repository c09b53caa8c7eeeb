"""study.schema: a rule for every config key, and one message format for a bad value."""

from __future__ import annotations

import pytest

from loaders.errors import UsageError
from study import launch, schema
from study.grid import flatten


@pytest.mark.parametrize("groups", [[], ["search=optuna", "scheduler=asha"]])
def test_every_config_key_has_a_rule(groups: list[str]) -> None:
    cfg, _ = launch.compose(["exp=batchsize", *groups])
    for key in flatten(cfg):
        assert any(key == k or key.startswith(k + ".") for k in schema.SCHEMA), key
    schema.check(cfg)  # the defaults are valid


@pytest.mark.parametrize("config,message", [
    ({"train": {"epochs": 1.5}}, "train.epochs=1.5 is invalid: it must be an integer > 0"),
    ({"data": {"n_clean": 0}}, "data.n_clean=0 is invalid: it must be null or an integer > 0"),
    ({"data": {"jpeg_quality": 101}}, "data.jpeg_quality=101 is invalid: it must be an integer in [1, 100]"),
    ({"noise": {"seed": 2**32}}, "noise.seed=4294967296 is invalid: it must be an integer in [0, 2**32)"),
    ({"resources": {"gpu": -1}}, "resources.gpu=-1 is invalid: it must be a number >= 0 (fractions share a GPU)"),
    ({"train": {"device": "tpu"}}, "train.device='tpu' is unknown: choose one of auto, cpu, cuda"),
    ({"data": {"rebuild": "yes"}}, "data.rebuild='yes' is invalid: it must be true or false"),
])
def test_one_message_format(config: dict, message: str) -> None:
    with pytest.raises(UsageError) as error:
        schema.check(config)
    assert str(error.value) == message
