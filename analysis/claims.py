"""The paper's quantified claims against what a study measured: claims.md and claims.csv.

    python -m analysis.claims <run_dir> [<run_dir> ...] [--out DIR]

Each claim reads the summary (best LR per cell) or trials of the run that holds its figure, estimates its
effect with a 95% interval over the replicates (analysis.intervals) and says:
- held: the interval lies inside the claim's band;
- contradicted: the interval lies wholly outside it (or the claim's premise is contradicted);
- inconclusive: the interval straddles a band edge (with one replicate: the value lies within the noise
  floor of an edge), or the data only bound the value (a censored critical count);
- not run: no given run measured it.
A claim made of parts (every cell's drop within the band; two gaps in order) is held when every part is,
contradicted when one part is. Each measured text gives its interval and what it rests on, and the table
says which split chose the learning rates.
"""

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

import rundir
from analysis.bands import Band, Claim
from analysis.clean_counts import superlinear, threshold
from analysis.effects import CONVNETS, RESNETS, architectures_ordered, batch_slope, cifar100_half_drop, h_alpha_flat, \
    kind_gap, level, novel_like_repeated, structured_like_uniform, white_no_drop
from analysis.intervals import NOISE_FLOOR
from analysis.lr_trend import optimal_lr_falls
from analysis.summary import missing, read_run

CLAIMS = [
    Claim("fig1", "MNIST: ConvNet {} at α = 100", level(CONVNETS, 100), Band(0.9, unit="%", strict=True)),
    Claim("fig1", "MNIST: perceptron ≈ 40% at α = 100 ({})", level(["perceptron"], 100), Band(0.3, 0.5, "%")),
    Claim("fig1", "MNIST: larger architectures are more robust (at the largest α, ConvNet − MLP and MLP − perceptron "
                  "each {})", architectures_ordered, Band(0, unit="points", strict=True)),
    Claim("fig2", "CIFAR-10: ResNet {} at α = 10", level(RESNETS, 10), Band(0.85, unit="%")),
    Claim("fig3", "ImageNet: ResNet-18 {} top-5 at α = 5", level(["resnet18"], 5, "test_top5"), Band(0.7, unit="%")),
    Claim("fig5", "Structured noise performs like uniform noise except δ ≈ 1 (every drop from δ = 0 {} for δ < 0.9)",
          structured_like_uniform, Band(high=0.05, unit="points")),
    Claim("fig6", "CIFAR-100 noise costs about half the drop of CIFAR-10 noise (ratio {})", cifar100_half_drop, Band(0.25, 0.75)),
    Claim("fig6", "White-noise examples do not appreciably lower accuracy (drop {})", white_no_drop, Band(high=0.03, unit="points")),
    Claim("fig7", "Novel vs repeated noisy images: essentially no difference (repeated − novel {} at every α)", novel_like_repeated,
          Band(-0.02, 0.02, unit="points")),
    threshold(10, 2_000),
    threshold(50, 10_000),
    Claim("fig9", "Clean labels needed grow slightly faster than linearly in α (exponent's 95% interval "
                  "reaching 1, lower end ≥ {0.low:g}, upper end ≤ {0.high:g})", superlinear, Band(0.85, 1.5)),
    Claim("fig11", "Larger batches are more robust to noise (accuracy's slope on log2 batch size, pooled over α > 0: {} "
                   "per doubling)",
          batch_slope, Band(0, unit="points", strict=True)),
    Claim("fig11", "With H_α (infinite batch) accuracy does not fall as α rises (fall from α = 0 {} at every α)",
          h_alpha_flat, Band(high=0.03, unit="points")),
    Claim("fig12", "The optimal learning rate falls as noise rises (its log10's fitted change across the α range {}; "
                   "the clean optimum the grid's largest, as the paper's 1)", optimal_lr_falls, Band(high=0, unit="decades", strict=True)),
    Claim("human", "Beyond the paper (CIFAR-10N): at equal α, the annotators' own labels hurt more than labels drawn "
                   "from their class-conditional matrix, both one label per image kept by all its copies "
                   "(tied matrix − per-image accuracy {})",
          kind_gap("matrix tied", "labels tied", ("tied matrix", "per-image labels")),
          Band(0, unit="points", strict=True)),
    Claim("human", "Beyond the paper (CIFAR-10N): repeating an image's one matrix-drawn label on all its copies hurts "
                   "more than drawing each copy's afresh (fresh − tied accuracy {})",
          kind_gap("matrix", "matrix tied", ("fresh matrix", "tied matrix")), Band(0, unit="points", strict=True)),
]


HELD, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "held", "contradicted", "inconclusive", "not run"
VERDICTS = (HELD, CONTRADICTED, INCONCLUSIVE, NOT_RUN)


def verdict(held: bool | None) -> str:
    """The verdict word of a measured claim: held, contradicted, or inconclusive (see the module's
    docstring). "not run" is for no data."""
    return INCONCLUSIVE if held is None else HELD if held else CONTRADICTED


SPLITS = {"val_acc": "val (val_acc, the held-out split)",
          "test_acc": "test (test_acc: no held-out split, data.n_val=0; the test set both chose and scored)"}


def splits(summary: pd.DataFrame) -> list[str]:
    """The `selected_on` values of a summary: the metric each cell's learning rate was chosen on."""
    return sorted(summary["selected_on"].dropna().unique()) if "selected_on" in summary else []


def selected_on(chosen: list[str]) -> str:
    """The selection split in words, for the measured text: 'selected on test' where none was held out."""
    return ", ".join("selected on " + SPLITS.get(c.split()[0], c.split()[0]) + c[len(c.split()[0]):] for c in chosen)


def evaluate(run_dirs: list[Path], select: str | None = None) -> pd.DataFrame:
    """One row per claim, measured in the latest given run whose study drew its figure (each run's LR
    chosen on `select`, by default val where the run has a held-out split, else test)."""
    return evaluate_runs([(Path(run_dir), *read_run(run_dir, select)) for run_dir in run_dirs])


def evaluate_runs(runs: list[tuple[Path, dict, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """evaluate() over runs already read: (run_dir, study, trials, summary) each. The measured text ends
    with the selection split."""
    rows = []
    for claim in CLAIMS:
        row = {"figure": claim.figure, "claim": claim.claim, "measured": "", "scale": "", "run": "", "selected_on": "",
               "verdict": NOT_RUN, "figure_file": ""}
        for run_dir, study, trials, summary in runs:
            result = claim.check(summary, trials, claim.tolerance) if claim.figure in study["figures"] else None
            if result is not None:
                chosen = splits(summary)
                row.update(measured=f"{result[0]}; {selected_on(chosen)}", scale=f"exp={study['exp']} preset={study['preset']}",
                           run=run_dir.name, selected_on=", ".join(chosen), verdict=verdict(result[1]),
                           figure_file=str(Path(run_dir).resolve() / f"{claim.figure}.png"))
        rows.append(row)
    return pd.DataFrame(rows)


def link(row: object, out: Path) -> str:
    """The figure cell of claims.md: a link to the figure file, relative to claims.md, where it was measured."""
    if not row.figure_file:
        return row.figure
    return f"[{row.figure}]({os.path.relpath(row.figure_file, Path(out).resolve())})"


RULE = ("Verdicts: held (the effect's 95% interval lies inside the claim's band); contradicted (wholly "
        "outside it, or the claim's premise fails); inconclusive (it straddles a band edge, or censored data only "
        f"bound the value); not run (no data). With one replicate each accuracy counts as ± {100 * NOISE_FLOOR:g} "
        "points (the noise floor). `selected on`: the split each cell's learning rate was chosen on: val_acc, the "
        "held-out split, or test_acc (`data.n_val=0`, the paper's rule: the test set both chooses and scores, "
        "so its verdicts are optimistic).")


def write(claims: pd.DataFrame, out: Path) -> None:
    rundir.write_csv(claims, out / "claims.csv")
    header = ("| figure | claim | measured | scale | selected on | verdict |\n|---|---|---|---|---|---|\n")
    body = "".join(f"| {link(r, out)} | {r.claim} | {r.measured} | {r.scale} | {r.selected_on} | {r.verdict} |\n"
                   for r in claims.itertuples())
    with rundir.atomic_path(out / "claims.md") as tmp:
        tmp.write_text("# The paper's claims against this study\n\n" + RULE + "\n\n" + header + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.claims", description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("."), help="where claims.md and claims.csv go")
    parser.add_argument("--select", choices=("test", "val"), default=None,
                        help="the split the LR is chosen on (default: val where a run has val_acc, else test)")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        if error := missing(run_dir):
            print(f"error: {error}", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        claims = evaluate(args.run_dirs, args.select)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write(claims, args.out)
    print(claims[["figure", "claim", "measured", "verdict"]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
