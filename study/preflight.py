"""Preflight: everything a study's trials would reject, found in the driver before anything is written or
started, and what they read made ready once.

    plan(cfg)             the trial configs (grids expanded, replicated) and each one checked: the per-key and
                          cross-key rules of study.config on every grid point, what its data would reject
                          (loaders.data.check: split sizes, noise artifacts) and its model on its images
    cost_guard(...)       a local study estimated over MAX_LOCAL_HOURS stops unless force=true
    prepare(configs)      every dataset on disk (or its stand-in), every .beton written and checked once
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errors import UsageError, invalid
from loaders import backends, data, datasets
from study import config, cost, experiments, storage
from study.config import Config
from study.grid import expand, grids_of, with_value
from study.groups import partition, replicate

MAX_LOCAL_HOURS = 24  # a local study estimated to take longer stops unless force=true


@dataclass
class Plan:
    base: dict[str, Any]  # the trial sections, every path absolute (study.storage.trial_base)
    grids: list[dict[str, list[Any]]]  # grid, then one per grid_extra entry
    searched: list[str]  # the keys chosen per cell (the learning rate, or Optuna's space)
    configs: list[dict[str, Any]]  # every trial config, replicates included, checked

    @property
    def paths(self) -> list[str]:
        """The config keys the grids vary (trials.csv columns)."""
        return [path for grid in self.grids for path in grid]

    @property
    def trials(self) -> list[dict[str, Any]]:
        """The configs Tune gets: they read the .betons `prepare` wrote (per config, as a grid.data.* key gives
        each trial a data section of its own)."""
        return [with_value(c, "data.rebuild", False) for c in self.configs]

    def groups(self, cfg: Config, on_gpu: bool) -> list[list[dict[str, Any]]]:
        """The Tune trials: fused groups (search=grid, scheduler=none), else one config each, per_cell times."""
        if cfg.grouped:
            return partition(self.trials, on_gpu)
        return [[c] for c in self.trials for _ in range(cfg.per_cell)]


def plan(cfg: Config) -> Plan:
    """Every trial config of the study, checked; under optuna one per cell, with the base values of the keys
    Optuna draws."""
    base = storage.trial_base(cfg)
    grids = grids_of(cfg.grid, cfg.grid_extra)
    searched = list(dict.fromkeys(p for grid in grids for p in experiments.searched_paths(cfg, grid)))
    configs = [c for grid in grids for c in
               expand(base, grid if cfg.grouped else {p: v for p, v in grid.items() if p not in searched})]
    configs = replicate(configs, cfg.replicates, cfg.replicate_pin)
    check(configs)
    return Plan(base, grids, searched, configs)


def fitted(cfg: Config, given: list[str]) -> Config:
    """data.dataset=folder: the data.n_val, data.n_clean and data.n_test an experiment or preset sets (not the
    command line: `given` are its keys) apply where the folder's splits hold them; where they do not, the folder's
    own sizes do (no held-out split, every training or test image), said in one line."""
    d = cfg.data
    if d.dataset != "folder":
        return cfg
    train, test = datasets.split_sizes("folder", Path(), False, str(storage.absolute("data.path", d.path)))
    new: dict[str, Any] = {}
    if "data.n_val" not in given and d.n_val >= train:
        new["n_val"] = 0
    rest = train - new.get("n_val", d.n_val)
    for key, size, limit in (("n_clean", d.n_clean, rest), ("n_test", d.n_test, test)):
        if f"data.{key}" not in given and size is not None and size > limit:
            new[key] = None
    if not new:
        return cfg
    was = ", ".join(f"data.{k}={getattr(d, k)}" for k in new)
    now = ", ".join(f"data.{k}={'null' if v is None else v}" for k, v in new.items())
    print(f"data: {Path(d.path).name} holds {train} training and {test} test images, fewer than {was} of this "
          f"experiment and preset ask for: {now} instead (null: all of them; 0: no held-out split); set them on the "
          "command line to choose", flush=True)
    return dataclasses.replace(cfg, data=dataclasses.replace(d, **new))


def check(configs: list[dict[str, Any]]) -> None:
    """Each trial config against the config's rules; what its data would reject, once per distinct data and
    noise section (loaders.data.check, from the known split sizes); its model on the dataset's images, once per
    distinct architecture and image shape (on the meta device: no memory)."""
    seen = set()
    for c in configs:
        config.check_trial(c)
        clean_only = c["train"]["loss"] == "h_alpha"
        key = json.dumps([c["data"], c["noise"], clean_only], sort_keys=True)
        if key not in seen:
            seen.add(key)
            data.check(c["data"], c["noise"], clean_only)
        shape, model = cost.image_shape(c["data"]), json.dumps(c["model"], sort_keys=True)
        if (shape, model) not in seen:
            seen.add((shape, model))
            try:
                cost.forward_flops(c["model"]["arch"], c["data"], c["model"])
            except RuntimeError as exc:  # e.g. a kernel or pool larger than the feature map
                raise invalid("model.arch", c["model"]["arch"], f"an architecture that fits data.dataset="
                              f"{c['data']['dataset']} images of shape {shape} ({str(exc).splitlines()[0][:160]})") from None


def cost_guard(cfg: Config, groups: list[list[dict[str, Any]]], resources: dict[str, float]) -> None:
    """A study on this machine: one line with its estimate here, its launch's fixed cost included; over
    MAX_LOCAL_HOURS it stops unless force=true."""
    import torch

    gpus = (1 if cfg.runner == "local" else torch.cuda.device_count()) if resources["gpu"] else 0
    share = 1.0 if cfg.runner == "local" else resources["gpu"]  # local: one group at a time has the whole GPU
    hours, device = cost.local_hours(groups, resources["cpu"], cost.cores(cfg), share, gpus)
    fixed_s, fixed = cost.fixed_cost(groups, cfg.runner, bool(gpus))
    hours += fixed_s / 3600
    n_configs = sum(len(g) for g in groups)
    print(f"estimate: {n_configs} configs in {len(groups)} trials, about {hours:.3g} hours on this machine "
          f"({device}, {fixed}; dry_run=true for the details)", flush=True)
    if hours > MAX_LOCAL_HOURS and not cfg.force:
        cpu_only = cfg.resources.gpu and not resources["gpu"]  # a GPU study on a machine without one
        force = ("force=true resources.allow_cpu_fallback=true to run it on these CPUs anyway" if cpu_only
                 else "force=true to run it anyway")
        raise UsageError(f"this study would take about {hours:.3g} hours on this machine ({device}"
                         f"{', no GPU visible' if cpu_only else ''}), over {MAX_LOCAL_HOURS}: run preset=smoke for a "
                         f"small study of the same code, shrink its grid, run it on a cluster (ray.address), or pass "
                         f"{force}")


def prepare(configs: list[dict[str, Any]]) -> set[str]:
    """What the trials read, made ready once here: the datasets (prepare_data) and the .betons (prepare_betons);
    the datasets a generated stand-in replaces."""
    stand_ins = prepare_data(configs)
    prepare_betons(configs)
    return stand_ins


def described(data: dict[str, Any], stand_ins: set[str]) -> dict[str, Any]:
    """study.json's `dataset`: its name as figures print it (a folder's own), its class count, a stand-in or not."""
    name = Path(data["path"]).name if data["dataset"] == "folder" else datasets.TITLES[data["dataset"]]
    return {"name": name, "classes": datasets.num_classes(data), "stand_in": data["dataset"] in stand_ins}


def prepare_data(configs: list[dict[str, Any]]) -> set[str]:
    """Every dataset the trials read is on disk, or (smoke) will be a stand-in: say so in one line; those
    replaced by a stand-in."""
    needed = set()
    for c in configs:
        d = c["data"]
        if d["dataset"] == "folder":  # under data.path, not the root: listed and checked, one line if bad
            datasets.tree(d)
            continue
        for name in {d["dataset"], *(["cifar100"] if c["noise"]["source"] == "cifar100" else [])}:
            needed.add((name, d["root"], d["download"], d["stand_in"]))
    stand_ins = set()
    for name, root, download, stand_in in sorted(needed):
        try:
            stand_in = datasets.ensure_available(name, Path(root), download, stand_in)
        except PermissionError as exc:
            raise invalid("data.root", root, f"a folder you may read and write ({exc.strerror}: {exc.filename})") from None
        if stand_in:
            stand_ins.add(name)
            print(f"data: {name} is not under {root}: using a small generated stand-in with its image shape and "
                  f"classes (data.stand_in=true; results say nothing about {name})", flush=True)
    return stand_ins


def prepare_betons(configs: list[dict[str, Any]]) -> None:
    """Every .beton the data.backend=ffcv trials read, written and checked once here: a corrupt file is
    one line and exit 2 rather than failed trials, and trials never race to write it."""
    written = set()
    for c in configs:
        d = c["data"]
        folders = backends.on_disk(d)  # real ImageNet: JPEG .betons of both split folders
        if not folders and d["backend"] != "ffcv":
            continue
        source = "cifar100" if c["noise"]["source"] == "cifar100" else "same"
        key = (d["dataset"], d["root"], d["path"]) if folders else (data.data_key(d), source)
        if key in written:
            continue
        written.add(key)
        if folders:
            backends.folder_split(d, True), backends.folder_split(d, False)
        else:
            backends.prepare(*data.table_source(*key), d)
