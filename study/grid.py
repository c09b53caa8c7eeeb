"""Grid algebra: a study's grids (`grid`, `grid_extra`) and the trial configs they expand to.

A grid maps dotted config keys to lists of values ({'noise.alpha': [0, 5]}); a trial config holds the
sections a trial sees (TRIAL_SECTIONS), nested as in config.yaml.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from loaders.errors import UsageError
from study import schema
from study.storage import place, storage_root

TRIAL_SECTIONS = ("data", "noise", "model", "train")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'noise': {'alpha': [..]}} -> {'noise.alpha': [..]}; a list (or non-dict) is a leaf."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out.update(flatten(value, path + ".") if isinstance(value, dict) else {path: value})
    return out


def with_value(config: dict[str, Any], path: str, value: Any, _full: str | None = None) -> dict[str, Any]:
    """A copy of the nested config with one dotted key set."""
    head, _, rest = path.partition(".")
    if head not in config or (rest and not isinstance(config[head], dict)):
        raise UsageError(f"grid.{_full or path} names no config key: grid keys mirror the config, "
                         f"e.g. grid.noise.alpha")
    return {**config, head: with_value(config[head], rest, value, _full or path) if rest else value}


def trial_base(cfg: dict[str, Any]) -> dict[str, Any]:
    """The part of the config a trial sees, its paths (data root, .beton cache, confusion artifact) made
    absolute in the driver under the storage root, and every file it names absolute: no node resolves them again."""
    base = place({k: dict(cfg[k]) for k in TRIAL_SECTIONS}, storage_root(cfg))
    for section, key in (("data", "path"), ("noise", "matrix"), ("noise", "labels")):
        value = base[section].get(key)
        if value and not str(value).startswith("cifar10n:"):  # cifar10n:<kind> names annotations, not a file
            base[section][key] = str(Path(value).expanduser().resolve())
    return base


def grid_of(cfg: dict[str, Any], name: str = "grid") -> dict[str, list[Any]]:
    grid = flatten(cfg.get("grid") or {})
    for path, values in grid.items():
        schema.check_value(f"{name}.{path}", values, schema.GRID_VALUES)
    return grid


def grids_of(cfg: dict[str, Any]) -> list[dict[str, list[Any]]]:
    """The study's grids: `grid`, then one per `grid_extra` entry (its lists replace grid's)."""
    grid = grid_of(cfg)
    extras = cfg.get("grid_extra") or []
    schema.check_value("grid_extra", extras)
    return [grid] + [{**grid, **grid_of({"grid": extra}, f"grid_extra[{i}]")} for i, extra in enumerate(extras)]


def expand(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every trial config of the grid, in order."""
    configs = []
    for values in itertools.product(*grid.values()):
        config = base
        for path, value in zip(grid, values):
            config = with_value(config, path, value)
        configs.append(config)
    return configs
