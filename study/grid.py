"""Grid algebra: a study's grids (`grid`, `grid_extra`) and the trial configs they expand to.

A grid maps dotted config keys to lists of values ({'noise.alpha': [0, 5]}); a trial config holds the
sections a trial sees (data, noise, model, train), nested as in study.config.
"""

from __future__ import annotations

import itertools
from typing import Any

from errors import invalid


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'noise': {'alpha': [..]}} -> {'noise.alpha': [..]}; a list (or non-dict) is a leaf."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out.update(flatten(value, path + ".") if isinstance(value, dict) else {path: value})
    return out


def with_value(config: dict[str, Any], path: str, value: Any, _full: str | None = None) -> dict[str, Any]:
    """A copy of the nested config with one dotted key set (a grid key that names no key of it is unknown)."""
    head, _, rest = path.partition(".")
    if head not in config or (rest and not isinstance(config[head], dict)):
        raise invalid(f"grid.{_full or path}", value, choices=config)
    return {**config, head: with_value(config[head], rest, value, _full or path) if rest else value}


def grid_of(tree: dict[str, Any], name: str = "grid") -> dict[str, list[Any]]:
    grid = flatten(tree)
    for path, values in grid.items():
        if not (isinstance(values, list) and values):
            raise invalid(f"{name}.{path}", values, "a non-empty list")
    return grid


def grids_of(grid: dict[str, Any], extras: list[dict[str, Any]]) -> list[dict[str, list[Any]]]:
    """The study's grids: `grid`, then one per `grid_extra` entry (its lists replace grid's)."""
    base = grid_of(grid)
    return [base] + [{**base, **grid_of(extra, f"grid_extra[{i}]")} for i, extra in enumerate(extras)]


def expand(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every trial config of the grid, in order."""
    configs = []
    for values in itertools.product(*grid.values()):
        config = base
        for path, value in zip(grid, values):
            config = with_value(config, path, value)
        configs.append(config)
    return configs


def placed(configs: list[dict[str, Any]], paths: dict[str, str] | None) -> list[dict[str, Any]]:
    """The member configs with these dotted path keys set (where this launch resolved them)."""
    for key, value in (paths or {}).items():
        configs = [with_value(c, key, value) for c in configs]
    return configs
