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
    assert [g["noise"] for g in cfg.grid_extra] == [
        {"alpha": [2, 5], "matrix": ["cifar10n:worst"], "draw": ["copy", "image"]},
        {"alpha": [2, 5], "labels": ["cifar10n:worst"], "draw": ["image"]}]
    default, _ = config.compose(["exp=human_noise"])
    assert {v for g in default.grid_extra for k, v in g["noise"].items() if k in ("matrix", "labels")
            for v in v} == {"cifar10n:random"}
    with pytest.raises(UsageError, match=r"^noise.labels='cifar10n:worst' for every trial and noise.matrix from this "
                                         r"study's grid are two ways .* annotators=<random\|worst\|aggre>"):
        config.compose(["exp=human_noise", "noise.labels=cifar10n:worst"])
    with pytest.raises(UsageError, match=r"^annotators='best' is unknown: choose one of random, worst, aggre$"):
        config.compose(["exp=human_noise", "annotators=best"])


def test_the_defaults() -> None:
    """Every key's default, written out: the paper's batch of 128 (§3.4), no held-out split, one replicate."""
    assert dataclasses.asdict(config.Config()) == {
        "data": {"dataset": "mnist", "root": None, "path": None, "download": True, "n_clean": None, "n_test": None,
                 "n_val": 0, "subset_seed": 0, "order_seed": 0, "stand_in": False, "image_size": 224, "backend": "auto",
                 "cache": None, "rebuild": False, "workers": None, "max_resolution": 256, "jpeg_quality": 90},
        "noise": {"alpha": 0.0, "seed": 0, "delta": 0.0, "order": "confusing", "source": "same", "confusion": None,
                  "matrix": None, "labels": None, "draw": "copy"},
        "model": {"arch": "conv4", "mlp_hidden": 256, "conv_channels": [32, 32, 64, 64, 128, 128], "fc_hidden": 128},
        "train": {"lr": 0.1, "batch_size": 128, "epochs": 10, "seed": 0, "loss": "ce", "device": "auto", "fuse": "auto",
                  "compile": "auto", "report_confusion": False, "checkpoint_every": 1},
        "replicates": 1, "replicate_pin": [], "grid": {}, "grid_extra": [], "figures": [],
        "search": {"name": "grid", "trials_per_cell": 8, "seed": 0, "space": {}},
        "scheduler": {"name": "none", "grace_period": 1, "reduction_factor": 3.0},
        "resources": {"cpu": 1.0, "gpu": 0.0, "allow_cpu_fallback": False, "gpu_wait": "15m"},
        "max_concurrent_trials": None,
        "max_failures": 3, "storage": {"root": None}, "ray": {"address": None, "num_cpus": None}, "dry_run": False,
        "force": False, "run_dir": None, "resume": None, "budget": None, "annotators": "random", "dashboard": False,
        "runner": "tune"}
    assert config.Config().model.conv_channels is not config.Config().model.conv_channels  # a fresh list each
    assert config.REPLICATED == ("train.seed", "noise.seed", "data.order_seed", "data.subset_seed")


POSITIVE = ([1, 7], [0, -1, 1.5, True, None, "1"])
SEED = ([0, 12], [-1, 0.5, None])
FLAGS = ([True, False], [1, 0, "yes", None])
PATHS = ([None, "/x", "~/y"], [1, ["/x"]])
NULL_POSITIVE = ([None, 1, 3], [0, -1, 1.5, True])
# key -> (values accepted, values refused), at each rule's edges
EDGES = {
    "data.dataset": (["mnist", "cifar10", "cifar100", "imagenet", "folder"], ["svhn", "MNIST", None]),
    "data.root": PATHS, "data.path": PATHS, "data.cache": PATHS, "storage.root": PATHS, "run_dir": PATHS,
    "resume": PATHS,
    "data.download": FLAGS, "data.stand_in": FLAGS, "data.rebuild": FLAGS, "train.report_confusion": FLAGS,
    "resources.allow_cpu_fallback": FLAGS, "dry_run": FLAGS, "force": FLAGS,
    "data.n_clean": NULL_POSITIVE, "data.n_test": NULL_POSITIVE, "ray.num_cpus": NULL_POSITIVE,
    "max_concurrent_trials": NULL_POSITIVE,
    "data.n_val": ([0, 5000], [-1, 0.5, None]), "data.subset_seed": SEED, "data.order_seed": SEED,
    "train.seed": SEED, "search.seed": SEED,
    "data.image_size": POSITIVE, "data.max_resolution": POSITIVE, "model.mlp_hidden": POSITIVE,
    "model.fc_hidden": POSITIVE, "train.batch_size": POSITIVE, "train.epochs": POSITIVE,
    "search.trials_per_cell": POSITIVE, "scheduler.grace_period": POSITIVE, "replicates": POSITIVE,
    "data.backend": (["auto", "tensor", "ffcv", "torch"], ["dali", None]),
    "data.workers": ([None, 0, 4], [-1, 1.5]),
    "data.jpeg_quality": ([1, 100], [0, 101, 50.5]),
    "model.arch": (["perceptron", "mlp1", "mlp2", "mlp4", "conv2", "conv4", "conv6", "resnet18", "resnet101"],
                   ["resnet50", "conv8"]),
    "model.conv_channels": ([[1], [32, 64]], [[], [0], [1.5], [True], 32, None]),
    "train.lr": ([1e-9, 0.1, 3], [0, -0.1, float("nan"), float("inf"), True, None]),
    "train.loss": (["ce", "h_alpha"], ["mse"]),
    "train.device": (["auto", "cpu", "cuda"], ["tpu", "gpu"]),
    "train.fuse": (["auto", "none", 1, 64], [0, -1, "all", 1.5, True, None]),
    "train.compile": (["auto", "none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                      ["fast", None]),
    "train.checkpoint_every": ([0, 1, 5], [-1, 1.5, None]),
    "search.name": (["grid", "optuna"], ["random"]), "scheduler.name": (["none", "asha"], ["hyperband"]),
    "search.space": ([{}, {"train.lr": {"loguniform": [0.01, 1]}}], [[], None, "x"]),
    "scheduler.reduction_factor": ([1.001, 3, 4.5], [1, 0.5, None]),
    "resources.cpu": ([0.5, 1, 4], [0, -1, None]), "resources.gpu": ([0, 0.25, 2], [-0.1, None, True]),
    "ray.address": ([None, "auto", "10.0.0.1:6379"], [5, ["auto"]]),
    "replicate_pin": ([[], ["train.seed", "noise.seed", "data.order_seed", "data.subset_seed"]],
                      [["model.arch"], "train.seed", None]),
    "grid": ([{}, {"noise": {"alpha": [0, 5]}}], [[], None]),
    "grid_extra": ([[], [{}], [{"noise": {"alpha": [1]}}]], [{}, [1], None]),
    "figures": ([[], ["fig1"]], ["fig1", None]),
    "max_failures": ([-1, 0, 3], [-2, 1.5, None]),
    "annotators": (["random", "worst", "aggre"], ["best", None]), "dashboard": FLAGS,
    "runner": (["tune", "local"], ["ray", "Local", None]),
    "resources.gpu_wait": (["15m", "90s", "0.5h"], ["0s", "5", "1d", None, 5]),
    "budget": ([None, "90s", "12m", "1.5h", "0.5s"], ["0s", "0.0m", "5", "1d", "-3h", 5, "h"]),
}


@pytest.mark.parametrize("key", list(EDGES))
def test_each_key_accepts_and_refuses_at_its_edges(key: str) -> None:
    good, bad = EDGES[key]
    for value in good:
        config.check_value(key, value)
    for value in bad:
        with pytest.raises(UsageError, match=rf"^{key}={repr(value).replace('[', '[[]')[:20].replace('(', '[(]')}"):
            config.check_value(key, value)


def test_every_key_has_its_edges() -> None:
    def keys(spec: object, prefix: str = "") -> list[str]:
        out = []
        for f in dataclasses.fields(spec):
            section = f.default_factory if f.name in ("data", "model", "train", "search", "scheduler", "resources",
                                                       "storage", "ray") else None
            out += keys(section, f"{prefix}{f.name}.") if section else [] if f.name == "noise" else [prefix + f.name]
        return out

    assert sorted(keys(config.Config)) == sorted(EDGES)  # noise.*: loaders.noise.NoiseSpec (tests/test_noise.py)


@pytest.mark.parametrize("argv, message", [
    (["replicates=3", "search=optuna"], "replicates=3 needs search=grid and scheduler=none (optuna and ASHA choose one "
     "config per trial): use replicates=1, or search.trials_per_cell"),
    (["replicates=2", "scheduler=asha"], "replicates=2 needs search=grid and scheduler=none"),
    (["budget=1h", "search=optuna", "replicates=1"], "budget='1h' needs search=grid and scheduler=none (optuna and ASHA draw or stop "
     "trials as they go, and a slice would cut that short): drop budget, or use those"),
    (["budget=1h", "train.checkpoint_every=0"], "budget='1h' needs train.checkpoint_every >= 1 (0: never), or a trial "
     "cut by the budget starts again from its first epoch"),
])
def test_rules_across_sections(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        config.compose(argv)
    assert str(err.value).startswith(message)


def test_grouped_and_trials_per_cell() -> None:
    assert config.Config().grouped and config.Config().per_cell == 1
    optuna = config.Config(search=config.Search(name="optuna", trials_per_cell=5))
    assert not optuna.grouped and optuna.per_cell == 5
    asha = config.Config(scheduler=config.Scheduler(name="asha"), search=config.Search(trials_per_cell=5))
    assert not asha.grouped and asha.per_cell == 1  # trials_per_cell is optuna's
    config.Config(replicates=2, budget="1h")  # both fine on a grid


def test_section_and_unknown_keys_named() -> None:
    with pytest.raises(UsageError, match=r"^data=5 is invalid: it must be a section: set its keys \(dataset, root, "):
        config.check_value("data", 5)
    with pytest.raises(UsageError, match=r"^colour=1 is unknown: choose one of data, noise, model, train, replicates"):
        config.check_value("colour", 1)
    with pytest.raises(UsageError, match=r"^ray.port=1 is unknown: choose one of address, num_cpus$"):
        config.check_value("ray.port", 1)
    assert config.owner("train.lr") == (config.Train, "lr") and config.owner("nope.lr") == (config.Config, "nope")
    assert config.names(config.Ray) == ["address", "num_cpus"]
