"""The Tune experiments of a study, from the `search` and `scheduler` config groups.

search=grid, scheduler=none: one experiment over the whole grid (every trial runs at once, as the
resources allow). Otherwise one experiment per cell, i.e. per point of the grid keys that are not
searched (alpha, arch, seed, ...): OptunaSearch rejects `tune.grid_search`, and neither it nor ASHA
can keep cells apart inside one experiment (TPE would model all alphas as one objective, ASHA would
stop high-alpha trials for losing to clean ones). The cells' Tuners run side by side in threads
(Tune installs no signal handlers off the main thread), each with its own searcher and scheduler,
each saved in its own folder so that Tuner.restore resumes it.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rundir
from errors import invalid
from study.config import Config
from study.console import Progress
from study.grid import with_value

DOMAINS = ("loguniform", "uniform", "choice", "randint")  # ray.tune sampling functions allowed in search.space
METRIC, MODE = "test_acc", "max"  # final clean test accuracy, as the paper selects (§3.4)
GRID_SEARCHED = ("train.lr",)  # the paper's per-cell choice under search=grid
TRAINABLE = "study_trial"  # the name trial folders start with


@dataclass
class Experiment:
    path: str  # relative to the run dir
    param_space: dict[str, Any]


def domains(tree: dict[str, Any], prefix: str = "") -> dict[str, tuple[str, Any]]:
    """search.space {'train': {'lr': {'loguniform': [a, b]}}} -> {'train.lr': ('loguniform', [a, b])}."""
    out: dict[str, tuple[str, Any]] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DOMAINS:
            out[path] = next(iter(value.items()))
        elif isinstance(value, dict):
            out.update(domains(value, path + "."))
        else:
            raise invalid(f"search.space.{path}", value, f"{{name: args}} with name one of {', '.join(DOMAINS)}")
    return out


def searched_paths(cfg: Config, grid: dict[str, list[Any]]) -> list[str]:
    """Config keys chosen per cell: the optuna space, or the grid's learning rate."""
    if cfg.search.name == "optuna":
        return list(domains(cfg.search.space))
    return [p for p in GRID_SEARCHED if p in grid]


def plan(cfg: Config, base: dict[str, Any], grids: list[dict[str, list[Any]]],
         groups: list[list[dict[str, Any]]]) -> list[Experiment]:
    """search=grid, scheduler=none: one Tune grid over the groups of every grid (grid_extra's included). Else an
    experiment per cell of each grid (a union of grids is no single Tune grid: grid_extra's get folders of their
    own); the trials read the .betons the launcher wrote (data.rebuild off)."""
    from ray import tune

    if cfg.grouped:
        return [Experiment("tune", {"members": tune.grid_search(groups)})]
    experiments = []
    for i, grid in enumerate(grids):
        for cell in cells(cfg, base, grid):
            path = cell.path if i == 0 else cell.path.replace("tune", f"tune-extra{i}", 1)
            experiments.append(Experiment(path, with_value(cell.param_space, "data.rebuild", False)))
    return experiments


def cells(cfg: Config, base: dict[str, Any], grid: dict[str, list[Any]]) -> list[Experiment]:
    """One experiment per point of the grid keys not searched: Optuna's space (or the grid's learning rates)
    searched inside it."""
    from ray import tune

    searched = searched_paths(cfg, grid)
    inner: dict[str, Any] = {p: tune.grid_search(v) for p, v in grid.items() if p in searched}
    if cfg.search.name == "optuna":
        inner = {p: tune.choice(args) if name == "choice" else getattr(tune, name)(*args)
                 for p, (name, args) in domains(cfg.search.space).items()}
    outer = {p: v for p, v in grid.items() if p not in searched}
    experiments = []
    for i, values in enumerate(itertools.product(*outer.values())):
        space = base
        for path, value in [*zip(outer, values), *inner.items()]:
            space = with_value(space, path, value)
        experiments.append(Experiment(f"tune/cell-{i:03d}", space))
    return experiments


def trial_dirname(trial: Any) -> str:
    """Short trial folders: Tune's default name lists every sampled key, here the whole nested config."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def tune_config(cfg: Config) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    search, scheduler = cfg.search, cfg.scheduler
    optuna, asha = search.name == "optuna", scheduler.name == "asha"
    return tune.TuneConfig(
        metric=METRIC if optuna or asha else None, mode=MODE if optuna or asha else None,
        search_alg=OptunaSearch(seed=search.seed) if optuna else None, num_samples=cfg.per_cell,
        scheduler=ASHAScheduler(time_attr="epoch", max_t=cfg.train.epochs, grace_period=scheduler.grace_period,
                                reduction_factor=scheduler.reduction_factor) if asha else None,
        max_concurrent_trials=cfg.max_concurrent_trials, trial_dirname_creator=trial_dirname,
        reuse_actors=True,  # a new actor per trial costs seconds (a process that imports torch); reuse is ~0.1 s
    )


def watches(cfg: Config) -> list[Any]:
    """On a cluster, GPU trials: say so when they wait for a GPU the cluster does not have (study.watch)."""
    from study.slices import seconds
    from study.watch import NoGpuWatch

    if not (cfg.ray.address and cfg.resources.gpu):
        return []
    return [NoGpuWatch(cfg.resources.gpu, seconds(cfg.resources.gpu_wait), cfg.resources.gpu_wait)]


def fit(experiments: list[Experiment], trainable: Any, cfg: Config, run_dir: Path, restore: bool,
        progress: Progress | None = None) -> list[Any]:
    """Run (or, with restore, resume) every experiment; each one's results (rundir.Result) in order, a trial's id
    prefixed with its experiment's folder. Tune prints nothing (verbose=0): every trial's state goes to `progress`,
    the study's one progress line."""
    from ray import tune

    from study.tune_progress import Report

    Report.progress = progress  # the Report restored with a Tuner (tuner.pkl) reports here too
    # Registered once, here: Tune's registry is not thread-safe, and a name skips each Tuner's own registration.
    tune.register_trainable(TRAINABLE, trainable)
    def one(exp: Experiment) -> Any:
        path = run_dir / exp.path
        if restore and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(str(path), TRAINABLE, resume_errored=True, param_space=exp.param_space)
        else:
            tuner = tune.Tuner(
                TRAINABLE, param_space=exp.param_space, tune_config=tune_config(cfg),
                run_config=tune.RunConfig(
                    storage_path=str(path.parent), name=path.name,
                    failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),  # a retry needs only the last
                    verbose=0, callbacks=[Report(exp.path), *watches(cfg)]),
            )
        # Tune's trial ids are unique within one experiment only: experiments started side by side draw the same
        # time-based prefix (abcde_00000 in two cells), which would merge their rows in trials.csv
        return [rundir.Result(r.config, r.metrics and {**r.metrics, "trial_id": f"{exp.path}/{r.metrics['trial_id']}"},
                              r.metrics_dataframe, r.error) for r in tuner.fit()]

    if len(experiments) == 1:
        return [one(experiments[0])]
    with ThreadPoolExecutor(max_workers=len(experiments)) as pool:
        return list(pool.map(one, experiments))
