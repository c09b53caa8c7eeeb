"""Launch one experiment of the paper as a Ray Tune study.

    python -m study.launch exp=uniform_mnist [preset=smoke|paper] [search=grid|optuna] [scheduler=none|asha] [key=value ...]
    python -m study.launch resume=<run_dir>      # finish an interrupted study

Hydra composes the config (its compose API: no output dir, no change of working directory); the
grid becomes a Tune param space; every trial runs study.trainable on Ray; at the end the run dir
holds trials.csv, epochs.csv, and the analysis' summary and figures. Bad input: one line, exit 2.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import rundir
from loaders import backends, datasets
from loaders.errors import UsageError

TRIAL_SECTIONS = ("data", "noise", "model", "train")


def options(group: str) -> list[str]:
    folder = resources.files("study.conf") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose(argv: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Hydra config for these overrides, as a plain dict, and the chosen exp and preset."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    for arg in argv:
        group, _, value = arg.partition("=")
        if group in ("exp", "preset", "search", "scheduler") and value not in options(group):
            raise UsageError(f"{group}={value!r} is unknown: choose one of {', '.join(options(group))}")
    try:
        with initialize_config_module(config_module="study.conf", version_base=None):
            cfg = hydra_compose("config", overrides=argv, return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]  # holds interpolations that only a @hydra.main job can resolve
        return OmegaConf.to_container(cfg, resolve=True), choices
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise UsageError(f"bad override: {' '.join(lines[:3])}") from None


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
    """The part of the config a trial sees, with the data root made absolute in the driver."""
    base = {k: dict(cfg[k]) for k in TRIAL_SECTIONS}
    base["data"]["root"] = str(datasets.resolve_root(base["data"]["root"]))
    if base["noise"].get("confusion"):
        base["noise"]["confusion"] = str(Path(base["noise"]["confusion"]).expanduser().resolve())
    return base


def grid_of(cfg: dict[str, Any], name: str = "grid") -> dict[str, list[Any]]:
    grid = flatten(cfg.get("grid") or {})
    for path, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{name}.{path}={values!r} is invalid: it must be a non-empty list")
    return grid


def grids_of(cfg: dict[str, Any]) -> list[dict[str, list[Any]]]:
    """The study's grids: `grid`, then one per `grid_extra` entry (its lists replace grid's)."""
    grid = grid_of(cfg)
    extras = cfg.get("grid_extra") or []
    if not isinstance(extras, list):
        raise UsageError(f"grid_extra={extras!r} is invalid: it must be a list of partial grids")
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


def check_resources(cfg: dict[str, Any]) -> dict[str, float]:
    """Tune resources per trial. A GPU request for a local Ray with no GPU visible fails (or, when asked,
    falls back to CPU); a cluster is not checked, as its autoscaler may still add GPU nodes."""
    import torch

    cpu, gpu = cfg["resources"]["cpu"], cfg["resources"]["gpu"]
    if not (isinstance(cpu, (int, float)) and cpu > 0):
        raise UsageError(f"resources.cpu={cpu!r} is invalid: it must be a number > 0")
    if not (isinstance(gpu, (int, float)) and gpu >= 0):
        raise UsageError(f"resources.gpu={gpu!r} is invalid: it must be a number >= 0 (fractions share a GPU)")
    if gpu and not cfg["ray"]["address"] and not torch.cuda.is_available():
        if not cfg["resources"]["allow_cpu_fallback"]:
            raise UsageError(f"resources.gpu={gpu} but no GPU is visible here: use resources.gpu=0 (preset=smoke), "
                             "or resources.allow_cpu_fallback=true to run these trials on CPU")
        print(f"note: no GPU visible, resources.gpu={gpu} becomes 0 (resources.allow_cpu_fallback=true)", file=sys.stderr)
        gpu = 0
    every = cfg["train"]["checkpoint_every"]
    if not (isinstance(every, int) and every >= 0):
        raise UsageError(f"train.checkpoint_every={every!r} is invalid: it must be an integer >= 0 (0: never)")
    return {"cpu": cpu, "gpu": gpu}


def check_address(cfg: dict[str, Any]) -> None:
    """A cluster address that does not answer fails in seconds, before anything is written (ray.init would retry for minutes)."""
    address = cfg["ray"]["address"]
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError):
        raise UsageError(f"ray.address={address!r} is unreachable: no Ray head answers there "
                         "(start one with `ray start --head`, or use ray.address=null for a local Ray)") from None


def connect(cfg: dict[str, Any]) -> None:
    import ray

    address = cfg["ray"]["address"]
    if not address:  # "local" never attaches to a stale cluster left by an earlier `ray start`
        ray.init(address="local", num_cpus=cfg["ray"]["num_cpus"],
                 runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}})
        return
    try:
        ray.init(address=address)
    except ConnectionError as exc:  # e.g. address=auto with no cluster running
        raise UsageError(f"ray.address={address!r}: {str(exc).strip().splitlines()[0]}") from None


def default_run_dir(choices: dict[str, str]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = os.environ.get("STUDY_RUNS_ROOT", "runs")  # cluster.yaml points it at the shared file system
    return Path(root) / f"{choices['exp']}-{choices['preset']}-{stamp}"


def dry_run_text(cfg: dict[str, Any], choices: dict[str, str], grids: list[dict[str, list[Any]]],
                 configs: list[dict[str, Any]]) -> str:
    from study.cost import estimate

    gpu = cfg["resources"]["gpu"] or 1.0  # a CPU preset is costed as if each trial had a whole GPU
    cost = estimate(configs, gpu)
    shape = " + ".join(" x ".join(f"{path} {len(values)}" for path, values in grid.items()) or "1"
                       for grid in grids)
    return "\n".join([
        f"dry run: exp={choices['exp']} preset={choices['preset']} (nothing started, nothing written)",
        f"trials: {cost['trials']} ({shape})",
        f"examples per trial: {cost['examples_min']:,} to {cost['examples_max']:,} "
        f"(total {cost['examples_total']:.3g})",
        f"estimated GPU time: {cost['gpu_hours']:.3g} GPU-hours at {gpu} GPU per trial "
        f"[{cost['source']}]",
    ])


def ensure_data(configs: list[dict[str, Any]]) -> None:
    """Every dataset the trials read is on disk, or (smoke) will be a stand-in: say so in one line."""
    needed = set()
    for c in configs:
        data = c["data"]
        for name in {data["dataset"], *(["cifar100"] if c["noise"]["source"] == "cifar100" else [])}:
            needed.add((name, data["root"], data["download"], data["stand_in"]))
    for name, root, download, stand_in in sorted(needed):
        if datasets.ensure_available(name, Path(root), download, stand_in):
            print(f"data: {name} is not under {root}: using a small generated stand-in with its image shape and "
                  f"classes (data.stand_in=true; results say nothing about {name})", flush=True)


def prepare_betons(configs: list[dict[str, Any]]) -> None:
    """Every .beton the data.backend=ffcv trials read, written and checked once here: a corrupt file is
    one line and exit 2 rather than failed trials, and trials never race to write it."""
    from study.trial import data_key, table_source

    written = set()
    for c in configs:
        data = c["data"]
        folders = backends.on_disk(data)  # real ImageNet: JPEG .betons of both split folders
        if not folders and data["backend"] != "ffcv":
            continue
        key = ("imagenet", data["root"]) if folders else (data_key(data), "cifar100" if c["noise"]["source"] == "cifar100" else "same")
        if key in written:
            continue
        written.add(key)
        if folders:
            backends.folder_split(data, "train"), backends.folder_split(data, "val")
        else:
            backends.prepare(*table_source(*key), data)


def save_confusion(results: Any, base: dict[str, Any], run_dir: Path) -> None:
    """exp=confusion: sum the trials' test confusion matrices into run_dir/confusion.npy and copy it
    to noise.confusion (default: the per-dataset path exp=structured reads)."""
    import numpy as np

    from study.trial import noise_spec

    matrices = [np.asarray(r.metrics["confusion"]) for r in results if not r.error and "confusion" in (r.metrics or {})]
    if not matrices:
        print("confusion matrix: no trial finished, nothing saved", flush=True)
        return
    target = Path(noise_spec(base).confusion)
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in (run_dir / "confusion.npy", target):  # atomic: exp=structured may read the shared copy any time
        with rundir.atomic_path(path) as tmp:
            np.save(tmp, np.sum(matrices, axis=0))
    print(f"confusion matrix ({len(matrices)} trials): {run_dir / 'confusion.npy'}, copied to {target}", flush=True)


def run_study(cfg: dict[str, Any], choices: dict[str, str], resume_dir: Path | None = None) -> Path | None:
    import ray
    from ray import tune

    from analysis import report
    from study import experiments
    from study.trainable import trainable
    from study.trial import check

    experiments.check(cfg)
    base = trial_base(cfg)
    grids = grids_of(cfg)
    searched = list(dict.fromkeys(p for grid in grids for p in experiments.searched_paths(cfg, grid)))  # ordered
    # Every grid trial; under optuna one per cell, with the base values of the keys Optuna draws.
    configs = [config for grid in grids for config in
               expand(base, grid if cfg["search"]["name"] == "grid" else
                      {p: v for p, v in grid.items() if p not in searched})]
    for config in configs:
        check(config)
    if cfg["dry_run"]:  # before the GPU and cluster checks: cost a GPU study from a laptop
        print(dry_run_text(cfg, choices, grids, configs))
        return None
    resources_per_trial = check_resources(cfg)
    check_address(cfg)
    plan = []
    for i, grid in enumerate(grids):  # a union of grids is no single Tune grid: experiments of their own
        for exp in experiments.plan(cfg, base, grid, with_value):
            plan.append(exp if i == 0 else dataclasses.replace(exp, path=exp.path.replace("tune", f"tune-extra{i}", 1)))
    ensure_data(configs)
    prepare_betons(configs)
    base["data"]["rebuild"] = False  # rebuilt once by prepare_betons; the trials read those files

    run_dir = (resume_dir or Path(cfg["run_dir"] or default_run_dir(choices))).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run dir: {run_dir}", flush=True)
    if resume_dir is None:
        trials = len(configs) * (cfg["search"]["trials_per_cell"] if cfg["search"]["name"] == "optuna" else 1)
        rundir.write_json({"exp": choices["exp"], "preset": choices["preset"], "trials": trials,
                          "figures": cfg.get("figures", []), "config": cfg,
                          "searched": [rundir.column(p) for p in searched],
                          "experiments": [e.path for e in plan]}, run_dir / rundir.STUDY)

    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep the driver's working directory
    connect(cfg)
    try:
        results = experiments.fit(plan, tune.with_resources(trainable, resources_per_trial), cfg, run_dir,
                                  restore=resume_dir is not None)
    finally:
        ray.shutdown()
    results = list(itertools.chain(*results))
    if base["train"]["report_confusion"]:
        save_confusion(results, base, run_dir)
    trials, epochs = rundir.collect(results, [path for grid in grids for path in grid])
    rundir.write_csv(trials, run_dir / rundir.TRIALS)
    rundir.write_csv(epochs, run_dir / rundir.EPOCHS)
    report.make_report(run_dir)
    return run_dir


def resume(run_dir: Path) -> Path:
    """Finish an interrupted study with the config it was started with."""
    from ray import tune

    run_dir = run_dir.resolve()
    if not (run_dir / rundir.STUDY).is_file():
        raise UsageError(f"resume={run_dir} is not a study run dir: it has no {rundir.STUDY}")
    study = rundir.read_study(run_dir)
    if not any(tune.Tuner.can_restore(run_dir / p) for p in study.get("experiments", ["tune"])):
        raise UsageError(f"resume={run_dir} holds no Tune experiment state to restore: start the study afresh")
    return run_study(study["config"], {"exp": study["exp"], "preset": study["preset"]}, resume_dir=run_dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, choices = compose(argv)
        run_dir = resume(Path(cfg["resume"])) if cfg["resume"] else run_study(cfg, choices)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if run_dir is not None:
        print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
