"""Launch one experiment of the paper as a Ray Tune study (or, with runner=local, without Ray): compose, plan, run,
write.

    python -m study.launch exp=uniform_mnist [preset=smoke|paper] [search=grid|optuna] [scheduler=none|asha] [key=value ...]
    python -m study.launch resume=<run_dir>      # finish an interrupted study

compose: Hydra composes the typed config and checks it once (study.config). plan: the grids become trial
configs, each checked with its data and model (study.preflight). run: Tune trains them (study.trainable) on
Ray, or runner=local one group after another in this process (study.local), until they end, a budget is
spent or a signal comes (study.slices). write: the run dir gets trials.csv, epochs.csv and the analysis'
summary, figures and claims (rundir, analysis.report). Bad input: one line, exit 2, nothing written.
"""

from __future__ import annotations

import dataclasses
import itertools
import signal
import sys
import time
from pathlib import Path
from typing import Any

import rundir
from errors import UsageError
from study import config, console, cost, experiments, local, preflight, provenance, slices, storage
from study.cluster import check_address, check_resources, connect, gpu_missing
from study.config import Config
from study.preflight import Plan


def compose(argv: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The checked config of these overrides as study.json stores it (a plain mapping), and the chosen exp and
    preset: for readers of launch commands (tests/test_deploy_templates.py); the launcher itself uses
    study.config.compose's typed Config."""
    cfg, names = config.compose(argv)
    return dataclasses.asdict(cfg), names


class TrialsFailed(Exception):
    """The study ran to its end but some trials failed after their retries: exit 1."""


def run_study(cfg: Config, names: dict[str, str], resume_dir: Path | None = None) -> Path | None:
    """Plan the study and check where it runs, then run it and write its run dir; None after a dry run."""
    plan = preflight.plan(cfg)
    if cfg.dry_run:  # before the GPU and cluster checks: cost a GPU study from a laptop
        print(cost.dry_run_text(cfg, names, plan.grids, plan.groups(cfg, bool(cfg.resources.gpu))))
        return None
    run_dir = resume_dir or storage.absolute("run_dir", cfg.run_dir or rundir.named(storage.runs_root(cfg),
                                                                                     names["exp"], names["preset"]))
    rundir.check_path(run_dir)
    check_address(cfg)
    if not cfg.ray.address and resume_dir is None:  # the cost first: on a laptop it decides more than its GPU
        gpu = 0.0 if gpu_missing(cfg) else cfg.resources.gpu
        preflight.cost_guard(cfg, plan.groups(cfg, gpu > 0), {"cpu": cfg.resources.cpu, "gpu": gpu})
    resources = check_resources(cfg)
    token = None  # a cluster: every alive node sees the storage root, before any write; each trial checks again
    if cfg.ray.address:  # (the root is not pinned in study.json: a run dir moved elsewhere resumes under that root)
        connect(cfg)
        token = storage.check_nodes(storage.storage_root(cfg))
    groups = plan.groups(cfg, resources["gpu"] > 0)
    slices.check_budget(cfg, len(groups))
    tune_plan = experiments.plan(cfg, plan.base, plan.grids, groups) if cfg.runner == "tune" else []
    if cfg.grouped:
        print(f"trials: {len(groups)} groups of {len(plan.configs)} configs (train.fuse={cfg.train.fuse})", flush=True)
    stand_ins = preflight.prepare(plan.configs)

    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.lock(run_dir)
    print(f"run dir: {console.shown(run_dir)}", flush=True)
    if resume_dir is None:
        rundir.write_json({"exp": names["exp"], "preset": names["preset"], "trials": len(plan.configs) * cfg.per_cell,
                           "figures": cfg.figures, "config": dataclasses.asdict(cfg),
                           "dataset": preflight.described(plan.base["data"], stand_ins),
                           "searched": [rundir.column(p) for p in plan.searched],
                           "experiments": [e.path for e in tune_plan]}, run_dir / rundir.STUDY)
    if cfg.runner == "local":  # the one other runner: no Ray (study.local)
        results, outcome, progress = local.run(cfg, plan, groups, resources, run_dir, resume_dir is not None)
        write(cfg, plan, results, outcome, progress.advanced(), run_dir, len(groups))
        return run_dir
    import ray

    try:
        results, outcome, progress = run(cfg, plan, tune_plan, resources, run_dir, resume_dir is not None, len(groups),
                                        token)
        try:
            write(cfg, plan, results, outcome, progress.advanced(), run_dir, len(groups))
        finally:
            if cfg.dashboard and not cfg.ray.address:
                console.hold_dashboard()
    finally:
        ray.shutdown()
    return run_dir


def run(cfg: Config, plan: Plan, tune_plan: list[experiments.Experiment], resources: dict[str, float],
        run_dir: Path, restore: bool, total: int,
        token: tuple[str, str] | None) -> tuple[list[Any], str, console.Progress]:
    """Run (restore: resume) the Tune experiments until they end, the budget is spent or a signal comes; their
    results, how this launch ended (recorded in provenance.json) and its progress. Ray stays up for the caller.
    `token`: the storage root's, which every trial reads on its node before it trains (a cluster)."""
    import ray
    from ray import tune

    from study.trainable import trainable

    started = time.time()
    console.quiet_ray()
    for line in [*console.dashboard_lines(connect(cfg)), console.tensorboard_line(run_dir)]:
        print(line, flush=True)
    moved = slices.placed(plan.base, plan.grids) if restore else None
    runnable = tune.with_resources(tune.with_parameters(trainable, paths=moved, token=token), resources)
    progress = console.Progress(total)
    try:
        with slices.stoppable() as received, slices.budget_timer(slices.seconds(cfg.budget)) as spent:
            results = experiments.fit(tune_plan, runnable, cfg, run_dir, restore=restore, progress=progress)
        cluster = ray.cluster_resources()  # for provenance.json: the GPUs (and their kind) the study could use
    except KeyboardInterrupt:  # a second signal, or one no Tune loop listened to: Tune's last saved state stands
        raise slices.Interrupted((received or [signal.SIGINT])[-1], run_dir, 0, total) from None
    finally:
        progress.close()
    results = list(itertools.chain(*results))
    done = len(rundir.finished_ids(results))
    outcome = "interrupted" if received else "budget spent" if spent and done < total else "finished"
    provenance.record(run_dir, started, cluster, resources["gpu"], outcome)
    for reason, count in rundir.failures(results).items():
        print(f"{count} trial(s) failed: {reason}", file=sys.stderr, flush=True)
    if received:
        raise slices.Interrupted(received[0], run_dir, done, total)
    return results, outcome, progress


def write(cfg: Config, plan: Plan, results: list[Any], outcome: str, advanced: list[tuple[int, int, int]],
          run_dir: Path, total: int) -> None:
    """trials.csv, epochs.csv and the analysis. A spent budget: the finished trials only, then BudgetSpent (with
    what advanced in this slice); exp=confusion: the summed confusion matrix; failed trials: TrialsFailed, once all
    is written."""
    from analysis import report

    budget = outcome == "budget spent"
    try:
        if not budget and plan.base["train"]["report_confusion"]:
            target = Path(plan.base["noise"]["confusion"])
            summed = rundir.save_confusion(results, run_dir, target)
            print(f"confusion matrix ({summed} trials): {run_dir / rundir.CONFUSION}, copied to {target}" if summed
                  else "confusion matrix: no trial finished, nothing saved", flush=True)
        rundir.write_results(results, plan.paths, run_dir, finished_only=budget)
        report.make_report(run_dir)
    except KeyboardInterrupt:  # Ctrl-C after the trials ran (not "nothing ran"): resume= writes all this again
        raise slices.Interrupted(signal.SIGINT, run_dir, len(rundir.finished_ids(results)), total) from None
    if budget:
        done = len(rundir.finished_ids(results))
        started = sum(bool(r.metrics and r.metrics.get("epoch")) for r in results)
        raise slices.BudgetSpent(cfg.budget, run_dir, done, started - done, total, advanced)
    failed = sum(bool(r.error) for r in results)
    if failed:  # written and analysed all the same; a job script must still see that the study is not whole
        raise TrialsFailed(f"{failed} of {total} trials failed (their reasons above; trials.csv marks them "
                           f"status=error): results in {run_dir}")


def start(cfg: Config, names: dict[str, str], argv: list[str]) -> Path | None:
    """A new study; or, with resume= (or run_dir= on a folder that holds this study), the study held there."""
    # resolved before slices.continues reads it (resume= is, below): a link loop or an overlong name is one line
    given = storage.absolute("run_dir", cfg.run_dir) if cfg.run_dir else None
    if not cfg.resume:
        cfg = preflight.fitted(cfg, slices.given(argv))
    if cfg.resume:
        run_dir = storage.absolute("resume", cfg.resume)
        study = slices.held(run_dir)
        overrides = slices.resume_overrides(argv, cfg, names, study, run_dir)
    elif slices.continues(cfg, names):
        print(f"run dir {cfg.run_dir} holds this study: continuing it (as resume= would)", flush=True)
        run_dir = given
        study, overrides = slices.held(run_dir), slices.portable(cfg)
    else:
        return run_study(cfg, names)
    return run_study(*slices.resumed(study, overrides), resume_dir=run_dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        run_dir = start(*config.compose(argv), argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except slices.Interrupted as exc:
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
    finally:
        rundir.unlock_all()  # no .lock is left in a run dir no launcher runs
    if run_dir is not None:
        print(f"results: {console.shown(run_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
