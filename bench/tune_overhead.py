"""Tune's overhead per trial: tiny trials (perceptron, 100 images, 1 epoch) through the launcher's own
Tune path on a local Ray, one at a time, so that wall time = summed trial time + overhead.

    python -m bench.tune_overhead [--trials 200]  -> bench/results/tune_overhead-<hostname>.json (target <= 0.5 s/trial)
"""

from __future__ import annotations

import argparse
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

TRIALS = 200
TARGET_S = 0.5
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    trials = parser.parse_args(argv).trials
    import ray
    from ray import tune

    import rundir
    from study import config, experiments
    from study.cluster import connect
    from study.grid import expand, grids_of
    from study.storage import trial_base
    from study.trainable import trainable

    cfg, _ = config.compose(["exp=uniform_mnist", "preset=smoke", "grid.noise.alpha=[0]", "grid.model.arch=[perceptron]",
                             "grid.train.lr=[0.1]", f"+grid.train.seed=[{','.join(map(str, range(trials)))}]",
                             "data.n_clean=100", "data.n_test=100", "train.epochs=1", "max_concurrent_trials=1",
                             "ray.num_cpus=1"])
    base, grids = trial_base(cfg), grids_of(cfg.grid, cfg.grid_extra)
    plan = experiments.plan(cfg, base, grids, [[c] for c in expand(base, grids[0])])  # one config per trial
    start = time.perf_counter()
    connect(cfg)
    init_s = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            (results,) = experiments.fit(plan, tune.with_resources(trainable, {"cpu": 1}), cfg, Path(run_dir), False)
            wall_s = time.perf_counter() - start
    finally:
        ray.shutdown()
    assert len(results) == trials and not results.errors, results.errors
    train_s = sum(r.metrics["time_total_s"] for r in results)  # Tune's own clock of each trainable call
    out = {"host": socket.gethostname(), "cpus": cfg.ray.num_cpus, "trials": trials, "concurrency": 1,
           "ray": ray.__version__, "python": platform.python_version(), "ray_init_s": round(init_s, 3),
           "wall_s": round(wall_s, 3), "train_s": round(train_s, 3),
           "overhead_per_trial_s": round((wall_s - train_s) / trials, 4), "target_s": TARGET_S}
    out["meets_target"] = out["overhead_per_trial_s"] <= TARGET_S
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"tune_overhead-{out['host']}.json"
    rundir.write_json(out, path)
    print(f"{trials} trials: wall {wall_s:.2f} s, training {train_s:.2f} s, "
          f"overhead {out['overhead_per_trial_s']:.3f} s/trial (target <= {TARGET_S}) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
