"""Every key of study/conf/config.yaml (and of the search/scheduler groups): its type and range, or its
choices. `check` rejects the first bad value in one line, in one of two forms:

    <key>=<value!r> is invalid: it must be <range>
    <key>=<value!r> is unknown: choose one of a, b, c

Cross-key rules (a confusion matrix on disk, a feasible (alpha, delta), a GPU that is visible) stay where
they are checked: study.trial.check, loaders.noise, study.cluster.
"""

from __future__ import annotations

import math
import re
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from loaders.backends import BACKENDS
from loaders.datasets import DATASETS
from loaders.errors import UsageError
from loaders.noise import ORDERS, SOURCES
from study.losses import LOSSES
from study.models import ARCHS


@dataclass(frozen=True)
class Rule:
    must: str = ""  # what a valid value is, after "it must be"
    test: Callable[[Any], bool] = lambda value: True
    choices: Sequence[Any] = ()  # when set, the value must be one of these


def options(group: str) -> list[str]:
    """The choices of a config group: the names of its yaml files under study/conf/<group>/."""
    folder = resources.files("study.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def at_least(low: float, *, integer: bool = False, strict: bool = False, null: bool = False, note: str = "",
             noun: str = "") -> Rule:
    """A number (integer) >= low, or > low when strict; null too when null."""
    kind = is_int if integer else is_number
    text = f"{'null or ' if null else ''}{noun or ('an integer' if integer else 'a number')} {'>' if strict else '>='} {low}"
    return Rule(text + (f" ({note})" if note else ""),
                lambda v: (null and v is None) or (kind(v) and (v > low if strict else v >= low)))


def within(low: int, high: int, *, integer: bool = False, high_open: bool = False, shown_high: str = "") -> Rule:
    """A number (integer) in [low, high], or [low, high) when high_open."""
    kind = is_int if integer else is_number
    text = f"{'an integer' if integer else 'a number'} in [{low}, {shown_high or high}{')' if high_open else ']'}"
    return Rule(text, lambda v: kind(v) and low <= v and (v < high if high_open else v <= high))


def choice(values: Sequence[Any]) -> Rule:
    return Rule(choices=tuple(values))


FLAG = Rule("true or false", lambda v: isinstance(v, bool))
PATH = Rule("null or a path", lambda v: v is None or isinstance(v, str))
POSITIVE = at_least(0, integer=True, strict=True)
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smh])$")  # budget=: a number of seconds, minutes or hours
BUDGET = Rule("null or a duration > 0: a number and s, m or h, e.g. 90s, 12m, 3h",
              lambda v: v is None or (isinstance(v, str) and bool(DURATION.match(v)) and float(v[:-1]) > 0))
# What replicates vary: everything random in a trial (weights, noisy labels, example order, the clean subset
# with the held-out split and any test subset drawn from it), so that intervals over replicates include each.
REPLICATED = ("train.seed", "noise.seed", "data.order_seed", "data.subset_seed")
GRID_VALUES = Rule("a non-empty list", lambda v: isinstance(v, list) and len(v) > 0)  # each key of a grid

SCHEMA: dict[str, Rule] = {
    "data.dataset": choice(DATASETS),
    "data.root": PATH,
    "data.path": PATH,
    "data.download": FLAG,
    "data.n_clean": at_least(0, integer=True, strict=True, null=True),
    "data.n_test": at_least(0, integer=True, strict=True, null=True),
    "data.n_val": at_least(0, integer=True),
    "data.subset_seed": at_least(0, integer=True),
    "data.order_seed": at_least(0, integer=True),
    "data.stand_in": FLAG,
    "data.image_size": POSITIVE,
    "data.backend": choice(BACKENDS),
    "data.cache": PATH,
    "data.rebuild": FLAG,
    "data.workers": at_least(0, integer=True, null=True),
    "data.max_resolution": POSITIVE,
    "data.jpeg_quality": within(1, 100, integer=True),
    "noise.alpha": at_least(0, noun="a real number"),
    "noise.seed": within(0, 2**32, integer=True, high_open=True, shown_high="2**32"),
    "noise.delta": within(0, 1),
    "noise.order": choice(ORDERS),
    "noise.source": choice(SOURCES),
    "noise.confusion": PATH,
    "noise.matrix": Rule("null, a .npy/.csv path or cifar10n:random|worst|aggre", lambda v: v is None or isinstance(v, str)),
    "noise.labels": Rule("null, a .npy/.csv path or cifar10n:random|worst|aggre", lambda v: v is None or isinstance(v, str)),
    "model.arch": choice(ARCHS),
    "model.mlp_hidden": POSITIVE,
    "model.conv_channels": Rule("a list of integers > 0",
                                lambda v: isinstance(v, list) and len(v) > 0 and all(is_int(c) and c > 0 for c in v)),
    "model.fc_hidden": POSITIVE,
    "train.lr": at_least(0, strict=True),
    "train.batch_size": POSITIVE,
    "train.epochs": POSITIVE,
    "train.seed": at_least(0, integer=True),
    "train.loss": choice(LOSSES),
    "train.device": choice(("auto", "cpu", "cuda")),
    "train.fuse": Rule("auto, none or an integer >= 1 (the most members per trial)",
                       lambda v: v in ("auto", "none") or (is_int(v) and v >= 1)),
    "train.compile": choice(("auto", "none", "default", "reduce-overhead", "max-autotune",
                             "max-autotune-no-cudagraphs")),
    "train.report_confusion": FLAG,
    "train.checkpoint_every": at_least(0, integer=True, note="0: never"),
    "replicates": POSITIVE,
    "replicate_pin": Rule(f"a list of seeds replicates keep fixed, each one of {', '.join(REPLICATED)}",
                          lambda v: isinstance(v, list) and set(v) <= set(REPLICATED)),
    "grid": Rule("a mapping of config keys to lists, e.g. {noise: {alpha: [0, 5]}}", lambda v: isinstance(v, dict)),
    "grid_extra": Rule("a list of partial grids",
                       lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v)),
    "figures": Rule("a list of figure names", lambda v: isinstance(v, list)),
    "search.name": choice(options("search")),
    "search.trials_per_cell": POSITIVE,
    "search.seed": at_least(0, integer=True),
    "search.space": Rule("a mapping of config keys to {domain: args}", lambda v: isinstance(v, dict)),
    "scheduler.name": choice(options("scheduler")),
    "scheduler.grace_period": POSITIVE,
    "scheduler.reduction_factor": at_least(1, strict=True),
    "resources.cpu": at_least(0, strict=True),
    "resources.gpu": at_least(0, note="fractions share a GPU"),
    "resources.allow_cpu_fallback": FLAG,
    "max_concurrent_trials": at_least(0, integer=True, strict=True, null=True),
    "max_failures": at_least(-1, integer=True, note="-1: retry forever"),
    "storage.root": PATH,
    "ray.address": Rule("null, auto or host:port", lambda v: v is None or isinstance(v, str)),
    "ray.num_cpus": at_least(0, integer=True, strict=True, null=True),
    "dry_run": FLAG,
    "force": FLAG,
    "run_dir": PATH,
    "resume": PATH,
    "budget": BUDGET,
}


def invalid(key: str, value: Any, must: str) -> UsageError:
    return UsageError(f"{key}={value!r} is invalid: it must be {must}")


def check_value(key: str, value: Any, rule: Rule | None = None) -> None:
    """One line naming the key, the value and what it must be, when the value breaks its rule."""
    rule = rule or SCHEMA[key]
    if rule.choices and value not in rule.choices:
        raise UsageError(f"{key}={value!r} is unknown: choose one of {', '.join(map(str, rule.choices))}")
    if not rule.choices and not rule.test(value):
        raise invalid(key, value, rule.must)


def check(config: dict[str, Any]) -> None:
    """Every declared key that `config` (nested as config.yaml, or a trial's part of it) holds, in SCHEMA's order."""
    for key, rule in SCHEMA.items():
        node: Any = config
        for part in key.split("."):
            node = node.get(part, rule) if isinstance(node, dict) else rule
        if node is not rule:  # the rule itself marks a key this config does not hold
            check_value(key, node, rule)
