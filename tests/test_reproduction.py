"""docs/reproduction.md from a synthetic bench/results/paper: one run holding Figure 1's cells and one holding some
of Figure 11's, every other claim "not run at paper scale"; device and GPU-minutes from each run's provenance.json.
Cells gathered across runs (analysis.coverage): per-architecture runs, a run repeating another's seeds, runs of
one replicate each, a replicate short of a planned learning rate; CPU runs in CPU-minutes."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import rundir
from analysis import claims, reproduction
from tests.test_analysis import trials_frame


def paper_run(folder: Path, exp: str, figures: list[str], trials: pd.DataFrame, planned: int, gpu_minutes: list[float]) -> None:
    folder.mkdir(parents=True)
    rundir.write_csv(trials, folder / rundir.TRIALS)
    rundir.write_json({"exp": exp, "preset": "paper", "figures": figures, "trials": planned}, folder / rundir.STUDY)
    rundir.write_json({"device": "1 x H100", "gpu_minutes": sum(gpu_minutes),
                       "launches": [{"gpu_minutes": m} for m in gpu_minutes]}, folder / rundir.PROVENANCE)


def claim_lines(page: Path) -> list[str]:
    """The table's rows, header and rule aside."""
    return [line for line in page.read_text().splitlines() if line.startswith("| ") and not line.startswith("| figure")]


def test_full_partial_and_not_run_rows(tmp_path: Path) -> None:
    root = tmp_path / "paper"
    fig1 = trials_frame(alpha=[0, 100], arch=["perceptron", "mlp1", "conv4"])
    fig1.loc[fig1["arch"] == "perceptron", "test_acc"] = [0.9, 0.4]
    paper_run(root / "uniform_mnist", "uniform_mnist", ["fig1"], fig1, planned=len(fig1), gpu_minutes=[4.5, 3.25])
    fig11 = trials_frame(alpha=[0, 50], batch_size=[32, 128], loss=["ce"])
    fig11.loc[fig11["alpha"] == 50, "test_acc"] = [0.6, 0.7]  # batch 32, then 128: larger is better
    paper_run(root / "batchsize", "batchsize", ["fig11"], fig11, planned=10, gpu_minutes=[6.0])
    (root / "notes").mkdir()  # a folder without study.json is no run
    out = tmp_path / "docs" / "reproduction.md"
    assert reproduction.main([str(root), "--out", str(out)]) == 0

    rows = [line.split(" | ") for line in claim_lines(out)]
    assert [r[1] for r in rows] == [c.claim for c in claims.CLAIMS]  # one row per claim, in the paper's order
    head = out.read_text().split("\n| figure")[0]
    assert '"not run at paper scale": no committed run holds any of its cells yet.' in head and "{" not in head
    by_claim = {r[1]: r for r in rows}
    convnet = by_claim["MNIST: ConvNet > 90% at α = 100"]
    assert convnet[3:] == ["1 of 1", "uniform_mnist: arch=conv4 alpha=100 (1 replicate)", "test_acc", "1 x H100",
                           "7.75 GPU-min", "contradicted |"]
    assert "(95% CI" in convnet[2] and convnet[2].endswith("; selected on test (test_acc: no held-out split, data.n_val=0; "
                                                          "the test set both chose and scored)")
    assert by_claim["MNIST: perceptron ≈ 40% at α = 100 (30–50%)"][-1] == "held |"
    ordered = by_claim[next(c.claim for c in claims.CLAIMS if c.claim.startswith("MNIST: larger"))]
    assert ordered[3] == "3 of 5" and ordered[-1].startswith("partial (3 of 5 cells): ")  # no mlp2, mlp4 yet
    batch = by_claim[next(c.claim for c in claims.CLAIMS if c.claim.startswith("Larger batches"))]
    # α = 50 at batch 32 and 128 of the 5 α > 0 x 4 batch sizes the claim reads
    assert batch[3:] == ["2 of 20", "batchsize: alpha=50 batch_size=32 loss=ce, alpha=50 batch_size=128 loss=ce "
                         "(1 replicate)", "test_acc", "1 x H100", "6 GPU-min", "partial (2 of 20 cells): held |"]
    drew = {"fig1", "fig11"}
    assert all(r[-1] == "not run at paper scale |" and r[2] == "" for r in rows if r[0].strip("| ") not in drew)
    h_alpha = by_claim[next(c.claim for c in claims.CLAIMS if c.claim.startswith("With H_α"))]
    assert h_alpha[3] == "0 of 6" and h_alpha[-1] == "not run at paper scale |"  # fig11 drawn, none of its cells
    assert sum(r[-1] == "not run at paper scale |" for r in rows) == len(claims.CLAIMS) - 4


def ordering_row(root: Path, out: Path) -> list[str]:
    """The page's row for Figure 1's ordering claim (ConvNet > MLPs > perceptron), written from the runs under root."""
    assert reproduction.main([str(root), "--out", str(out)]) == 0
    by_claim = {r[1]: r for r in (line.split(" | ") for line in claim_lines(out))}
    return by_claim[next(c.claim for c in claims.CLAIMS if c.claim.startswith("MNIST: larger"))]


def test_a_partial_claim_with_no_verdict_shows_its_cells_so_far(tmp_path: Path) -> None:
    """The ordering claim needs a ConvNet: with only the perceptron and MLP1 at α = 100 it has no verdict, and the
    page shows each present cell at its chosen LR, with its interval over the replicates, instead of nothing."""
    root = tmp_path / "paper"
    fig1 = trials_frame(alpha=[100], arch=["perceptron", "mlp1"], lr=[0.01, 0.1], seed=[0, 1000])
    fig1["test_acc"] = fig1["arch"].map({"perceptron": 0.38, "mlp1": 0.62}) + 0.02 * (fig1["seed"] > 0) \
        - 0.1 * (fig1["lr"] == 0.1)
    paper_run(root / "uniform_mnist", "uniform_mnist", ["fig1"], fig1, planned=len(fig1), gpu_minutes=[2.0])
    ordered = ordering_row(root, tmp_path / "reproduction.md")
    # per cell: the mean of 2 replicates (x and x + 2 points), t interval ± 12.706 x 1 point
    assert ordered[2] == ("so far, no verdict: arch=perceptron alpha=100: 39.0% (95% CI 26.3 to 51.7%, 2 replicates, "
                          "lr 0.01); arch=mlp1 alpha=100: 63.0% (95% CI 50.3 to 75.7%, 2 replicates, lr 0.01)")
    assert ordered[3] == "2 of 5" and ordered[5] == "test_acc" and ordered[-1] == "partial (2 of 5 cells): no verdict yet |"


def test_no_runs_yet_every_claim_not_run(tmp_path: Path) -> None:
    out = tmp_path / "reproduction.md"
    assert reproduction.main([str(tmp_path / "absent"), "--out", str(out)]) == 0
    verdicts = [line.rsplit(" | ", 1)[1] for line in claim_lines(out)]
    assert verdicts == ["not run at paper scale |"] * len(claims.CLAIMS)


def test_committed_page_is_what_the_command_writes(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "reproduction.md"
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the page names the root as given: the documented relative command
    assert reproduction.main(["bench/results/paper", "--out", str(out)]) == 0
    assert out.read_text() == (repo / "docs" / "reproduction.md").read_text()


def test_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """The command: its help, the default page (docs/reproduction.md under the working directory, parents made),
    sys.argv when no list is given, the summary line, and a root that is a file or a run dir missing its
    trials.csv (one line, exit 2, nothing written)."""
    import sys

    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps to the terminal's width
    with pytest.raises(SystemExit):
        reproduction.main(["--help"])
    help_text = capsys.readouterr().out
    assert help_text.startswith("usage: python -m analysis.reproduction [-h] [--out OUT] root\n")
    assert reproduction.__doc__.splitlines()[0] in help_text
    assert re.search(r"^  root +the folder of committed paper-scale runs, e\.g\. bench/results/paper$", help_text, re.M)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["reproduction.py", "absent"])
    assert reproduction.main() == 0
    assert capsys.readouterr().out == f"docs/reproduction.md: {len(claims.CLAIMS)} claims, 0 from runs under absent\n"
    assert (tmp_path / "docs" / "reproduction.md").is_file()
    assert reproduction.main(["absent", "--out", "made/for/it.md"]) == 0 and (tmp_path / "made/for/it.md").is_file()
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    assert reproduction.main(["file", "--out", "deep/er/page.md"]) == 2
    assert capsys.readouterr().err == "error: file is invalid: it must be a folder of run folders\n"
    (tmp_path / "runs" / "uniform_mnist").mkdir(parents=True)
    rundir.write_json({"exp": "uniform_mnist"}, tmp_path / "runs" / "uniform_mnist" / rundir.STUDY)
    assert reproduction.main(["runs", "--out", "deep/er/page.md"]) == 2
    assert capsys.readouterr().err == "error: runs/uniform_mnist is not a finished study run dir (no trials.csv)\n"
    assert not (tmp_path / "deep").exists()


def test_label_sources_and_minutes_by_hand() -> None:
    from analysis.coverage import Cell, Run

    assert reproduction.label({"alpha": 100.0, "lr": 1e-05, "arch": "conv4", "n": 2}) == "alpha=100 lr=1e-05 arch=conv4 n=2"
    cells = [Cell({"alpha": a}, {"b": 3}) for a in (1, 2, 5)] + [Cell({"alpha": a}, {"a": n}) for a, n in ((10, 3), (20, 1),
                                                                                                            (50, 2))]
    # run a: three cells, 1 to 3 replicates (a range); run b: three cells, named (SHOWN = 3)
    assert reproduction.sources(cells) == ("a: alpha=10, alpha=20, alpha=50 (1–3 replicates); "
                                           "b: alpha=1, alpha=2, alpha=5 (3 replicates)")
    more = cells + [Cell({"alpha": 50}, {"b": 3})]
    assert reproduction.sources(more).endswith("; b: 4 cells (3 replicates)")
    runs = [Run("a", {}, pd.DataFrame(), "cpu", {"CPU": 12.5, "GPU": 0.0}), Run("b", {}, pd.DataFrame(), "gpu",
                                                                               {"CPU": 0.0, "GPU": 3.0})]
    assert reproduction.minutes(runs) == "12.5 CPU-min + 3 GPU-min"
    assert reproduction.minutes(runs[:1]) == "12.5 CPU-min"
    assert reproduction.minutes([Run("z", {}, pd.DataFrame(), "cpu", {"CPU": 0.0, "GPU": 0.0})]) == "0"
    assert reproduction.minutes([*runs, Run("old", {}, pd.DataFrame(), "?", {})]) == "unknown"  # no provenance


@pytest.mark.parametrize("mlp1_val,split", [(None, "test_acc"), (0.7, "val_acc")])
def test_so_far_and_the_split_of_cells_from_runs_with_and_without_a_held_out_split(
        tmp_path: Path, mlp1_val: float | None, split: str) -> None:
    """One replicate per cell: no interval. The perceptron's run held out a validation split; where MLP1's did not,
    both cells are chosen on the test set (on val, MLP1's cell would be dropped though counted present)."""
    root = tmp_path / "paper"
    for arch, acc, val in (("perceptron", 0.38, 0.5), ("mlp1", 0.62, mlp1_val)):
        trials = trials_frame(alpha=[100], arch=[arch], lr=[0.01]).assign(test_acc=acc)
        if val is not None:
            trials["val_acc"] = val
        paper_run(root / f"uniform_mnist_{arch}", "uniform_mnist", ["fig1"], trials, planned=1, gpu_minutes=[2.0])
    ordered = ordering_row(root, tmp_path / "reproduction.md")
    assert ordered[2] == ("so far, no verdict: arch=perceptron alpha=100: 38.0% (1 replicate, lr 0.01); "
                          "arch=mlp1 alpha=100: 62.0% (1 replicate, lr 0.01)")
    assert ordered[3:6] == ["2 of 5", "uniform_mnist_mlp1: arch=mlp1 alpha=100 (1 replicate); uniform_mnist_perceptron: "
                            "arch=perceptron alpha=100 (1 replicate)", split]
