"""Re-create a run's summary and figures from its result files:

    python -m analysis.report <run_dir>
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from analysis import claims, files
from analysis.figures import FIGURES
from analysis.summary import SEARCHED, summarize


def make_report(run_dir: Path) -> pd.DataFrame:
    """Write summary.csv, the study's figures and claims.md/claims.csv into run_dir; return the summary."""
    run_dir = Path(run_dir)
    study = files.read_study(run_dir)
    trials = pd.read_csv(run_dir / files.TRIALS)
    summary = summarize(trials, study.get("searched", SEARCHED))
    files.write_csv(summary, run_dir / files.SUMMARY)
    scale = f"preset={study['preset']}"
    for name in study["figures"]:
        FIGURES[name](summary, trials, run_dir, scale)
    claims.write(claims.evaluate([run_dir]), run_dir)
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m analysis.report <run_dir>", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    missing = [f for f in (files.STUDY, files.TRIALS) if not (run_dir / f).exists()]
    if missing:
        print(f"error: {run_dir} is not a finished study run dir (no {missing[0]})", file=sys.stderr)
        return 2
    make_report(run_dir)
    print(f"results: {run_dir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
