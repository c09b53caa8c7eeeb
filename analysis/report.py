"""Re-create a run's summary and figures from its result files:

    python -m analysis.report <run_dir>
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import rundir
from analysis import claims
from analysis.figures import FIGURES
from analysis.summary import missing, read_run


def make_report(run_dir: Path) -> pd.DataFrame:
    """Write summary.csv, the study's figures and claims.md/claims.csv into run_dir; return the summary."""
    run_dir = Path(run_dir)
    study, trials, summary = read_run(run_dir)
    rundir.write_csv(summary, run_dir / rundir.SUMMARY)
    scale = f"preset={study['preset']}"
    for name in study["figures"]:
        FIGURES[name](summary, trials, run_dir, scale)
    claims.write(claims.evaluate_runs([(run_dir, study, trials, summary)]), run_dir)
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m analysis.report <run_dir>", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    if error := missing(run_dir):
        print(f"error: {error}", file=sys.stderr)
        return 2
    make_report(run_dir)
    print(f"results: {run_dir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
