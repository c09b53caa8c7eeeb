"""study.config: every key declared once with a rule, one message form for a bad value, every experiment and
preset composing to a checked config, a stored config loading again, and a trial that trusts its config."""

from __future__ import annotations

import dataclasses
import re
import warnings
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
        with pytest.raises(UsageError, match="^" + re.escape(f"{key}={value!r}"[:40])):  # the message names key and value
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
    assert config.owner("train.lr") == (config.Train, "lr") and config.owner("nope.lr") == (config.Config, "nope.lr")
    assert config.names(config.Ray) == ["address", "num_cpus"]


DURATION_WORDS = "a duration > 0: a number and s, m or h, e.g. 90s, 12m, 3h"


def test_duration_words_and_edges() -> None:
    """duration(): a number and s, m or h, > 0, as a string; null only when asked for. Called here (the Config's
    own rules were built at import) and read through the rules the Config holds for budget and gpu_wait."""
    rule, nullable = config.duration(), config.duration(null=True)
    assert rule.must == DURATION_WORDS and nullable.must == "null or " + DURATION_WORDS
    for value in ("90s", "12m", "3h", "1.5h", "0.5h", "0.5s", "5s", "1s", "100m"):
        rule.check("d", value)
        nullable.check("d", value)
    nullable.check("d", None)
    for value in ("0s", "0.0m", "12", "12d", 12, 1.5, None, "h", "-3h", "90S", " 90s", "1e3s", "1.5.2h"):
        with pytest.raises(UsageError) as error:
            rule.check("d", value)
        assert str(error.value) == f"d={value!r} is invalid: it must be {DURATION_WORDS}"
    for value in ("0s", "12", "12d", 12):
        with pytest.raises(UsageError) as error:
            nullable.check("d", value)
        assert str(error.value) == f"d={value!r} is invalid: it must be null or {DURATION_WORDS}"
    assert rules(config.Config)["budget"].must == "null or " + DURATION_WORDS
    assert rules(config.Resources)["gpu_wait"].must == DURATION_WORDS
    config.check_value("budget", None)
    config.check_value("resources.gpu_wait", "0.5h")
    with pytest.raises(UsageError) as error:
        config.check_value("resources.gpu_wait", None)
    assert str(error.value) == f"resources.gpu_wait=None is invalid: it must be {DURATION_WORDS}"
    with pytest.raises(UsageError) as error:
        config.check_value("budget", "0s")
    assert str(error.value) == f"budget='0s' is invalid: it must be null or {DURATION_WORDS}"


class Keyed(Exception):
    """An OmegaConf-like error: the dotted key it failed at, and the value there."""

    def __init__(self, message: str, full_key: str, value: object) -> None:
        super().__init__(message)
        self.full_key, self.value = full_key, value


class KeyOnly(Exception):
    """An error that names a key but carries no value."""

    def __init__(self, message: str, full_key: str) -> None:
        super().__init__(message)
        self.full_key = full_key


def caused(outer: Exception, cause: Exception) -> Exception:
    """outer raised from cause, as Hydra raises its error from OmegaConf's."""
    outer.__cause__ = cause
    return outer


TRAIN_KEYS = "lr, batch_size, epochs, seed, loss, device, fuse, compile, report_confusion, checkpoint_every"
DATA_KEYS = ("dataset, root, path, download, n_clean, n_test, n_val, subset_seed, order_seed, stand_in, image_size, "
             "backend, cache, rebuild, workers, max_resolution, jpeg_quality")


@pytest.mark.parametrize("exc, given, message", [
    # an item of a list: the list's key, with the list given
    (Keyed("x", "model.conv_channels[1]", "x"), {"model.conv_channels": [1, "x"]},
     "model.conv_channels=[1, 'x'] is invalid: it must be a list of integers > 0"),
    # the key an error names from its cause (Hydra wraps OmegaConf's), else its own
    (caused(Exception("Error merging override train.lr=abc"), Keyed("x", "train.lr", "abc")), {"train.lr": "abc"},
     "train.lr='abc' is invalid: it must be a number > 0"),
    (caused(Keyed("x", "train.epochs", 0), ValueError("no key")), {"train.epochs": 0},
     "train.epochs=0 is invalid: it must be an integer > 0"),
    # a key not given, but a key under it given: that one is named, with its value
    (Keyed("x", "data", {}), {"data.n_clean": 0, "train.lr": 1},
     "data.n_clean=0 is invalid: it must be null or an integer > 0"),
    # a key given, and a key under it given too: the one the error names
    (Keyed("x", "data", 5), {"data": 5, "data.n_clean": 3}, f"data=5 is invalid: it must be a section: set its keys "
                                                             f"({DATA_KEYS})"),
    # a key not given (set inside a section given whole): the error's value
    (Keyed("x", "train.lr", "abc"), {"train": {"lr": "abc"}}, "train.lr='abc' is invalid: it must be a number > 0"),
    (Keyed("x", "train.lr", "abc"), {}, "train.lr='abc' is invalid: it must be a number > 0"),
    (KeyOnly("x", "train.lr"), {}, "train.lr=None is invalid: it must be a number > 0"),
    (Keyed("x", "train.nope", 2), {}, f"train.nope=2 is unknown: choose one of {TRAIN_KEYS}"),
    # +key=value for a key that exists
    (Exception("Could not append to config. An item is already at 'train.lr'.\nEither remove + prefix: "
               "'train.lr=0.1'\nOr add a second + to add or override 'train.lr': '++train.lr=0.1'\n"),
     {"train.lr": 0.1}, "+train.lr=0.1 is invalid: it must be train.lr=... without + (the key exists)"),
    # ... but not for a key not given: then it is the error's first lines
    (Exception("Could not append to config. An item is already at 'train.lr'.\nEither remove + prefix\n\nOr not\n"),
     {"train.epochs": 2}, "bad override: Could not append to config. An item is already at 'train.lr'. Either remove "
                          "+ prefix Or not"),
    # a key whose rule takes the value, or no key at all: the first three non-empty lines, stripped, in one
    (Keyed("Error merging\n\n  it broke  \n", "train.lr", 0.5), {"train.lr": 0.5},
     "bad override: Error merging it broke"),
    (Exception("  first line \n\n second\n\t\nthird  \nfourth\nfifth"), {}, "bad override: first line second third"),
])
def test_translated_names_the_key_and_the_value(exc: Exception, given: dict[str, object], message: str) -> None:
    """translated(): an OmegaConf or Hydra error as one line naming the key given and its value, in each branch."""
    error = config.translated(exc, given)
    assert isinstance(error, UsageError) and str(error) == message


@pytest.mark.parametrize("argv, message", [
    (["+train.lr=0.1"], "+train.lr=0.1 is invalid: it must be train.lr=... without + (the key exists)"),
    (["model.conv_channels=[1,x]"], "model.conv_channels=[1, 'x'] is invalid: it must be a list of integers > 0"),
    (["train={lr:abc}"], "train.lr='abc' is invalid: it must be a number > 0"),
    (["data=5", "data.n_clean=3"], f"data=5 is invalid: it must be a section: set its keys ({DATA_KEYS})"),
    (["+train.foo=${train.lr}"], f"train.foo='${{train.lr}}' is unknown: choose one of {TRAIN_KEYS}"),  # as given
    (["+data.x.y=1"], f"data.x={{'y': 1}} is unknown: choose one of {DATA_KEYS}"),
    (["+foo=1"], "foo=1 is unknown: choose one of data, noise, model, train, replicates, replicate_pin, grid, "
                 "grid_extra, figures, annotators, search, scheduler, resources, max_concurrent_trials, max_failures, "
                 "storage, ray, runner, dry_run, dashboard, force, run_dir, resume, budget"),
    (["data.dataset=folder"], "data.dataset=folder needs data.path=<dir> holding train/<class>/ and val/<class>/ image "
                              "folders"),
    (["exp=nope"], "exp='nope' is unknown: choose one of batchsize, confusion, dataset_size, dataset_size_imagenet, "
                   "human_noise, learning_rate, noise_source, repeated, structured, uniform_cifar10, uniform_imagenet, "
                   "uniform_mnist"),
    (["preset=nope"], "preset='nope' is unknown: choose one of paper, smoke"),
    (["search=random"], "search='random' is unknown: choose one of grid, optuna"),
    (["scheduler=hyperband"], "scheduler='hyperband' is unknown: choose one of asha, none"),
    (["train.lr=a=["], "train.lr='a=[' is invalid: it must be a value in Hydra's override grammar, e.g. [0,5] for a "
                       "list (mismatched input '=' expecting <EOF>)"),
    (["+Xkey=["], "Xkey='[' is invalid: it must be a value in Hydra's override grammar, e.g. [0,5] for a list (no "
                  "viable alternative at input '[')"),
    (["~train.lr=("], "train.lr='(' is invalid: it must be a value in Hydra's override grammar, e.g. [0,5] for a list "
                      "(Error parsing override '~train.lr=(')"),
])
def test_compose_refuses_in_one_line(argv: list[str], message: str) -> None:
    """compose(): a bad override (grammar, group, key, added key, value, section) is one exact line."""
    with pytest.raises(UsageError) as error:
        config.compose(argv)
    assert str(error.value) == message


def test_compose_returns_the_config_and_the_chosen_groups() -> None:
    """compose(): the typed Config of the overrides and the choice of each group, defaults included."""
    cfg, choices = config.compose(["search=optuna", "scheduler=asha", "replicates=1", "preset=smoke", "train.lr=0.5"])
    assert isinstance(cfg, config.Config) and isinstance(cfg.train, config.Train) and cfg.train.lr == 0.5
    assert (cfg.search.name, cfg.scheduler.name, cfg.replicates) == ("optuna", "asha", 1)
    assert {k: choices[k] for k in (*config.GROUPS, "exp_preset")} == {
        "exp": "uniform_mnist", "preset": "smoke", "search": "optuna", "scheduler": "asha",
        "exp_preset": "uniform_mnist_smoke"}
    assert "hydra" not in dataclasses.asdict(cfg)


def test_compose_warns_of_nothing() -> None:
    """compose() names Hydra's version_base, so Hydra says nothing (no Hydra14MigrationWarning) on every run."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config.compose(["preset=smoke"])
    assert [str(w.message) for w in caught] == []


def test_options_are_the_yaml_files_of_a_group() -> None:
    """options(group): the names of the yaml files under study/conf/<group>/, sorted."""
    conf = Path(config.__file__).parent / "conf"
    assert config.GROUPS == ("exp", "preset", "search", "scheduler")
    for group in (*config.GROUPS, "exp_preset"):
        assert config.options(group) == sorted(p.stem for p in (conf / group).glob("*.yaml")), group
    assert config.options("search") == ["grid", "optuna"] and config.options("scheduler") == ["asha", "none"]
    assert config.options("preset") == ["paper", "smoke"] and "uniform_mnist" in config.options("exp")


def test_store_registers_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """store(): the Config dataclass registered as Hydra's `schema`, which config.yaml names first."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    monkeypatch.setattr(store, "repo", {})
    config.store()
    assert list(store.repo) == ["schema.yaml"]
    assert OmegaConf.get_type(store.repo["schema.yaml"].node) is config.Config
    assert OmegaConf.to_object(store.repo["schema.yaml"].node) == config.Config()


@pytest.mark.parametrize("build, message", [
    (lambda: config.Data(n_clean=0), "data.n_clean=0 is invalid: it must be null or an integer > 0"),
    (lambda: config.Data(dataset="folder"), "data.dataset=folder needs data.path=<dir> holding train/<class>/ and "
                                            "val/<class>/ image folders"),
    (lambda: config.Data(dataset="folder", path=""), "data.dataset=folder needs data.path=<dir> holding "
                                                     "train/<class>/ and val/<class>/ image folders"),
    (lambda: config.Model(conv_channels=[]), "model.conv_channels=[] is invalid: it must be a list of integers > 0"),
    (lambda: config.Train(fuse=0), "train.fuse=0 is invalid: it must be auto, none or an integer >= 1 (the most "
                                   "members per trial)"),
    (lambda: config.Search(space=[]), "search.space=[] is invalid: it must be a mapping of config keys to "
                                      "{domain: args}"),
    (lambda: config.Scheduler(reduction_factor=1), "scheduler.reduction_factor=1 is invalid: it must be a number > 1"),
    (lambda: config.Resources(gpu_wait="0s"), f"resources.gpu_wait='0s' is invalid: it must be {DURATION_WORDS}"),
    (lambda: config.Storage(root=1), "storage.root=1 is invalid: it must be null or a path"),
    (lambda: config.Ray(address=5), "ray.address=5 is invalid: it must be null, auto or host:port"),
    (lambda: config.Config(budget="0s"), f"budget='0s' is invalid: it must be null or {DURATION_WORDS}"),
    (lambda: config.Config(replicate_pin=["model.arch"]), "replicate_pin=['model.arch'] is invalid: it must be a "
     "list of seeds replicates keep fixed, each one of train.seed, noise.seed, data.order_seed, data.subset_seed"),
])
def test_each_section_checks_its_keys_by_their_full_names(build: object, message: str) -> None:
    """Each dataclass's __post_init__ checks its keys, named with their section (data.n_clean, not n_clean)."""
    with pytest.raises(UsageError) as error:
        build()  # type: ignore[operator]
    assert str(error.value) == message


def test_each_section_takes_its_defaults_and_good_values() -> None:
    """What the sections' rules take: a folder with a path, any dataset but folder without one."""
    config.Data(dataset="folder", path="/x")
    config.Data(dataset="cifar10")
    for section in (config.Data, config.Model, config.Train, config.Search, config.Scheduler, config.Resources,
                    config.Storage, config.Ray, config.Config):
        section()


OPTUNA, ASHA = config.Search(name="optuna"), config.Scheduler(name="asha")
GRID_ONLY = "search=grid and scheduler=none"


@pytest.mark.parametrize("kwargs, message", [
    ({"replicates": 2, "search": OPTUNA}, f"replicates=2 needs {GRID_ONLY} (optuna and ASHA choose one config per "
                                          f"trial): use replicates=1, or search.trials_per_cell"),
    ({"replicates": 3, "scheduler": ASHA}, f"replicates=3 needs {GRID_ONLY} (optuna and ASHA choose one config per "
                                           f"trial): use replicates=1, or search.trials_per_cell"),
    ({"replicates": 2}, None), ({"replicates": 1, "search": OPTUNA}, None),
    ({"replicates": 1, "scheduler": ASHA}, None),
    ({"budget": "1h", "search": OPTUNA}, f"budget='1h' needs {GRID_ONLY} (optuna and ASHA draw or stop trials as they "
                                         f"go, and a slice would cut that short): drop budget, or use those"),
    ({"budget": "90s", "scheduler": ASHA}, f"budget='90s' needs {GRID_ONLY} (optuna and ASHA draw or stop trials as "
                                           f"they go, and a slice would cut that short): drop budget, or use those"),
    ({"budget": "90s"}, None), ({"budget": None, "search": OPTUNA}, None),
    ({"budget": "2m", "train": config.Train(checkpoint_every=0)}, "budget='2m' needs train.checkpoint_every >= 1 (0: "
     "never), or a trial cut by the budget starts again from its first epoch"),
    ({"budget": None, "train": config.Train(checkpoint_every=0)}, None),
    ({"budget": "2m", "train": config.Train(checkpoint_every=3)}, None),
    ({"runner": "local", "search": OPTUNA}, f"runner=local needs {GRID_ONLY} (Optuna and ASHA run inside Ray Tune): "
                                            f"use runner=tune"),
    ({"runner": "local", "scheduler": ASHA}, f"runner=local needs {GRID_ONLY} (Optuna and ASHA run inside Ray Tune): "
                                             f"use runner=tune"),
    ({"runner": "local"}, None), ({"runner": "tune", "search": OPTUNA}, None),
    ({"runner": "local", "ray": config.Ray(address="auto")}, "runner=local needs ray.address=null (it runs on this "
                                                             "machine alone; a cluster needs runner=tune)"),
    ({"runner": "tune", "ray": config.Ray(address="auto")}, None),
    ({"runner": "local", "ray": config.Ray(num_cpus=2)}, None),
    ({"replicates": 2, "budget": "1h", "runner": "local", "search": OPTUNA},  # the first rule broken is the one said
     f"replicates=2 needs {GRID_ONLY} (optuna and ASHA choose one config per trial): use replicates=1, or "
     f"search.trials_per_cell"),
])
def test_each_rule_across_sections_exactly(kwargs: dict[str, object], message: str | None) -> None:
    """Config.__post_init__: what a key given needs of the other sections, each said in one exact line, and the
    configs that need nothing more."""
    if message is None:
        config.Config(**kwargs)  # type: ignore[arg-type]
        return
    with pytest.raises(UsageError) as error:
        config.Config(**kwargs)  # type: ignore[arg-type]
    assert str(error.value) == message


def two_ways(key: str, value: str, other: str) -> str:
    return (f"{key}={value!r} for every trial and {other} from this study's grid are two ways to give a trial's noisy "
            f"labels: exp=human_noise takes its CIFAR-10N annotator set as annotators=<random|worst|aggre>; otherwise "
            f"drop {key}")


@pytest.mark.parametrize("fixed, grid, grid_extra, message", [
    ({"matrix": "m.npy"}, {"noise": {"labels": ["l.csv"]}}, [], two_ways("noise.matrix", "m.npy", "noise.labels")),
    ({"matrix": "m.npy"}, {"noise": {"delta": [0.1]}}, [], two_ways("noise.matrix", "m.npy", "noise.delta")),
    ({"matrix": "m.npy"}, {"noise": {"matrix": ["a.npy"]}}, [], None),  # the grid's replaces it
    ({"labels": "l.csv"}, {"noise": {"matrix": ["a.npy"], "delta": [0.1]}}, [],
     two_ways("noise.labels", "l.csv", "noise.delta")),  # the first of them, sorted
    ({"labels": "l.csv"}, {"noise": {"alpha": [1]}}, [{"noise": {"matrix": ["a.npy"]}}],
     two_ways("noise.labels", "l.csv", "noise.matrix")),  # grid_extra's too
    ({"labels": "l.csv"}, {"noise": {"labels": ["b.csv"], "alpha": [0, 1], "seed": [1]}}, [{"train": {"lr": [1]}}],
     None),
    ({"labels": "cifar10n:worst"}, {"noise": {"delta": [0.5]}}, [],
     two_ways("noise.labels", "cifar10n:worst", "noise.delta")),
    ({}, {"noise": {"matrix": ["a.npy"], "labels": ["l.csv"], "delta": [0.1]}}, [], None),  # nothing fixed
])
def test_noisy_labels_given_two_ways(fixed: dict[str, str], grid: dict[str, object], grid_extra: list[object],
                                     message: str | None) -> None:
    """check_noisy_labels: a noise.matrix or noise.labels for every trial, and the other (or noise.delta) varied by
    grid or grid_extra, is refused naming the fixed key and the first varied one; the same key varied is fine."""
    if message is None:
        config.Config(noise=noise.NoiseSpec(**fixed), grid=grid, grid_extra=grid_extra)
        return
    with pytest.raises(UsageError) as error:
        config.Config(noise=noise.NoiseSpec(**fixed), grid=grid, grid_extra=grid_extra)
    assert str(error.value) == message


@pytest.mark.parametrize("key, keys", [
    ("train", TRAIN_KEYS),
    ("noise", "alpha, seed, delta, order, source, confusion, matrix, labels, draw"),
    ("ray", "address, num_cpus"),
])
def test_a_section_given_a_value_lists_its_keys(key: str, keys: str) -> None:
    """check_value of a whole section: it must be a section, and its keys listed, in declaration order."""
    with pytest.raises(UsageError) as error:
        config.check_value(key, 3)
    assert str(error.value) == f"{key}=3 is invalid: it must be a section: set its keys ({keys})"


def test_owner_walks_the_sections_a_key_names() -> None:
    """owner(): the deepest section a dotted key leads to, and the rest of the key past it."""
    assert config.owner("budget") == (config.Config, "budget")
    assert config.owner("data.x.y") == (config.Data, "x.y")
    assert config.owner("noise.alpha") == (noise.NoiseSpec, "alpha")
    assert config.owner("nope.a.b") == (config.Config, "nope.a.b")
    assert config.owner("train.lr.x") == (config.Train, "lr.x")


def test_load_types_a_tree_and_refuses_a_bad_one() -> None:
    """load(): a (partial) stored tree becomes the typed Config with the defaults for the rest; a bad tree is the
    same one line as the override would be."""
    tree = {"train": {"lr": 0.5}, "replicates": 2, "grid": {"noise": {"alpha": [0, 5]}}, "budget": "1h"}
    cfg = config.load(tree)
    assert isinstance(cfg, config.Config) and isinstance(cfg.train, config.Train)
    assert cfg == config.Config(train=config.Train(lr=0.5), replicates=2, grid={"noise": {"alpha": [0, 5]}},
                                budget="1h")
    assert config.load({}) == config.Config()
    for bad, message in (
            ({"train": {"lr": "abc"}}, "train.lr='abc' is invalid: it must be a number > 0"),
            ({"train": {"foo": 1}}, f"train.foo=1 is unknown: choose one of {TRAIN_KEYS}"),
            ({"model": {"conv_channels": [1, "x"]}}, "model.conv_channels=[1, 'x'] is invalid: it must be a list of "
                                                     "integers > 0"),
            ({"runner": "local", "ray": {"address": "auto"}}, "runner=local needs ray.address=null (it runs on this "
                                                              "machine alone; a cluster needs runner=tune)")):
        with pytest.raises(UsageError) as error:
            config.load(bad)
        assert str(error.value) == message


def test_a_key_past_a_value_is_refused() -> None:
    """check_value: train.lr.x names no value (train.lr is a number, not a section)."""
    with pytest.raises(UsageError) as error:
        config.check_value("train.lr.x", 0.5)
    assert str(error.value) == f"train.lr.x=0.5 is unknown: choose one of {TRAIN_KEYS}"
    with pytest.raises(UsageError) as error:  # as the launcher's command line gives it
        config.compose(["train.lr.x=1"])
    assert str(error.value) == f"train.lr.x=1 is unknown: choose one of {TRAIN_KEYS}"


def test_an_unknown_key_in_a_section_given_whole_names_its_value() -> None:
    """compose: train={foo:1} names foo with the value given, as load({'train': {'foo': 1}}) does."""
    with pytest.raises(UsageError) as error:
        config.compose(["train={foo:1}"])
    assert str(error.value) == f"train.foo=1 is unknown: choose one of {TRAIN_KEYS}"
