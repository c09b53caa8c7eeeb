"""study.config: every key declared once with a rule, one message form for a bad value, every experiment and
preset composing to a checked config, a stored config loading again, and a trial that trusts its config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from errors import UsageError, rules
from loaders import data, noise
from study import config
from study.trial import Trial
from tests.conftest import trial_config


@pytest.mark.parametrize("groups", [[], ["search=optuna", "scheduler=asha"]])
def test_every_config_key_has_a_rule(groups: list[str]) -> None:
    cfg, _ = config.compose(["exp=batchsize", "replicates=1", *groups])  # composed: the defaults are valid

    def walk(section: object, prefix: str) -> None:
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{field.name}.")
            else:
                assert field.name in rules(section), prefix + field.name

    walk(cfg, "")


@pytest.mark.parametrize("key,value,message", [
    ("train.epochs", 1.5, "train.epochs=1.5 is invalid: it must be an integer > 0"),
    ("data.n_clean", 0, "data.n_clean=0 is invalid: it must be null or an integer > 0"),
    ("data.jpeg_quality", 101, "data.jpeg_quality=101 is invalid: it must be an integer in [1, 100]"),
    ("noise.seed", 2**32, "noise.seed=4294967296 is invalid: it must be an integer in [0, 2**32)"),
    ("resources.gpu", -1, "resources.gpu=-1 is invalid: it must be a number >= 0 (fractions share a GPU)"),
    ("train.device", "tpu", "train.device='tpu' is unknown: choose one of auto, cpu, cuda"),
    ("data.rebuild", "yes", "data.rebuild='yes' is invalid: it must be true or false"),
    ("train.nope", 1, "train.nope=1 is unknown: choose one of lr, batch_size, epochs, seed, loss"),
])
def test_one_message_format(key: str, value: object, message: str) -> None:
    with pytest.raises(UsageError) as error:
        config.check_value(key, value)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("exp", config.options("exp"))
@pytest.mark.parametrize("preset", config.options("preset"))
def test_every_experiment_composes_at_every_preset(exp: str, preset: str) -> None:
    cfg, names = config.compose([f"exp={exp}", f"preset={preset}"])
    assert isinstance(cfg, config.Config) and names["exp"] == exp and cfg.figures


def test_a_stored_config_loads_with_the_keys_added_since() -> None:
    cfg, _ = config.compose(["exp=structured", "preset=smoke"])
    stored = dataclasses.asdict(cfg)
    assert config.load(stored) == cfg
    del stored["data"]["n_val"], stored["search"]["space"]  # a study.json from before they existed
    assert config.load(stored) == cfg
    with pytest.raises(UsageError, match=r"^noise.beta=1 is unknown: choose one of alpha, seed, delta"):
        config.load({**stored, "noise": {"beta": 1}})


def test_a_trial_trusts_its_checked_config(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial walk (trainable -> Trial -> loaders.data.build -> train step) checks nothing the launcher
    checked: the noise section becomes a spec once per member, and its distribution is computed once."""
    members = [trial_config(data_root, data={"n_clean": 200, "n_test": 200}, train={"lr": lr, "epochs": 1},
                            noise={"alpha": 1.0, "seed": seed}) for lr, seed in ((0.1, 0), (0.5, 1))]

    def refuse(*args: object) -> None:
        raise AssertionError("a trial re-ran the launcher's checks")

    monkeypatch.setattr(config, "check_trial", refuse)
    monkeypatch.setattr(data, "check", refuse)
    counts = {"spec": 0, "distribution": 0}
    post_init, distribution = noise.NoiseSpec.__post_init__, data.distribution

    def counted_post_init(spec: noise.NoiseSpec) -> None:
        counts["spec"] += 1
        post_init(spec)

    def counted_distribution(*args: object) -> object:
        counts["distribution"] += 1
        return distribution(*args)

    monkeypatch.setattr(noise.NoiseSpec, "__post_init__", counted_post_init)
    monkeypatch.setattr(data, "distribution", counted_distribution)
    Trial(members).run(lambda reports: None)
    assert counts == {"spec": 2, "distribution": 2}


def test_human_noise_takes_its_annotator_set_as_one_key() -> None:
    """exp=human_noise annotators=worst: both human arms read CIFAR-10N's worst labels, the uniform arm stays; the
    key alone (noise.labels= for every trial) is refused with one line naming annotators= (issue 23)."""
    cfg, _ = config.compose(["exp=human_noise", "preset=smoke", "annotators=worst"])
    assert cfg.grid["noise"]["alpha"] == [0, 2, 5] and cfg.noise.labels is None and cfg.noise.matrix is None
    assert [g["noise"] for g in cfg.grid_extra] == [{"alpha": [2, 5], "matrix": ["cifar10n:worst"]},
                                                    {"alpha": [2, 5], "labels": ["cifar10n:worst"]}]
    default, _ = config.compose(["exp=human_noise"])
    assert {v for g in default.grid_extra for k, v in g["noise"].items() if k != "alpha" for v in v} == {"cifar10n:random"}
    with pytest.raises(UsageError, match=r"^noise.labels='cifar10n:worst' for every trial and noise.matrix from this "
                                         r"study's grid are two ways .* annotators=<random\|worst\|aggre>"):
        config.compose(["exp=human_noise", "noise.labels=cifar10n:worst"])
    with pytest.raises(UsageError, match=r"^annotators='best' is unknown: choose one of random, worst, aggre$"):
        config.compose(["exp=human_noise", "annotators=best"])
