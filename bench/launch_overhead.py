"""A launch's fixed cost per runner: tiny studies (perceptron, 200 images, one epoch, one config per group)
launched as a user launches one, `python -m study.launch ... runner=<tune|local>` in a process of its own, with
1 group and with GROUPS groups, one group at a time on one core. Wall time less the training time the epochs
report splits into a cost per launch (interpreter and imports, Ray and Tune, data, the analysis and its
figures) and a cost per group (its trial, its data, its rows). Beside each wall time, the CPU seconds the
launch and the processes it waited for used: on a machine other jobs share, wall time includes waiting for
them (the load average at the start is recorded too).

    python -m bench.launch_overhead [--repeats 2]  -> bench/results/launch_overhead-<host>.json

study.cost adds these to every estimate (the `estimate:` line, dry_run=true).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import rundir

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]
RUNNERS = ("tune", "local")
GROUPS = 8
N_CLEAN = 200


def launch(runner: str, groups: int, folder: Path) -> tuple[float, float]:
    """One tiny study of `groups` groups: its wall time less its training time, and its CPU seconds, both in
    seconds."""
    alphas = ",".join(str(a) for a in range(groups))
    run_dir = folder / f"{runner}-{groups}"
    argv = ["exp=uniform_mnist", "preset=smoke", "data.download=false", "grid.model.arch=[perceptron]",
            "grid.train.lr=[0.1]", f"grid.noise.alpha=[{alphas}]", f"data.n_clean={N_CLEAN}", "data.n_test=200",
            "train.epochs=1", "train.fuse=none", "resources.cpu=1", "ray.num_cpus=1", f"runner={runner}",
            f"run_dir={run_dir}"]
    start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "study.launch", *argv], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(folder)})
    wall, now = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"error: the {runner} launch failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    trials = pd.read_csv(run_dir / rundir.TRIALS)
    train_s = (N_CLEAN * (1 + trials["alpha"]) * trials["epochs"] / trials["images_per_s"]).sum()
    return wall - float(train_s), now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.launch_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="launches per runner and size (their median counts)")
    args = parser.parse_args(argv)
    load = [round(x, 2) for x in os.getloadavg()]
    rows, fixed = [], {}
    with tempfile.TemporaryDirectory(prefix="lo", dir="/tmp") as tmp:  # short: Ray's socket paths live under it
        for runner in RUNNERS:
            seconds = {}
            for groups in (1, GROUPS):
                runs = [launch(runner, groups, Path(tmp) / str(i)) for i in range(args.repeats)]
                seconds[groups] = statistics.median(wall for wall, _ in runs)
                rows.append({"runner": runner, "groups": groups, "overhead_s": [round(w, 1) for w, _ in runs],
                             "cpu_s": [round(c, 1) for _, c in runs]})
                print(f"{runner}, {groups} group(s): {', '.join(f'{w:.1f} s (CPU {c:.1f} s)' for w, c in runs)}",
                      flush=True)
            group_s = max(0.0, (seconds[GROUPS] - seconds[1]) / (GROUPS - 1))
            fixed[runner] = {"launch_s": round(seconds[1] - group_s, 1), "group_s": round(group_s, 2)}
    out = {"host": socket.gethostname(), "cpus": os.cpu_count(), "python": platform.python_version(),
           "loadavg_at_start": load, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "command": "python -m bench.launch_overhead " + " ".join(sys.argv[1:] if argv is None else argv),
           "rows": rows, "fixed": fixed}
    path = RESULTS / f"launch_overhead-{out['host']}.json"
    rundir.write_json(out, path)
    for runner, cost in fixed.items():
        print(f"{runner}: {cost['launch_s']} s per launch, {cost['group_s']} s per group")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
