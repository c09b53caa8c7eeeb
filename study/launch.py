"""Launch one experiment of the paper as a Ray Tune study.

    python -m study.launch exp=uniform_mnist [preset=smoke|paper] [search=grid|optuna] [scheduler=none|asha] [key=value ...]
    python -m study.launch resume=<run_dir>      # finish an interrupted study

Hydra composes the config (its compose API: no output dir, no change of working directory); the
grid becomes a Tune param space; every trial runs study.trainable on Ray; at the end the run dir
holds trials.csv, epochs.csv, and the analysis' summary and figures. Bad input: one line, exit 2.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import rundir
from loaders import backends, datasets
from loaders.errors import UsageError
from study import provenance, schema, slices, storage
from study.cluster import check_address, check_resources, connect
from study.grid import expand, flatten, grids_of, trial_base, with_value
from study.groups import partition, replicate


def compose(argv: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Hydra config for these overrides, as a plain dict, and the chosen exp and preset."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    for arg in argv:
        group, _, value = arg.partition("=")
        if group in ("exp", "preset", "search", "scheduler"):
            schema.check_value(group, value, schema.choice(schema.options(group)))
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


def default_run_dir(choices: dict[str, str], cfg: dict[str, Any]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return storage.runs_root(cfg) / f"{choices['exp']}-{choices['preset']}-{stamp}"  # <storage root>/runs when named


def dry_run_text(cfg: dict[str, Any], choices: dict[str, str], grids: list[dict[str, list[Any]]],
                 groups: list[list[dict[str, Any]]]) -> str:
    from study.cost import estimate

    gpu = cfg["resources"]["gpu"] or 1.0  # a CPU preset is costed as if each trial had a whole GPU
    cost = estimate(groups, gpu)
    shape = " + ".join(" x ".join(f"{path} {len(values)}" for path, values in grid.items()) or "1"
                       for grid in grids)
    replicates = f", x {cfg['replicates']} replicates" if cfg["replicates"] > 1 else ""
    return "\n".join([
        f"dry run: exp={choices['exp']} preset={choices['preset']} (nothing started, nothing written)",
        f"configs: {cost['configs']} ({shape}{replicates}), in {cost['trials']} trials "
        f"(fused groups of up to {cost['max_members']} members)",
        f"examples per config: {cost['examples_min']:,} to {cost['examples_max']:,} "
        f"(total {cost['examples_total']:.3g})",
        f"estimated GPU time: {cost['gpu_hours']:.3g} GPU-hours at {gpu} GPU per trial "
        f"[{cost['source']}]",
    ])


class Interrupted(Exception):
    """SIGINT or SIGTERM ended the study: Tune saved its state, `resume=<run_dir>` finishes it."""

    def __init__(self, signum: int, run_dir: Path, finished: int, total: int) -> None:
        self.signum, self.run_dir, self.finished, self.total = signum, run_dir, finished, total
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {finished} of {total} trials finished; "
                         f"finish the study with: {sys.executable} -m study.launch resume={run_dir}")

    @property
    def code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports a process they ended


@contextlib.contextmanager
def stoppable() -> Any:
    """While Tune runs: the first SIGINT or SIGTERM asks Tune to stop (through its SIGUSR1 handler: it saves
    the experiment state and returns) and is recorded in the yielded list; a second one, or one while no Tune
    loop listens, raises KeyboardInterrupt."""
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        tune_listens = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if len(received) > 1 or not tune_listens:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    disabled = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours, above: SIGTERM too, and it records the signal
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if disabled is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = disabled


def finished_ids(results: list[Any]) -> set[str]:
    """The ids of the Tune trials that ran every epoch without an error."""
    done = set()
    for r in results:
        config = (r.config or {}).get("members", [r.config])[0] if r.config else None
        if config and not r.error and r.metrics and r.metrics.get("epoch") == config["train"]["epochs"]:
            done.add(r.metrics["trial_id"])
    return done


def stop_at_budget(cfg: dict[str, Any], results: list[Any], paths: list[str], run_dir: Path, total: int) -> None:
    """The budget ended this slice: trials.csv (and the analysis) for the finished trials, epochs.csv for every
    epoch reported, then BudgetSpent with the counts and the resume command."""
    from analysis import report

    done = finished_ids(results)
    started = sum(bool(r.metrics and r.metrics.get("epoch")) for r in results)
    trials, epochs = rundir.collect(results, paths)
    rundir.write_csv(trials[trials["group"].isin(done)], run_dir / rundir.TRIALS)
    rundir.write_csv(epochs, run_dir / rundir.EPOCHS)
    report.make_report(run_dir)
    raise slices.BudgetSpent(cfg["budget"], run_dir, len(done), started - len(done), total)


LOCKS: dict[Path, int] = {}  # run dir -> the open .lock this process holds


def lock(run_dir: Path) -> None:
    """Hold <run_dir>/.lock for the rest of this process: a second launcher on the same run dir is refused."""
    if run_dir in LOCKS:
        return
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"{run_dir} is in use: its study is still running (another launcher holds "
                         f"{run_dir / '.lock'}); wait for it to end, or stop it (Ctrl-C) and resume then") from None
    LOCKS[run_dir] = fd


def check_plan(configs: list[dict[str, Any]]) -> None:
    """What each trial's data would reject (split sizes, novel-image capacity, a data.root one may not read),
    checked once per distinct data section and noise source and alpha, from the known split sizes."""
    from loaders.data import check_sizes

    from study.cost import forward_flops, image_shape

    seen = set()
    for c in configs:
        clean_only = c["train"]["loss"] == "h_alpha"
        key = (tuple(sorted(c["data"].items())), c["noise"]["source"], c["noise"]["alpha"], clean_only)
        if key not in seen:
            seen.add(key)
            check_sizes(c["data"], c["noise"], clean_only)
        shape, model = image_shape(c["data"]), json.dumps(c["model"], sort_keys=True)
        if (shape, model) not in seen:  # the architecture on the dataset's images, on the meta device (no memory)
            seen.add((shape, model))
            try:
                forward_flops(c["model"]["arch"], c["data"], c["model"])
            except RuntimeError as exc:  # e.g. a kernel or pool larger than the feature map
                raise UsageError(f"model.arch={c['model']['arch']!r} does not fit data.dataset={c['data']['dataset']} "
                                 f"images of shape {shape}: {str(exc).splitlines()[0][:160]}") from None


def check_run_dir(path: Path) -> None:
    """run_dir is a folder, or a path whose first existing ancestor is one."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise UsageError(f"run_dir={str(path)!r} is invalid: it must be a folder or a path that does not "
                                 f"exist yet ({p} is a file)")
            return


MAX_LOCAL_HOURS = 24  # a local study estimated to take longer stops unless force=true


def cost_guard(cfg: dict[str, Any], groups: list[list[dict[str, Any]]], resources: dict[str, float]) -> None:
    """A local study: one line with its estimate on this machine; over MAX_LOCAL_HOURS it stops unless force=true."""
    import torch

    from study.cost import local_hours

    cpus = cfg["ray"]["num_cpus"] or os.cpu_count() or 1
    gpus = torch.cuda.device_count() if resources["gpu"] else 0
    hours, device = local_hours(groups, resources["cpu"], cpus, resources["gpu"], gpus)
    n_configs = sum(len(g) for g in groups)
    print(f"estimate: {n_configs} configs in {len(groups)} trials, about {hours:.3g} hours on this machine "
          f"({device}; dry_run=true for the details)", flush=True)
    if hours > MAX_LOCAL_HOURS and not cfg.get("force"):
        raise UsageError(f"this study would take about {hours:.3g} hours on this machine ({device}), over "
                         f"{MAX_LOCAL_HOURS}: shrink its grid or scale, run it on a cluster (ray.address), or pass "
                         "force=true to run it anyway")


def ensure_data(configs: list[dict[str, Any]]) -> None:
    """Every dataset the trials read is on disk, or (smoke) will be a stand-in: say so in one line."""
    needed = set()
    for c in configs:
        data = c["data"]
        if data["dataset"] == "folder":  # under data.path, not the root: listed and checked, one line if bad
            datasets.tree(data)
            continue
        for name in {data["dataset"], *(["cifar100"] if c["noise"]["source"] == "cifar100" else [])}:
            needed.add((name, data["root"], data["download"], data["stand_in"]))
    for name, root, download, stand_in in sorted(needed):
        try:
            stand_in = datasets.ensure_available(name, Path(root), download, stand_in)
        except PermissionError as exc:
            raise UsageError(f"data.root={root!r} is invalid: it must be a folder you may read and write "
                             f"({exc.strerror}: {exc.filename})") from None
        if stand_in:
            print(f"data: {name} is not under {root}: using a small generated stand-in with its image shape and "
                  f"classes (data.stand_in=true; results say nothing about {name})", flush=True)


def prepare_betons(configs: list[dict[str, Any]]) -> None:
    """Every .beton the data.backend=ffcv trials read, written and checked once here: a corrupt file is
    one line and exit 2 rather than failed trials, and trials never race to write it."""
    from loaders.data import data_key, table_source

    written = set()
    for c in configs:
        data = c["data"]
        folders = backends.on_disk(data)  # real ImageNet: JPEG .betons of both split folders
        if not folders and data["backend"] != "ffcv":
            continue
        key = (data["dataset"], data["root"], data.get("path")) if folders else (data_key(data), "cifar100" if c["noise"]["source"] == "cifar100" else "same")
        if key in written:
            continue
        written.add(key)
        if folders:
            backends.folder_split(data, True), backends.folder_split(data, False)
        else:
            backends.prepare(*table_source(*key), data)


def save_confusion(results: Any, base: dict[str, Any], run_dir: Path) -> None:
    """exp=confusion: sum the trials' test confusion matrices into run_dir/confusion.npy and copy it
    to noise.confusion (default: the per-dataset path exp=structured reads)."""
    import numpy as np

    from loaders.data import noise_spec

    matrices = [np.asarray(r.metrics["confusion"]) for r in results if not r.error and "confusion" in (r.metrics or {})]
    if not matrices:
        print("confusion matrix: no trial finished, nothing saved", flush=True)
        return
    target = Path(noise_spec(base["noise"], base["data"]["dataset"]).confusion)
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in (run_dir / "confusion.npy", target):  # atomic: exp=structured may read the shared copy any time
        with rundir.atomic_path(path) as tmp:
            np.save(tmp, np.sum(matrices, axis=0))
    print(f"confusion matrix ({len(matrices)} trials): {run_dir / 'confusion.npy'}, copied to {target}", flush=True)


class TrialsFailed(Exception):
    """The study ran to its end but some trials failed after their retries: exit 1."""


def report_failures(results: list[Any]) -> None:
    """Each distinct reason trials failed (the last line of its error, e.g. a GPU node without CUDA), counted."""
    reasons = collections.Counter(
        ([line.strip() for line in str(getattr(r.error, "cause", None) or r.error).splitlines() if line.strip()]
         or [type(r.error).__name__])[-1] for r in results if r.error)
    for reason, count in reasons.items():
        print(f"{count} trial(s) failed: {reason}", file=sys.stderr, flush=True)


def join_cluster(cfg: dict[str, Any]) -> None:
    """On a cluster: join it and check every alive node sees the storage root, before anything is written.
    (The root is not pinned in study.json: a run dir moved to another machine resumes under that machine's.)"""
    if cfg["ray"]["address"]:
        connect(cfg)
        storage.check_nodes(storage.storage_root(cfg))


def run_study(cfg: dict[str, Any], choices: dict[str, str], resume_dir: Path | None = None) -> Path | None:
    import ray
    from ray import tune

    from analysis import report
    from study import experiments
    from study.trainable import trainable
    from study.trial import check

    schema.check(cfg)
    base = trial_base(cfg)
    grids = grids_of(cfg)
    searched = list(dict.fromkeys(p for grid in grids for p in experiments.searched_paths(cfg, grid)))  # ordered
    grouped = cfg["search"]["name"] == "grid" and cfg["scheduler"]["name"] == "none"  # else one config per trial
    if not grouped and cfg["replicates"] > 1:
        raise UsageError(f"replicates={cfg['replicates']} needs search=grid and scheduler=none (optuna and ASHA "
                         "choose one config per trial): use replicates=1, or search.trials_per_cell")
    # Every grid trial; under optuna one per cell, with the base values of the keys Optuna draws.
    configs = replicate([config for grid in grids for config in
                         expand(base, grid if grouped else {p: v for p, v in grid.items() if p not in searched})],
                        cfg["replicates"], cfg["replicate_pin"])
    for config in configs:
        check(config)
    check_plan(configs)  # what the trials' data would reject, before anything is written
    # Rebuilt once by prepare_betons below: the trials only read those files (set per config: a grid.data.*
    # key gives each trial a data section of its own).
    quiet = [with_value(c, "data.rebuild", False) for c in configs]
    if cfg["dry_run"]:  # before the GPU and cluster checks: cost a GPU study from a laptop
        print(dry_run_text(cfg, choices, grids, partition(quiet, bool(cfg["resources"]["gpu"]))))
        return None
    run_dir = (resume_dir or Path(cfg["run_dir"] or default_run_dir(choices, cfg))).resolve()
    check_run_dir(run_dir)
    resources_per_trial = check_resources(cfg)
    check_address(cfg)
    join_cluster(cfg)
    per_cell = cfg["search"]["trials_per_cell"] if cfg["search"]["name"] == "optuna" else 1
    groups = partition(quiet, resources_per_trial["gpu"] > 0) if grouped else [[c] for c in quiet for _ in range(per_cell)]
    slices.check_budget(cfg, grouped, len(groups))
    if not cfg["ray"]["address"] and resume_dir is None:
        cost_guard(cfg, groups, resources_per_trial)
    if grouped:  # one Tune grid over the groups of every grid (grid_extra included)
        print(f"trials: {len(groups)} groups of {len(quiet)} configs (train.fuse={cfg['train']['fuse']})", flush=True)
        plan = [experiments.Experiment("tune", {"members": tune.grid_search(groups)})]
    else:
        plan = []
        for i, grid in enumerate(grids):  # a union of grids is no single Tune grid: experiments of their own
            for exp in experiments.plan(cfg, base, grid):
                exp = dataclasses.replace(exp, param_space=with_value(exp.param_space, "data.rebuild", False))
                plan.append(exp if i == 0 else dataclasses.replace(exp, path=exp.path.replace("tune", f"tune-extra{i}", 1)))
    ensure_data(configs)
    prepare_betons(configs)

    run_dir.mkdir(parents=True, exist_ok=True)
    lock(run_dir)
    print(f"run dir: {run_dir}", flush=True)
    if resume_dir is None:
        trials = len(configs) * (cfg["search"]["trials_per_cell"] if cfg["search"]["name"] == "optuna" else 1)
        rundir.write_json({"exp": choices["exp"], "preset": choices["preset"], "trials": trials,
                           "figures": cfg.get("figures", []), "config": cfg,
                           "searched": [rundir.column(p) for p in searched],
                           "experiments": [e.path for e in plan]}, run_dir / rundir.STUDY)

    os.environ["RAY_CHDIR_TO_TRIAL_DIR"] = "0"  # trials keep the driver's working directory
    started = time.time()
    connect(cfg)
    # A resumed run dir may have moved to another machine: its restored trials (which keep the configs they
    # started with) read this launch's data root, .beton cache and confusion artifact.
    placed = flatten(base)
    moved = {k: placed[k] for k in slices.PLACED if not any(k in g for g in grids)} if resume_dir else None
    try:
        with stoppable() as received, slices.budget_timer(slices.seconds(cfg["budget"])) as spent:
            results = experiments.fit(plan, tune.with_resources(tune.with_parameters(trainable, paths=moved),
                                                                resources_per_trial),
                                      cfg, run_dir, restore=resume_dir is not None)
        cluster = ray.cluster_resources()  # for provenance.json: the GPUs (and their kind) the study could use
    except KeyboardInterrupt:  # a second signal, or one no Tune loop listened to: Tune's last saved state stands
        raise Interrupted((received or [signal.SIGINT])[-1], run_dir, 0, len(groups)) from None
    finally:
        ray.shutdown()
    results = list(itertools.chain(*results))
    done = len(finished_ids(results))
    outcome = "interrupted" if received else "budget spent" if spent and done < len(groups) else "finished"
    provenance.record(run_dir, started, cluster, resources_per_trial["gpu"], outcome)
    report_failures(results)
    if received:
        raise Interrupted(received[0], run_dir, done, len(groups))
    if outcome == "budget spent":
        stop_at_budget(cfg, results, [path for grid in grids for path in grid], run_dir, len(groups))
    if base["train"]["report_confusion"]:
        save_confusion(results, base, run_dir)
    trials, epochs = rundir.collect(results, [path for grid in grids for path in grid])
    rundir.write_csv(trials, run_dir / rundir.TRIALS)
    rundir.write_csv(epochs, run_dir / rundir.EPOCHS)
    report.make_report(run_dir)
    failed = sum(bool(r.error) for r in results)
    if failed:  # written and analysed all the same; a job script must still see that the study is not whole
        raise TrialsFailed(f"{failed} of {len(groups)} trials failed (their reasons above; trials.csv marks them "
                           f"status=error): results in {run_dir}")
    return run_dir


def resume(run_dir: Path, overrides: dict[str, Any]) -> Path:
    """Finish an interrupted or budget-stopped study with the config it was started with, but for the
    slices.PORTABLE `overrides` (another budget, data root or cluster: the run dir may have moved)."""
    from ray import tune

    run_dir = run_dir.resolve()
    if not (run_dir / rundir.STUDY).is_file():
        raise UsageError(f"resume={run_dir} is not a study run dir: it has no {rundir.STUDY}")
    lock(run_dir)  # before anything else: a study still running there is not run twice
    study = rundir.read_study(run_dir)
    if not any(tune.Tuner.can_restore(run_dir / p) for p in study.get("experiments", ["tune"])):
        raise UsageError(f"resume={run_dir} holds no Tune experiment state to restore: start the study afresh")
    return run_study(slices.with_overrides(study["config"], overrides), {"exp": study["exp"], "preset": study["preset"]},
                     resume_dir=run_dir)


def held_study(cfg: dict[str, Any], choices: dict[str, str]) -> bool:
    """run_dir= names a folder that already holds a study with Tune state: the same study (else one line), to be
    continued as resume= would (a requeued job re-running its command picks up where it left off)."""
    from ray import tune

    if not cfg["run_dir"] or cfg["dry_run"] or not (Path(cfg["run_dir"]) / rundir.STUDY).is_file():
        return False
    study = rundir.read_study(Path(cfg["run_dir"]))
    slices.same_study({"exp": study["exp"], "preset": study["preset"], **study["config"]},  # names first
                      {"exp": choices["exp"], "preset": choices["preset"], **cfg}, cfg["run_dir"])
    return any(tune.Tuner.can_restore(Path(cfg["run_dir"]) / p) for p in study.get("experiments", ["tune"]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, choices = compose(argv)
        if cfg["resume"]:
            schema.check_value("budget", cfg["budget"])
            run_dir = resume(Path(cfg["resume"]), slices.resume_overrides(argv, cfg))
        elif held_study(cfg, choices):
            print(f"run dir {cfg['run_dir']} holds this study: continuing it (as resume= would)", flush=True)
            run_dir = resume(Path(cfg["run_dir"]), slices.portable(cfg))
        else:
            run_dir = run_study(cfg, choices)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc, file=sys.stderr, flush=True)
        return exc.code
    except slices.BudgetSpent as exc:
        print(exc, flush=True)
        return slices.EXIT_BUDGET
    except TrialsFailed as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # before the study started: nothing to resume
        print("interrupted before the study started: nothing ran", file=sys.stderr, flush=True)
        return 130
    if run_dir is not None:
        print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
