"""provenance.json: where and how each launch of a study ran, appended at its end (finished, budget spent or
interrupted), with totals over the launches: what analysis.reproduction shows beside the paper's claims."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import rundir

REPO = Path(__file__).resolve().parents[1]


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device(cluster: dict[str, float], gpus: float, runner: str = "tune") -> str:
    """The accelerators Ray saw (its accelerator_type resources, e.g. H100), else this machine's CPU."""
    import torch

    kinds = sorted(k.split(":", 1)[1] for k in cluster if k.startswith("accelerator_type:"))
    if gpus and kinds:
        return f"{gpus:g} x {'+'.join(kinds)}"
    if gpus and torch.cuda.is_available():
        return f"{gpus:g} x {torch.cuda.get_device_name(0)}"
    cores = cluster.get("CPU", 0)
    return f"CPU ({cpu_name()}, {cores:g} core{'s' * (cores != 1)}{' to Ray' * (runner == 'tune')})"


def record(run_dir: Path, started: float, cluster: dict[str, float], gpu_per_trial: float, outcome: str,
           runner: str = "tune") -> None:
    """Append this launch to run_dir/provenance.json. GPU-minutes = wall time x the GPUs the study could use
    (the Ray cluster's GPUs when its trials ask for some), an upper bound on what its trials held; a study on
    CPUs has CPU-minutes instead: wall time x the cores it was given (Ray's, or runner=local's threads)."""
    import torch

    wall = time.time() - started
    gpus = cluster.get("GPU", 0) if gpu_per_trial else 0
    cpus = 0 if gpus else cluster.get("CPU", 0)
    path = run_dir / rundir.PROVENANCE
    old = rundir.read_json(path) if path.is_file() else {"launches": []}
    launch = {"ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "outcome": outcome, "runner": runner,
              "device": device(cluster, gpus, runner), "gpus": gpus, "cpus": cpus, "wall_s": round(wall, 1),
              "gpu_minutes": round(wall * gpus / 60, 2), "cpu_minutes": round(wall * cpus / 60, 2),
              "command": " ".join([sys.executable, "-m", "study.launch", *sys.argv[1:]]),
              "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
              "host": platform.node(), "python": platform.python_version(), "torch": torch.__version__}
    if runner == "tune":
        import ray

        launch["ray"] = ray.__version__
    launches = [*old["launches"], launch]
    devices = " + ".join(dict.fromkeys(x["device"] for x in launches))
    rundir.write_json({"device": devices, "wall_s": round(sum(x["wall_s"] for x in launches), 1),
                       "gpu_minutes": round(sum(x["gpu_minutes"] for x in launches), 2),
                       "cpu_minutes": round(sum(x.get("cpu_minutes", 0) for x in launches), 2),
                       "launches": launches}, path)
