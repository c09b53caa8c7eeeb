"""Mutation testing report (`make mutants`): mutmut over the core modules with their fast tests.

Runs in a scratch copy of the work tree (tracked and untracked-not-ignored files), so mutmut's
mutants/ folder and its [tool.mutmut] config never touch the checkout. Each module is mutated and
tested with the fast test files aimed at it (TESTS), one mutmut run per module. Writes the killed
share, per module and in all, and every mutant that was not killed (with its diff), to
bench/results/mutants.json. What was run (modules, tests, mutmut version, settings) is in the file.

    python scripts/mutants.py                       # every module in TESTS
    python scripts/mutants.py study/losses.py       # some of them: the others keep their entries in the file
    python scripts/mutants.py study/losses.py --survivors   # after adding tests: re-run the listed survivors only

A module's entry says when and how it was run (date, command); the overall share is over every module
in the file, so modules can be run one at a time (each takes minutes to an hour on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version

import mutmut as mutmut_pkg
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "mutants.json"
# Module -> the fast test files aimed at it (none is marked slow).
TESTS = {
    "loaders/noise.py": ["tests/test_noise.py", "tests/test_noise_structured.py", "tests/test_noise_white.py",
                         "tests/test_noise_human.py"],
    "study/losses.py": ["tests/test_losses.py"],
    "study/train.py": ["tests/test_train.py", "tests/test_fused.py"],
    "analysis/summary.py": ["tests/test_analysis.py", "tests/test_replicates.py", "tests/test_claims_table.py",
                            "tests/test_val_split.py"],
    "analysis/claims.py": ["tests/test_analysis.py", "tests/test_claims_table.py", "tests/test_noise_human.py"],
}
# torch is not fork-safe once it has run: mutmut's forkserver forks clean workers. It is warmed by importing
# the third-party libraries only (no import per mutant); the project's modules are imported in each worker,
# since some run code at import (e.g. claims.CLAIMS is built by threshold()) that a mutant must reach.
SETTINGS = {"process_isolation": "forkserver", "forkserver_warmup": "import"}
PRELOAD = ["numpy", "pandas", "torch", "torchvision", "matplotlib", "matplotlib.pyplot", "omegaconf", "hydra", "PIL.Image"]
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow", "-W", "ignore"]
KILLED = {"killed", "killed on recheck"}
RECHECK = {"survived", "no tests"}
_SQUARE = "equivalent: noise distributions are square, (m, m) or (K, m, m), so this index also gives m"
_DTYPE = "equivalent: targets() passes float32 tables, eye's default dtype; the 0/1 entries are exact in any dtype"
_DEVICE = ("equivalent on a CPU; on CUDA a CPU tensor here fails: tests/test_gpu_present.py::"
           "test_h_alpha_targets_on_cuda_equal_cpu kills it where CUDA is visible")
_RENORM = ("equivalent: the rows of ((1 + alpha) T - I) / alpha already sum to 1 (to 1e-16), and the last line only "
           "renormalises against rounding: any positive row scale cancels in it, and dividing, multiplying or "
           "broadcasting by sums of 1 changes nothing")
_FLOAT = "equivalent: n_crit is float64 already, and astype(None) is float64"
_CPU_ONLY = ("equivalent on a CPU (the device given is the CPU either way); on CUDA it would mix devices, which no "
             "test checks yet: tests/test_gpu_present.py covers the losses and the train step, not the noise model")
_FIXED_POINT = "equivalent: the pre-clip moments' fixed point converges in far fewer than 200 iterations"
_INT_DTYPE = "equivalent: confusion counts are integers either way; argsort orders them the same"
# Survivors judged harmless (by mutant name, as mutmut 3.8.1 names them for the current code), and why.
JUDGED = {
    "study.losses.x_label_distribution__mutmut_2": _SQUARE, "study.losses.x_label_distribution__mutmut_3": _SQUARE,
    "study.losses.x_label_distribution__mutmut_7": _DTYPE, "study.losses.x_label_distribution__mutmut_10": _DTYPE,
    "study.losses.x_label_distribution__mutmut_8": _DEVICE, "study.losses.x_label_distribution__mutmut_11": _DEVICE,
    "study.losses.x_targets__mutmut_12": _DEVICE, "study.losses.x_targets__mutmut_14": _DEVICE,
    "loaders.noise.x_copy_distribution__mutmut_2": _SQUARE, "loaders.noise.x_copy_distribution__mutmut_7": _RENORM,
    "loaders.noise.x_copy_distribution__mutmut_20": _RENORM, "loaders.noise.x_copy_distribution__mutmut_24": _RENORM,
    "loaders.noise.x_copy_distribution__mutmut_26": _RENORM,
    "analysis.summary.x_critical_clean__mutmut_10": _FLOAT,
    "analysis.summary.x_t975__mutmut_5": "equivalent: float('NAN') is NaN (case-insensitive)",
    "analysis.summary.x_critical_points__mutmut_14": "equivalent: np.log of the n_clean index gives float64 whatever its dtype",
    "analysis.summary.x_critical_points__mutmut_15": "equivalent: accuracies are float64 already",
    "loaders.noise.xǁWhiteNoiseǁ__init____mutmut_11": _FIXED_POINT,
    "loaders.noise.x_wrong_class_order__mutmut_21": _INT_DTYPE, "loaders.noise.x_wrong_class_order__mutmut_23": _INT_DTYPE,
    **{name: _CPU_ONLY for name in ("loaders.noise.xǁNoiseModelǁto__mutmut_2", "loaders.noise.xǁNoiseModelǁto__mutmut_4",
                                    *(f"loaders.noise.xǁWhiteNoiseǁ__call____mutmut_{i}" for i in (12, 14, 53, 55)))},
}


def scratch_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def recheck(work: Path, tests: list[str], names: list[str], deadline: float) -> dict[str, str]:
    """Survivors re-run in a fresh process, the mutant active from the start, on all the module's tests:
    mutmut runs only the tests it saw call a function, and a function run at import (claims.threshold
    builds CLAIMS) is called by none. A failing test kills the mutant ("killed on recheck"). Those left
    at the deadline (time.time()) stay as mutmut left them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([".", str(Path(mutmut_pkg.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = {}
    for name in names:
        if time.time() > deadline:
            break
        try:
            run = subprocess.run([sys.executable, "-m", "pytest", *PYTEST_ARGS, *tests], cwd=work / "mutants",
                                 env={**env, "MUTANT_UNDER_TEST": name}, capture_output=True, timeout=600)
        except subprocess.TimeoutExpired:
            continue
        if run.returncode in (1, 2):  # tests failed, or the mutant broke their import
            out[name] = "killed on recheck"
    return out


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def run_module(module: str, tests: list[str], children: int, timeout_s: int, only: list[str] | None = None) -> dict:
    """mutmut over `module` with `tests`: every mutant, or `only` those named (their statuses only)."""
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        work = Path(tmp)
        scratch_copy(work)
        config = ["", "[tool.mutmut]", f"source_paths = {toml_list([module])}",
                  f"also_copy = {toml_list(['loaders', 'study', 'analysis', 'bench', 'rundir', 'tests'])}",
                  f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}",
                  f"pytest_add_cli_args_test_selection = {toml_list(tests)}",
                  f"preload_modules_file = {json.dumps(str(work / 'preload.txt'))}",
                  *(f"{k} = {json.dumps(v)}" for k, v in SETTINGS.items())]
        (work / "preload.txt").write_text("\n".join(PRELOAD) + "\n")
        with open(work / "pyproject.toml", "a") as f:
            f.write("\n".join(config) + "\n")
        mutmut = [sys.executable, "-m", "mutmut"]
        start = time.time()
        # Its own process group: on --timeout, mutmut's forkserver and workers are stopped with it.
        run = subprocess.Popen([*mutmut, "run", "--max-children", str(children), *(only or [])], cwd=work,
                               start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            finished = run.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            finished = False
        elapsed = time.time() - start
        listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True)
        status = {}
        for line in listing.stdout.splitlines():
            name, sep, state = line.strip().rpartition(": ")
            if sep and name.startswith(module.removesuffix(".py").replace("/", ".")) and (only is None or name in only):
                status[name] = state
        status.update(recheck(work, tests, [n for n, state in status.items() if state in RECHECK], start + 1.2 * timeout_s))
        not_killed = {}
        for name, state in sorted(status.items()):
            if state not in KILLED:
                if state == "not checked":
                    continue
                diff = subprocess.run([*mutmut, "show", name], cwd=work, capture_output=True, text=True).stdout
                not_killed[name] = {"status": state,
                                    "diff": [l for l in diff.splitlines() if l[:1] in "+-" and l[:3] not in ("+++", "---")],
                                    "judged": JUDGED.get(name, "not judged")}
    counts: dict[str, int] = {}
    for state in status.values():
        counts[state] = counts.get(state, 0) + 1
    checked = len(status) - counts.get("not checked", 0)  # a run stopped by --timeout leaves some unchecked
    return score({"tests": tests, "source_sha256": source_hash(module), "finished": finished, "seconds": round(elapsed, 1), "mutants": checked,
                  "unchecked": len(status) - checked, "counts": counts, "not_killed": not_killed, "status": status})


def source_hash(module: str) -> str:
    return hashlib.sha256((REPO / module).read_bytes()).hexdigest()


def score(entry: dict) -> dict:
    """A module's entry with its killed counts and shares (re)computed, and JUDGED applied to its survivors."""
    for name, mutant in entry["not_killed"].items():
        mutant["judged"] = JUDGED.get(name, "not judged")
    killed = sum(entry["counts"].get(s, 0) for s in KILLED)
    checked, harmless = entry["mutants"], sum(1 for m in entry["not_killed"].values() if m["judged"] != "not judged")
    entry = dict(entry)
    not_killed = entry.pop("not_killed")
    return {**entry, "killed": killed, "killed_share": round(killed / checked, 4) if checked else None,
            "judged_harmless": harmless,
            "killed_share_of_non_equivalent": round(killed / (checked - harmless), 4) if checked > harmless else None,
            "not_killed": not_killed}


def rerun_survivors(module: str, entry: dict, children: int, timeout_s: int, command: str) -> dict:
    """The module's earlier entry with its survivors re-run on the current tests (the source unchanged,
    mutmut gives its mutants the same names): those now killed leave not_killed and count as killed."""
    if entry.get("source_sha256") != source_hash(module):  # mutmut numbers mutants per function: names would shift
        sys.exit(f"{module} changed since its entry was made (or the entry has no source_sha256): run it in full")
    names = sorted(entry["not_killed"])
    fresh = run_module(module, TESTS[module], children, timeout_s, names)
    status = fresh.pop("status")
    # one left unchecked (stopped by --timeout) keeps its earlier status
    now = {n: entry["not_killed"][n]["status"] if status.get(n, "not checked") == "not checked" else status[n]
           for n in names}
    counts = dict(entry["counts"])
    for name in names:
        old, new = entry["not_killed"][name]["status"], now[name]
        counts[old] -= 1
        counts[new] = counts.get(new, 0) + 1
    not_killed = {n: {**m, "status": now[n]} for n, m in entry["not_killed"].items() if now[n] not in KILLED}
    reruns = [*entry.get("survivor_reruns", []), {"date": time.strftime("%Y-%m-%d"), "command": command,
                                                  "tests": TESTS[module], "rerun": len(names),
                                                  "killed_now": len(names) - len(not_killed)}]
    return score({**{k: v for k, v in entry.items() if k not in ("not_killed", "counts")},
                  "counts": {k: v for k, v in counts.items() if v}, "survivor_reruns": reruns, "not_killed": not_killed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(TESTS), help=f"of {', '.join(TESTS)}")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per module")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--survivors", action="store_true",
                        help="re-run only the mutants --out lists as not killed for these modules (after adding tests)")
    parser.add_argument("--rescore", action="store_true",
                        help="run nothing: rewrite --out with JUDGED (after editing it) applied to every module")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in TESTS]
    if unknown:
        sys.exit(f"unknown module(s) {unknown}: choose from {', '.join(TESTS)}")
    command = "python scripts/mutants.py " + " ".join(sys.argv[1:])
    if args.rescore:
        fresh = {}
    elif args.survivors:
        earlier = json.loads(args.out.read_text())["modules"]
        fresh = {m: rerun_survivors(m, earlier[m], args.max_children, args.timeout, command) for m in args.modules}
    else:
        fresh = {m: {"date": time.strftime("%Y-%m-%d"), "command": command,
                     **run_module(m, TESTS[m], args.max_children, args.timeout)} for m in args.modules}
        for entry in fresh.values():
            entry.pop("status")
    previous = json.loads(args.out.read_text())["modules"] if args.out.exists() else {}  # read last: runs may overlap
    # modules not run now keep their last entry (each says its date and command)
    modules = {m: score(fresh.get(m, previous.get(m))) for m in TESTS if m in fresh or m in previous}
    total = sum(r["mutants"] for r in modules.values())
    killed = sum(r["killed"] for r in modules.values())
    report = {
        "tool": f"mutmut {version('mutmut')}", "settings": {**SETTINGS, "preload": PRELOAD}, "pytest_args": PYTEST_ARGS,
        "command": command, "modules_run": list(modules), "modules_not_run": [m for m in TESTS if m not in modules],
        "modules_finished": [m for m, r in modules.items() if r["finished"]],
        "date": time.strftime("%Y-%m-%d"), "mutants": total, "killed": killed,
        "killed_share": round(killed / total, 4) if total else None,
        "judged_harmless": sum(r["judged_harmless"] for r in modules.values()),
        "note": "mutants = those checked; killed_share counts mutmut's 'killed' and 'killed on recheck' (a survivor re-run in a fresh process on all the module's tests, see recheck()); every other mutant (survived, timeout, ...) is listed per "
                "module with its diff and, where a person judged it harmless, why (JUDGED in scripts/mutants.py)",
        "modules": modules,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{killed}/{total} mutants killed ({report['killed_share']}); written to {args.out}")


if __name__ == "__main__":
    main()
