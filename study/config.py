"""The study's config, typed and checked once: a tree of dataclasses in which every key is declared once, with
its type, default and rule (errors.param), registered as Hydra's schema (study/conf/config.yaml names it
first), so that the yaml files hold only what an experiment or a preset overrides.

    compose(argv) -> (Config, choices)

Hydra composes the schema, the exp/preset/search/scheduler choices and the command line: a key the schema
lacks, a value of the wrong type, or an override Hydra cannot parse is one line naming it. OmegaConf.to_object
then builds the dataclasses, whose __post_init__ checks each key against its rule and the rules across the
keys of its section (the noise section is loaders.noise.NoiseSpec); Config's own, the rules across sections.
A grid point is checked with the same rules (check_trial), paths where they are resolved (study.storage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from typing import Any

from errors import (FLAG, PATH, POSITIVE, Rule, UsageError, at_least, check_fields, choice, invalid, is_int,
                    optional_text, param, rules, within)
from loaders.annotations import CIFAR10N
from loaders.backends import BACKENDS
from loaders.datasets import DATASETS
from loaders.noise import NoiseSpec
from study.grid import flatten
from study.losses import LOSSES
from study.models import ARCHS

GROUPS = ("exp", "preset", "search", "scheduler")  # config groups: one yaml file under study/conf/<group>/ each
COMPILE_MODES = ("auto", "none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
RUNNERS = ("tune", "local")  # tune: Ray Tune, any cluster; local: one group after another in this process, no Ray
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh])$")  # budget=: a number of seconds, minutes or hours
# What replicates vary: everything random in a trial (weights, noisy labels, example order, the clean subset
# with the held-out split and any test subset drawn from it), so that intervals over replicates include each.
REPLICATED = ("train.seed", "noise.seed", "data.order_seed", "data.subset_seed")


def options(group: str) -> list[str]:
    """The choices of a config group: the names of its yaml files under study/conf/<group>/."""
    folder = resources.files("study.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


@dataclass
class Data:
    dataset: str = param("mnist", choice(DATASETS))  # folder: your own class folders at data.path
    root: str | None = param(None, PATH)  # null: $STUDY_DATA_ROOT, else <storage.root>/datasets
    path: str | None = param(None, PATH)  # dataset=folder: a dir of train/<class>/* and val/<class>/* (or test/) images
    download: bool = param(True, FLAG)  # torchvision download when the data is missing (needs internet)
    n_clean: int | None = param(None, at_least(0, integer=True, strict=True, null=True))  # stratified subset; null: all
    n_test: int | None = param(None, at_least(0, integer=True, strict=True, null=True))  # of the test set; null: all
    # Held-out clean validation split, carved out of the training set before n_clean is drawn; 0: none (the
    # paper's protocol: the learning rate is chosen on test).
    n_val: int = param(0, at_least(0, integer=True))
    subset_seed: int = param(0, at_least(0, integer=True))
    order_seed: int = param(0, at_least(0, integer=True))  # the order examples are visited in (shared by a group)
    stand_in: bool = param(False, FLAG)  # true: an absent cifar10/cifar100/imagenet becomes a small generated stand-in
    image_size: int = param(224, POSITIVE)  # imagenet and folder: resized and centre-cropped to this size
    backend: str = param("auto", choice(BACKENDS))  # auto: tensor if it fits in device memory, else ffcv
    cache: str | None = param(None, PATH)  # ffcv .beton dir; null: <storage.root>/ffcv
    rebuild: bool = param(False, FLAG)  # write the .beton again (after a corrupt-file error)
    workers: int | None = param(None, at_least(0, integer=True, null=True))  # loader threads; null: the trial's CPUs
    max_resolution: int = param(256, POSITIVE)  # imagenet .beton: JPEGs stored with this longest side at most
    jpeg_quality: int = param(90, within(1, 100, integer=True))  # imagenet .beton

    def __post_init__(self) -> None:
        check_fields(self, "data")
        if self.dataset == "folder" and not self.path:
            raise UsageError("data.dataset=folder needs data.path=<dir> holding train/<class>/ and val/<class>/ "
                             "image folders")


@dataclass
class Model:
    arch: str = param("conv4", choice(ARCHS))
    mlp_hidden: int = param(256, POSITIVE)  # units per hidden layer of mlp1/mlp2/mlp4
    conv_channels: list[int] = param([32, 32, 64, 64, 128, 128], Rule(  # conv2 uses the first 2, conv4 4, conv6 all
        "a list of integers > 0", lambda v: isinstance(v, list) and len(v) > 0 and all(is_int(c) and c > 0 for c in v)))
    fc_hidden: int = param(128, POSITIVE)  # the FC layer after the convs

    def __post_init__(self) -> None:
        check_fields(self, "model")


@dataclass
class Train:
    lr: float = param(0.1, at_least(0, strict=True))
    batch_size: int = param(128, POSITIVE)  # the paper's, §3.4
    epochs: int = param(10, POSITIVE)  # epochs over the diluted set, n * (1 + alpha) examples each
    seed: int = param(0, at_least(0, integer=True))  # initial weights
    loss: str = param("ce", choice(LOSSES))
    device: str = param("auto", choice(("auto", "cpu", "cuda")))  # auto: cuda when visible, else cpu
    # Members per trial (one lr grid and the replicates of a cell trained together): auto | none | a maximum K.
    fuse: Any = param("auto", Rule("auto, none or an integer >= 1 (the most members per trial)",
                                   lambda v: v in ("auto", "none") or (is_int(v) and v >= 1)))
    compile: str = param("auto", choice(COMPILE_MODES))  # torch.compile of a fused step; auto: on CUDA
    report_confusion: bool = param(False, FLAG)  # the test confusion matrix after the last epoch (exp=confusion)
    checkpoint_every: int = param(1, at_least(0, integer=True, note="0: never"))  # a retried trial resumes there

    def __post_init__(self) -> None:
        check_fields(self, "train")


@dataclass
class Search:
    name: str = param("grid", choice(options("search")))
    trials_per_cell: int = param(8, POSITIVE)  # optuna: trials per cell
    seed: int = param(0, at_least(0, integer=True))
    space: dict[str, Any] = param({}, Rule("a mapping of config keys to {domain: args}", lambda v: isinstance(v, dict)))

    def __post_init__(self) -> None:
        check_fields(self, "search")


@dataclass
class Scheduler:
    name: str = param("none", choice(options("scheduler")))
    grace_period: int = param(1, POSITIVE)  # asha: epochs before a trial may be stopped
    reduction_factor: float = param(3.0, at_least(1, strict=True))

    def __post_init__(self) -> None:
        check_fields(self, "scheduler")


def duration(null: bool = False) -> Rule:
    """A duration > 0: a number and s, m or h (90s, 12m, 3h); null too when null."""
    return Rule(f"{'null or ' if null else ''}a duration > 0: a number and s, m or h, e.g. 90s, 12m, 3h",
                lambda v: (null and v is None) or (isinstance(v, str) and bool(DURATION.match(v)) and float(v[:-1]) > 0))


@dataclass
class Resources:  # per trial
    cpu: float = param(1.0, at_least(0, strict=True))
    gpu: float = param(0.0, at_least(0, note="fractions share a GPU"))
    allow_cpu_fallback: bool = param(False, FLAG)  # true: a gpu request with no GPU visible runs on CPU
    # A cluster: GPU trials pending this long while it has no GPU at all are said in one line (an autoscaler
    # may take minutes to start a GPU node; one that never does would leave them pending silently).
    gpu_wait: str = param("15m", duration())

    def __post_init__(self) -> None:
        check_fields(self, "resources")


@dataclass
class Storage:  # one root every node sees, resolved once in the driver (study.storage)
    root: str | None = param(None, PATH)  # null: $STUDY_ROOT, else ~/.cache/label-noise-study

    def __post_init__(self) -> None:
        check_fields(self, "storage")


@dataclass
class Ray:
    address: str | None = param(None, optional_text("null, auto or host:port"))  # null: a local Ray for this study
    num_cpus: int | None = param(None, at_least(0, integer=True, strict=True, null=True))  # local Ray; null: all cores

    def __post_init__(self) -> None:
        check_fields(self, "ray")


@dataclass
class Config:
    data: Data = field(default_factory=Data)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    model: Model = field(default_factory=Model)
    train: Train = field(default_factory=Train)
    replicates: int = param(1, POSITIVE)  # copies of every config with other seeds: r adds 1000 r to each REPLICATED
    replicate_pin: list[str] = param([], Rule(  # the seeds replicates keep fixed
        f"a list of seeds replicates keep fixed, each one of {', '.join(REPLICATED)}",
        lambda v: isinstance(v, list) and set(v) <= set(REPLICATED)))
    # The study is the product of these lists; keys mirror the trial sections (grid.noise.alpha=[0,5]).
    grid: dict[str, Any] = param({}, Rule("a mapping of config keys to lists, e.g. {noise: {alpha: [0, 5]}}",
                                          lambda v: isinstance(v, dict)))
    # More trials: each entry is a partial grid whose lists replace grid's for its keys, its product added.
    grid_extra: list[Any] = param([], Rule("a list of partial grids",
                                           lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v)))
    figures: list[str] = param([], Rule("a list of figure names", lambda v: isinstance(v, list)))
    # exp=human_noise: the CIFAR-10N annotator set its matrix and per-image arms read (cifar10n:<annotators>)
    annotators: str = param("random", choice(CIFAR10N))
    search: Search = field(default_factory=Search)
    scheduler: Scheduler = field(default_factory=Scheduler)
    resources: Resources = field(default_factory=Resources)
    max_concurrent_trials: int | None = param(None, at_least(0, integer=True, strict=True, null=True))
    max_failures: int = param(3, at_least(-1, integer=True, note="-1: retry forever"))  # retries per trial
    storage: Storage = field(default_factory=Storage)
    ray: Ray = field(default_factory=Ray)
    runner: str = param("tune", choice(RUNNERS))  # local: no Ray (study.local), for one machine or a lent GPU
    dry_run: bool = param(False, FLAG)  # print trial count, examples and estimated GPU-hours, then stop
    dashboard: bool = param(False, FLAG)  # true: a local Ray's dashboard stays up after the study, until Ctrl-C
    force: bool = param(False, FLAG)  # start a local study even when estimated over 24 hours on this machine
    run_dir: str | None = param(None, PATH)  # null: <runs root>/<exp>-<preset>-<time>; a folder holding it: continue
    resume: str | None = param(None, PATH)  # a run dir: finish its interrupted or budget-stopped study
    budget: str | None = param(None, duration(null=True))  # stop cleanly when spent; resume= goes on

    def __post_init__(self) -> None:
        check_fields(self)
        budget = f"budget={self.budget!r}"
        for given, broken, needs in (  # the rules across sections: what a key given needs of the others
                (f"replicates={self.replicates}", self.replicates > 1 and not self.grouped,
                 "search=grid and scheduler=none (optuna and ASHA choose one config per trial): use replicates=1, "
                 "or search.trials_per_cell"),
                (budget, self.budget is not None and not self.grouped,
                 "search=grid and scheduler=none (optuna and ASHA draw or stop trials as they go, and a slice would "
                 "cut that short): drop budget, or use those"),
                (budget, self.budget is not None and not self.train.checkpoint_every,
                 "train.checkpoint_every >= 1 (0: never), or a trial cut by the budget starts again from its first "
                 "epoch"),
                ("runner=local", self.runner == "local" and not self.grouped,
                 "search=grid and scheduler=none (Optuna and ASHA run inside Ray Tune): use runner=tune"),
                ("runner=local", self.runner == "local" and self.ray.address is not None,
                 "ray.address=null (it runs on this machine alone; a cluster needs runner=tune)")):
            if broken:
                raise UsageError(f"{given} needs {needs}")
        self.check_noisy_labels()

    def check_noisy_labels(self) -> None:
        """A noise.matrix or noise.labels for every trial, and the other (or noise.delta) from a grid for some: two
        ways to give one trial's noisy labels. exp=human_noise's grid sets both: its annotator set is `annotators`."""
        fixed = {f"noise.{k}": v for k, v in (("matrix", self.noise.matrix), ("labels", self.noise.labels)) if v}
        varied = {k for grid in [self.grid, *self.grid_extra] for k in flatten(grid)} & {"noise.matrix", "noise.labels",
                                                                                       "noise.delta"}
        for key, value in fixed.items():
            other = sorted(varied - {key})
            if other:
                raise UsageError(f"{key}={value!r} for every trial and {other[0]} from this study's grid are two ways "
                                 f"to give a trial's noisy labels: exp=human_noise takes its CIFAR-10N annotator set as "
                                 f"annotators=<{'|'.join(CIFAR10N)}>; otherwise drop {key}")

    @property
    def grouped(self) -> bool:
        """search=grid and scheduler=none: one Tune grid of fused groups; otherwise one config per trial."""
        return self.search.name == "grid" and self.scheduler.name == "none"

    @property
    def per_cell(self) -> int:
        """Tune trials per trial config: optuna's trials_per_cell, else one."""
        return self.search.trials_per_cell if self.search.name == "optuna" else 1


TRIAL_SECTIONS = {"data": Data, "noise": NoiseSpec, "model": Model, "train": Train}  # what a trial sees


def check_trial(config: dict[str, Any]) -> None:
    """A trial config (a grid point: the grid's values in place) against the same per-key and cross-key rules."""
    for name, section in TRIAL_SECTIONS.items():
        section(**config[name])


def check_value(key: str, value: Any) -> None:
    """One value of a dotted config key against that key's rule; a key that names no value is one line too."""
    spec, name = owner(key)
    if name not in names(spec):
        raise invalid(key, value, choices=names(spec))
    if name not in rules(spec):  # a whole section
        raise invalid(key, value, f"a section: set its keys ({', '.join(names(owner(key + '.x')[0]))})")
    rules(spec)[name].check(key, value)


def owner(key: str) -> tuple[Any, str]:
    """The section (a dataclass type) a dotted key leads to, and the rest of the key, which it should declare (one
    with a dot, as train.lr.x gives lr.x, names no key)."""
    spec, parts = Config, key.split(".")
    for i, part in enumerate(parts[:-1]):
        section = next((f.default_factory for f in fields(spec) if f.name == part and is_dataclass(f.default_factory)),
                       None)
        if section is None:
            return spec, ".".join(parts[i:])
        spec = section
    return spec, parts[-1]


def names(spec: Any) -> list[str]:
    """The keys a section declares."""
    return [f.name for f in fields(spec)]


def store() -> None:
    """Register the schema (as `schema`, which config.yaml's defaults list names first)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)


def compose(argv: list[str]) -> tuple[Config, dict[str, str]]:
    """The checked config of these command-line overrides, and the chosen exp and preset."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    given = parsed(argv)
    for group in GROUPS:
        if group in given:
            choice(options(group)).check(group, given[group])
    store()
    try:
        with initialize_config_module(config_module="study.conf", version_base=None):
            cfg = hydra_compose("config", overrides=argv, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise translated(exc, given) from None
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]  # holds interpolations that only a @hydra.main job can resolve
    return typed(cfg, given), choices


def load(tree: dict[str, Any]) -> Config:
    """A stored config (a study.json's) typed and checked again; a key added since it was written gets its default."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return typed(OmegaConf.merge(OmegaConf.structured(Config), tree), flatten(tree))
    except OmegaConfBaseException as exc:
        raise translated(exc, flatten(tree)) from None


def parsed(argv: list[str]) -> dict[str, Any]:
    """Each override's key (or group) and value, and each key of a section given whole; one that Hydra's grammar
    rejects is one line naming it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, given = OverridesParser.create(), {}
    for arg in argv:
        try:
            (override,) = parser.parse_overrides([arg])
        except HydraException as exc:
            key, _, value = arg.partition("=")
            reason = str(exc).splitlines()[0].strip()
            raise invalid(key.lstrip("+~"), value, f"a value in Hydra's override grammar, e.g. [0,5] for a list "
                                                   f"({reason})") from None
        given[override.key_or_group] = override.value()
    return {**given, **flatten(given)}  # train={foo:1} gives train.foo too, the key an error names


def typed(cfg: Any, given: dict[str, Any]) -> Config:
    """The composed config as its dataclasses, every key checked; a key the schema lacks (one added with +) is
    unknown."""
    from omegaconf import DictConfig, OmegaConf

    def known(node: DictConfig, spec: Any, prefix: str) -> None:
        for key in node.keys():
            value = node[key]
            if key not in names(spec):
                raise invalid(f"{prefix}{key}", given.get(f"{prefix}{key}", value), choices=names(spec))
            if isinstance(value, DictConfig) and is_dataclass(OmegaConf.get_type(value)):
                known(value, OmegaConf.get_type(value), f"{prefix}{key}.")

    known(cfg, Config, "")
    return OmegaConf.to_object(cfg)


def translated(exc: Exception, given: dict[str, Any]) -> UsageError:
    """An OmegaConf or Hydra error as one line in the project's form, naming the key and the value given."""
    cause = exc.__cause__ if getattr(exc.__cause__, "full_key", None) else exc
    key = re.sub(r"\[\d+\]$", "", getattr(cause, "full_key", None) or "")  # an item of a list: the list's key
    key = next((k for k in given if k.startswith(f"{key}.")), key) if key and key not in given else key
    added = re.search(r"An item is already at '([^']+)'", str(exc))
    if added and added[1] in given:  # +key=value for a key that exists
        return invalid(f"+{added[1]}", given[added[1]], f"{added[1]}=... without + (the key exists)")
    if key:
        try:
            check_value(key, given.get(key, getattr(cause, "value", None)))  # the key's rule says what it must be
        except UsageError as error:
            return error
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return UsageError(f"bad override: {' '.join(lines[:3])}")
