"""Launch one experiment of the paper as a Ray Tune study.

    python -m study.launch exp=uniform_mnist [preset=smoke|paper] [key=value ...]

Hydra composes the config (its compose API: no output dir, no change of working directory); the
grid becomes a Tune param space; every trial runs study.trainable on Ray; at the end the run dir
holds trials.csv, epochs.csv, and the analysis' summary and figures. Bad input: one line, exit 2.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from loaders import backends, datasets
from loaders.errors import UsageError

TRIAL_SECTIONS = ("data", "noise", "model", "train")
SHORT_NAMES = {"noise.alpha": "alpha", "model.arch": "arch", "train.lr": "lr",
               "train.batch_size": "batch_size", "train.seed": "seed"}  # always in trials.csv


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
        if group in ("exp", "preset") and value not in options(group):
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


def check_resources(cfg: dict[str, Any]) -> None:
    cpu, gpu = cfg["resources"]["cpu"], cfg["resources"]["gpu"]
    if not (isinstance(cpu, (int, float)) and cpu > 0):
        raise UsageError(f"resources.cpu={cpu!r} is invalid: it must be a number > 0")
    if not (isinstance(gpu, (int, float)) and gpu >= 0):
        raise UsageError(f"resources.gpu={gpu!r} is invalid: it must be a number >= 0 (fractions share a GPU)")


def param_space(base: dict[str, Any], grid: dict[str, list[Any]]) -> dict[str, Any]:
    from ray import tune

    space = base
    for path, values in grid.items():
        space = with_value(space, path, tune.grid_search(values))
    return space


def default_run_dir(choices: dict[str, str]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{choices['exp']}-{choices['preset']}-{stamp}"


def collect(results: Any, grid: dict[str, list[Any]]) -> tuple[Any, Any]:
    """trials.csv and epochs.csv frames from a Tune ResultGrid."""
    import pandas as pd

    columns = {**SHORT_NAMES, **{p: p.rsplit(".", 1)[-1] for p in grid if p not in SHORT_NAMES}}
    trials, epochs = [], []
    for result in results:
        flat = flatten(result.config)
        row = {name: flat[path] for path, name in columns.items()}
        history = result.metrics_dataframe
        done = history is not None and "test_acc" in history
        last = history.iloc[-1] if done else {}
        row.update(
            trial_id=result.metrics.get("trial_id") if result.metrics else None,
            status="error" if result.error else "ok",
            epochs=int(last["epoch"]) if done else 0,
            test_acc=last["test_acc"] if done else float("nan"),
            best_test_acc=history["test_acc"].max() if done else float("nan"),
            test_top5=last["test_top5"] if done else float("nan"),
            best_test_top5=history["test_top5"].max() if done else float("nan"),
            train_loss=last["train_loss"] if done else float("nan"),
            images_per_s=history["images_per_s"].mean() if done else float("nan"),
            node_id=last["node_id"] if done else None,
        )
        trials.append(row)
        if done:
            keep = ["epoch", "train_loss", "test_acc", "test_top5", "images_per_s"]
            epochs.append(history[keep].assign(trial_id=row["trial_id"], **{k: row[k] for k in columns.values()}))
    epochs_df = pd.concat(epochs, ignore_index=True) if epochs else pd.DataFrame()
    return pd.DataFrame(trials), epochs_df


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


def save_confusion(results: Any, base: dict[str, Any], run_dir: Path) -> None:
    """exp=confusion: sum the trials' test confusion matrices into run_dir/confusion.npy and copy it
    to noise.confusion (default: the per-dataset path exp=structured reads)."""
    import numpy as np

    from study.trial import noise_spec

    matrices = [np.asarray(r.metrics["confusion"]) for r in results if not r.error and "confusion" in (r.metrics or {})]
    if not matrices:
        print("confusion matrix: no trial finished, nothing saved", flush=True)
        return
    np.save(run_dir / "confusion.npy", np.sum(matrices, axis=0))
    target = Path(noise_spec(base).confusion)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "confusion.npy", target)
    print(f"confusion matrix ({len(matrices)} trials): {run_dir / 'confusion.npy'}, copied to {target}", flush=True)


def run_study(cfg: dict[str, Any], choices: dict[str, str]) -> Path | None:
    import ray
    from ray import tune

    from analysis import files, report
    from study.trainable import trainable
    from study.trial import check

    check_resources(cfg)
    base = trial_base(cfg)
    grids = grids_of(cfg)
    configs = [config for grid in grids for config in expand(base, grid)]
    for config in configs:
        check(config)
    if cfg["dry_run"]:
        print(dry_run_text(cfg, choices, grids, configs))
        return None
    ensure_data(configs)
    backends.prepare(base["data"])  # the ffcv .beton, written and checked once here

    run_dir = Path(cfg["run_dir"] or default_run_dir(choices)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run dir: {run_dir}", flush=True)
    files.write_json({"exp": choices["exp"], "preset": choices["preset"], "trials": len(configs),
                      "figures": cfg.get("figures", []), "config": cfg}, run_dir / files.STUDY)

    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep the driver's working directory
    address = cfg["ray"]["address"]
    if address:
        ray.init(address=address)
    else:  # "local" never attaches to a stale cluster left by an earlier `ray start`
        ray.init(address="local", num_cpus=cfg["ray"]["num_cpus"],
                 runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}})
    try:
        resources_per_trial = {"cpu": cfg["resources"]["cpu"], "gpu": cfg["resources"]["gpu"]}
        results = []
        for i, grid in enumerate(grids):  # a union of grids is no single Tune grid: one Tuner each
            tuner = tune.Tuner(
                tune.with_resources(trainable, resources_per_trial),
                param_space=param_space(base, grid),
                tune_config=tune.TuneConfig(max_concurrent_trials=cfg["max_concurrent_trials"]),
                run_config=tune.RunConfig(storage_path=str(run_dir), name="tune" if i == 0 else f"tune-extra{i}"),
            )
            results.extend(tuner.fit())
    finally:
        ray.shutdown()
    if base["train"]["report_confusion"]:
        save_confusion(results, base, run_dir)
    trials, epochs = collect(results, {path: None for grid in grids for path in grid})
    files.write_csv(trials, run_dir / files.TRIALS)
    files.write_csv(epochs, run_dir / files.EPOCHS)
    report.make_report(run_dir)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, choices = compose(argv)
        run_dir = run_study(cfg, choices)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if run_dir is not None:
        print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
