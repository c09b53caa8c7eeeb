"""Re-create a run's summary, figures and claims from its result files:

    python -m analysis.report <run_dir> [--select test|val] [--epoch last|best]

--select picks the split each cell's learning rate is chosen on: test (the paper's rule) or val (the
held-out split of data.n_val > 0). Default: val when the run measured val_acc, else test. summary.csv's
`selected_on` column, every figure's caption and claims.md say which. --epoch best scores each trial
at its epoch of best accuracy on that split (early stopping) instead of its last epoch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

import rundir
from analysis import claims
from analysis.describe import Run
from analysis.figures import FIGURES
from analysis.summary import EPOCHS, missing, read_run


def make_report(run_dir: Path, select: str | None = None, epoch: str = "last") -> pd.DataFrame:
    """Write summary.csv, the study's figures and claims.md/claims.csv into run_dir; return the summary."""
    run_dir = Path(run_dir)
    study, trials, summary = read_run(run_dir, select, epoch)
    rundir.write_csv(summary, run_dir / rundir.SUMMARY)
    run = Run.of(study)
    for name in study["figures"]:
        FIGURES[name](summary, trials, run_dir, run)
    claims.write(claims.evaluate_runs([(run_dir, study, trials, summary)]), run_dir)
    print(brief(summary))
    return summary


def brief(summary: pd.DataFrame) -> str:
    """The summary as a reader scans it: the keys that vary, then accuracies in % (with the 95% interval where
    replicates give one, top-5 where it was measured), under a line naming the selection rule."""
    if summary.empty:
        return "summary: no trial finished"
    metrics = ["test_acc", "test_acc_ci_low", "test_acc_ci_high", "val_acc", "test_top5"]
    keys = [c for c in summary.columns[:list(summary.columns).index("test_acc")] if summary[c].notna().any()]
    keys = [c for c in keys if summary[c].nunique() > 1] or keys  # the keys that vary; all, for one row
    shown = summary[keys + [m for m in metrics if m in summary and summary[m].notna().any()]]
    percent = {m: lambda x: f"{100 * x:.1f}%" for m in metrics}
    rule = ", ".join(sorted(summary["selected_on"].dropna().unique()))
    reps = summary["replicates"]
    head = f"summary (learning rate chosen on {rule}; replicates: {reps.min()}{'' if reps.min() == reps.max() else f'–{reps.max()}'})"
    return head + "\n" + shown.to_string(index=False, formatters=percent, na_rep="")  # pandas formats no NaN


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--select", choices=("test", "val"), default=None,
                        help="the split the LR is chosen on (default: val when the run has val_acc, else test)")
    parser.add_argument("--epoch", choices=EPOCHS, default="last",
                        help="score each trial at its last epoch (the paper's rule) or at its best on the selection split")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if error := missing(args.run_dir):
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        make_report(args.run_dir, args.select, args.epoch)
    except ValueError as error:  # --select val on a run without a validation split
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"results: {args.run_dir.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
