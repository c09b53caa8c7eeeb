"""analysis/claims.py by its rules, on small hand-built inputs: the verdict words, the selection split in words,
each field of a claims-table row (measured, not run, the latest run that measured it), the figure links and
the exact claims.md, and the command (its --help text, --out with missing parents, --select, its errors and
what it prints). Stub claims (monkeypatched CLAIMS) pin what evaluate_runs passes to each check and takes
back; the end-to-end tests read real run dirs written with rundir's own writers."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import rundir
from analysis import claims
from analysis.bands import Band, Claim

TEST_WORDS = "selected on test (test_acc: no held-out split, data.n_val=0; the test set both chose and scored)"
VAL_WORDS = "selected on val (val_acc, the held-out split)"
COLUMNS = ["figure", "claim", "measured", "scale", "run", "selected_on", "verdict", "figure_file"]


# --- small run dirs, written with rundir's writers -------------------------------------------------------------

def trials(rows: list[dict]) -> pd.DataFrame:
    """A trials.csv-shaped frame: each row gives alpha, arch, lr and `acc` (its replicates' test accuracies),
    optionally `val` (their val accuracies); one trial per replicate, seeds 0, 1, ..."""
    out = []
    for row in rows:
        accs, vals = row["acc"], row.get("val", [np.nan] * len(row["acc"]))
        for r, (acc, val) in enumerate(zip(accs, vals)):
            out.append({"alpha": row["alpha"], "arch": row["arch"], "lr": row.get("lr", 0.1), "batch_size": 128,
                        "seed": r, "noise_seed": r, "trial_id": len(out), "group": len(out), "status": "ok",
                        "epochs": 1, "test_acc": acc, "best_test_acc": acc, "test_top5": min(1.0, acc + 0.05),
                        "best_test_top5": min(1.0, acc + 0.05), "train_loss": 1.0, "images_per_s": 1.0,
                        "node_id": "n", "val_acc": val, "best_val_acc": val})
    return pd.DataFrame(out)


def write_run(run_dir: Path, rows: list[dict], figures: list[str], exp: str = "uniform_mnist",
              preset: str = "paper") -> Path:
    run_dir.mkdir(parents=True)
    rundir.write_csv(trials(rows), run_dir / rundir.TRIALS)
    rundir.write_json({"exp": exp, "preset": preset, "figures": figures}, run_dir / rundir.STUDY)
    return run_dir


# α = 100: conv4 94/95/96%, mlp1 79/80/81%, perceptron 39/40/41% (each replicate's std 1 point)
FIG1 = [{"alpha": 100, "arch": "conv4", "acc": [0.94, 0.95, 0.96]},
        {"alpha": 100, "arch": "mlp1", "acc": [0.79, 0.80, 0.81]},
        {"alpha": 100, "arch": "perceptron", "acc": [0.39, 0.40, 0.41]}]
# two learning rates of conv4 at α = 100: lr 0.1 is the better on test, lr 0.01 the better on val
FIG1_VAL = [{"alpha": 100, "arch": "conv4", "lr": 0.1, "acc": [0.94, 0.95, 0.96], "val": [0.49, 0.50, 0.51]},
            {"alpha": 100, "arch": "conv4", "lr": 0.01, "acc": [0.84, 0.85, 0.86], "val": [0.89, 0.90, 0.91]}]

CONV = "MNIST: ConvNet > 90% at α = 100"
PERCEPTRON = "MNIST: perceptron ≈ 40% at α = 100 (30–50%)"
ORDERED = ("MNIST: larger architectures are more robust (at the largest α, ConvNet − MLP and MLP − perceptron each "
           "> 0 points)")
CONV_TEST = "conv4: 95.0% (95% CI 92.5 to 97.5%, 3 replicates)"  # half-width t(2) · 1 point / √3 = 2.48 points
CONV_VAL = "conv4: 85.0% (95% CI 82.5 to 87.5%, 3 replicates)"


def row_of(table: pd.DataFrame, claim: str) -> dict:
    (row,) = table[table["claim"] == claim].to_dict("records")
    return row


# --- verdict, splits, selected_on, link -------------------------------------------------------------------------

def test_verdict_words() -> None:
    assert [claims.verdict(h) for h in (True, False, None)] == ["held", "contradicted", "inconclusive"]
    assert claims.VERDICTS == ("held", "contradicted", "inconclusive", "not run")


def test_splits_are_the_sorted_distinct_selection_metrics() -> None:
    summary = pd.DataFrame({"selected_on": ["val_acc", np.nan, "test_acc", "val_acc"], "test_acc": [0.1] * 4})
    assert claims.splits(summary) == ["test_acc", "val_acc"]
    assert claims.splits(pd.DataFrame({"selected_on": ["test_acc"]})) == ["test_acc"]
    assert claims.splits(pd.DataFrame({"test_acc": [0.5]})) == []  # a summary from before selected_on
    assert claims.splits(pd.DataFrame()) == []


def test_selected_on_in_words() -> None:
    assert claims.selected_on([]) == ""
    assert claims.selected_on(["test_acc"]) == TEST_WORDS
    assert claims.selected_on(["val_acc"]) == VAL_WORDS
    assert claims.selected_on(["test_acc", "val_acc"]) == f"{TEST_WORDS}, {VAL_WORDS}"
    # epoch=best: the words of the metric, then the rest as it is
    assert claims.selected_on(["val_acc at its best epoch"]) == f"{VAL_WORDS} at its best epoch"
    assert claims.selected_on(["test_acc at its best epoch"]) == f"{TEST_WORDS} at its best epoch"
    # a metric it has no words for is named as it is
    assert claims.selected_on(["loss"]) == "selected on loss"
    assert claims.selected_on(["top5 at its best epoch"]) == "selected on top5 at its best epoch"


def test_link_is_relative_to_claims_md_not_the_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "elsewhere" / "deeper")
    row = SimpleNamespace(figure="fig1", figure_file=str(tmp_path / "runs" / "a" / "fig1.png"))
    assert claims.link(row, tmp_path / "out") == "[fig1](../runs/a/fig1.png)"
    assert claims.link(row, tmp_path / "runs" / "a") == "[fig1](fig1.png)"
    assert claims.link(row, tmp_path) == "[fig1](runs/a/fig1.png)"
    assert claims.link(SimpleNamespace(figure="fig2", figure_file=""), tmp_path / "out") == "fig2"  # not measured


# --- evaluate_runs on stub claims -------------------------------------------------------------------------------

class Recorder:
    """A claim's check that records its arguments and answers per summary (by identity): a result or None."""

    def __init__(self, answers: dict[int, tuple[str, bool | None] | None]) -> None:
        self.answers, self.calls = answers, []

    def __call__(self, summary: pd.DataFrame, trials: pd.DataFrame, band: Band | None):
        self.calls.append((summary, trials, band))
        return self.answers.get(id(summary))


def frames(selected_on: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = pd.DataFrame({"alpha": [0.0] * len(selected_on), "test_acc": [0.5] * len(selected_on),
                            "selected_on": selected_on})
    return pd.DataFrame({"alpha": [0.0], "test_acc": [0.5]}), summary


def test_a_not_run_row_has_every_field_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    check = Recorder({})
    band = Band(0, unit="points", strict=True)
    monkeypatch.setattr(claims, "CLAIMS", [Claim("figA", "A gap {}", check, band)])
    t, s = frames(["test_acc"])
    table = claims.evaluate_runs([(Path("r"), {"exp": "e", "preset": "p", "figures": ["figB"]}, t, s)])
    assert check.calls == []  # the run did not draw figA: its check is not asked
    assert list(table.columns) == COLUMNS
    assert table.to_dict("records") == [{"figure": "figA", "claim": "A gap > 0 points", "measured": "", "scale": "",
                                         "run": "", "selected_on": "", "verdict": "not run", "figure_file": ""}]
    # no run at all: the same row
    assert claims.evaluate_runs([]).to_dict("records") == table.to_dict("records")


def test_a_measured_row_names_its_run_scale_split_and_figure_file(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    t, s = frames(["val_acc", "test_acc", np.nan, "val_acc"])
    check = Recorder({id(s): ("gap +1.0 points", True)})
    band = Band(0.25, 0.75)
    monkeypatch.setattr(claims, "CLAIMS", [Claim("figA", "A ratio {}", check, band)])
    study = {"exp": "uniform_cifar10", "preset": "smoke", "figures": ["fig1", "figA"]}
    table = claims.evaluate_runs([(Path("runs/b"), study, t, s)])
    (summary, trials_, tolerance), = check.calls
    assert summary is s and trials_ is t and tolerance is band  # the check gets (summary, trials, the claim's band)
    assert table.to_dict("records") == [{
        "figure": "figA", "claim": "A ratio 0.25–0.75",
        "measured": f"gap +1.0 points; {TEST_WORDS}, {VAL_WORDS}",
        "scale": "exp=uniform_cifar10 preset=smoke", "run": "b", "selected_on": "test_acc, val_acc",
        "verdict": "held", "figure_file": str(tmp_path.resolve() / "runs" / "b" / "figA.png")}]


def test_the_latest_run_that_measured_a_claim_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t1, s1 = frames(["test_acc"])
    t2, s2 = frames(["val_acc"])
    a = Recorder({id(s1): ("a1", True), id(s2): ("a2", False)})  # both runs measure it: the later one's
    b = Recorder({id(s1): ("b1", False), id(s2): None})  # the later run drew figB but could not measure it
    c = Recorder({id(s1): ("c1", True), id(s2): ("c2", None)})  # the later run did not draw figC
    monkeypatch.setattr(claims, "CLAIMS", [Claim("figA", "A", a), Claim("figB", "B", b), Claim("figC", "C", c)])
    runs = [(tmp_path / "one", {"exp": "e1", "preset": "p1", "figures": ["figA", "figB", "figC"]}, t1, s1),
            (tmp_path / "two", {"exp": "e2", "preset": "p2", "figures": ["figA", "figB"]}, t2, s2)]
    table = claims.evaluate_runs(runs).set_index("figure")
    assert [len(x.calls) for x in (a, b, c)] == [2, 2, 1]
    assert all(tol is None for x in (a, b, c) for _, _, tol in x.calls)  # a claim without a band gets None
    assert table.loc["figA"].to_dict() == {"claim": "A", "measured": f"a2; {VAL_WORDS}", "scale": "exp=e2 preset=p2",
                                           "run": "two", "selected_on": "val_acc", "verdict": "contradicted",
                                           "figure_file": str(tmp_path.resolve() / "two" / "figA.png")}
    assert table.loc["figB"].to_dict() == {"claim": "B", "measured": f"b1; {TEST_WORDS}", "scale": "exp=e1 preset=p1",
                                           "run": "one", "selected_on": "test_acc", "verdict": "contradicted",
                                           "figure_file": str(tmp_path.resolve() / "one" / "figB.png")}
    assert table.loc["figC", ["measured", "run", "verdict"]].tolist() == [f"c1; {TEST_WORDS}", "one", "held"]


def test_an_inconclusive_result_is_not_a_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    t, s = frames(["test_acc"])
    monkeypatch.setattr(claims, "CLAIMS", [Claim("figA", "A", Recorder({id(s): ("straddles", None)}))])
    row, = claims.evaluate_runs([(Path("x"), {"exp": "e", "preset": "p", "figures": ["figA"]}, t, s)]).to_dict("records")
    assert (row["measured"], row["verdict"], row["run"]) == (f"straddles; {TEST_WORDS}", "inconclusive", "x")


# --- evaluate on real run dirs: the measured texts --------------------------------------------------------------

def test_evaluate_reads_each_run_dir_and_its_selection(tmp_path: Path) -> None:
    run = write_run(tmp_path / "fig1run", FIG1, ["fig1"])
    table = claims.evaluate([str(run)])  # a str run dir: the row names its folder
    assert list(table.columns) == COLUMNS and len(table) == len(claims.CLAIMS)
    conv = row_of(table, CONV)
    assert conv == {"figure": "fig1", "claim": CONV, "measured": f"{CONV_TEST}; {TEST_WORDS}",
                    "scale": "exp=uniform_mnist preset=paper", "run": "fig1run", "selected_on": "test_acc",
                    "verdict": "held", "figure_file": str(run.resolve() / "fig1.png")}
    perceptron = row_of(table, PERCEPTRON)
    assert (perceptron["measured"], perceptron["verdict"]) == (
        f"perceptron: 40.0% (95% CI 37.5 to 42.5%, 3 replicates); {TEST_WORDS}", "held")
    assert (table[table["figure"] != "fig1"]["verdict"] == "not run").all()

    val = write_run(tmp_path / "valrun", FIG1_VAL, ["fig1"])
    chosen = {select: row_of(claims.evaluate([val], select), CONV) for select in (None, "val", "test")}
    assert chosen[None] == chosen["val"]  # by default: val, where the run has val_acc
    assert (chosen["val"]["measured"], chosen["val"]["selected_on"], chosen["val"]["verdict"]) == (
        f"{CONV_VAL}; {VAL_WORDS}", "val_acc", "contradicted")
    assert (chosen["test"]["measured"], chosen["test"]["selected_on"], chosen["test"]["verdict"]) == (
        f"{CONV_TEST}; {TEST_WORDS}", "test_acc", "held")


@pytest.mark.parametrize("best", ["conv2", "conv4", "conv6"])
def test_the_convnet_claim_takes_the_best_convnet_only(tmp_path: Path, best: str) -> None:
    rows = [{"alpha": 100, "arch": arch, "acc": [0.94, 0.95, 0.96] if arch == best else [0.80, 0.81, 0.82]}
            for arch in ("conv2", "conv4", "conv6")]
    rows.append({"alpha": 100, "arch": "mlp4", "acc": [0.98, 0.99, 1.0]})  # better, but no ConvNet
    rows.append({"alpha": 50, "arch": "conv2", "acc": [0.98, 0.99, 1.0]})  # better, but at another α
    table = claims.evaluate([write_run(tmp_path / "run", rows, ["fig1"])])
    assert row_of(table, CONV)["measured"] == f"{best}: 95.0% (95% CI 92.5 to 97.5%, 3 replicates); {TEST_WORDS}"


@pytest.mark.parametrize("best", ["mlp1", "mlp2", "mlp4"])
def test_the_order_claim_takes_each_family_best_at_the_largest_alpha(tmp_path: Path, best: str) -> None:
    rows = [{"alpha": 100, "arch": "conv6", "acc": [0.94, 0.95, 0.96]},
            {"alpha": 100, "arch": "perceptron", "acc": [0.39, 0.40, 0.41]},
            *({"alpha": 100, "arch": arch, "acc": [0.79, 0.80, 0.81] if arch == best else [0.69, 0.70, 0.71]}
              for arch in ("mlp1", "mlp2", "mlp4")),
            {"alpha": 10, "arch": "mlp1", "acc": [0.97, 0.98, 0.99]}]
    row = row_of(claims.evaluate([write_run(tmp_path / "run", rows, ["fig1"])]), ORDERED)
    assert row["measured"].startswith(f"α=100: conv6 95.0%, {best} 80.0%, perceptron 40.0%; ConvNet − MLP +15.0 points ")
    assert row["verdict"] == "held"


# --- write: claims.csv and claims.md ----------------------------------------------------------------------------

def test_write_gives_the_exact_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    out = tmp_path / "out"
    out.mkdir()
    table = pd.DataFrame([
        {"figure": "fig1", "claim": "c one", "measured": "m one", "scale": "exp=a preset=b", "run": "r",
         "selected_on": "test_acc", "verdict": "held", "figure_file": str(tmp_path / "r" / "fig1.png")},
        {"figure": "fig2", "claim": "c two", "measured": "", "scale": "", "run": "", "selected_on": "",
         "verdict": "not run", "figure_file": ""}], columns=COLUMNS)
    claims.write(table, out)
    assert sorted(os.listdir(out)) == ["claims.csv", "claims.md"]  # no temp file left beside them
    pd.testing.assert_frame_equal(pd.read_csv(out / "claims.csv", keep_default_na=False), table)
    assert (out / "claims.md").read_text() == (
        "# The paper's claims against this study\n\n" + claims.RULE + "\n\n"
        "| figure | claim | measured | scale | selected on | verdict |\n|---|---|---|---|---|---|\n"
        "| [fig1](../r/fig1.png) | c one | m one | exp=a preset=b | test_acc | held |\n"
        "| fig2 | c two |  |  |  | not run |\n")
    assert claims.RULE.startswith("Verdicts: held (the effect's 95% interval lies inside the claim's band); ")
    assert "With one replicate each accuracy counts as ± 2 points (the noise floor)." in claims.RULE


# --- the command --------------------------------------------------------------------------------------------

def test_help_shows_the_usage_description_and_each_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        claims.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal's width
    assert text.startswith("usage: python -m analysis.claims [-h] [--out OUT] [--select {test,val}] "
                           "run_dirs [run_dirs ...] "
                           "The paper's quantified claims against what a study measured: claims.md and claims.csv. "
                           "positional arguments: run_dirs ")
    assert "--out OUT where claims.md and claims.csv go" in text
    assert ("--select {test,val} the split the LR is chosen on (default: val where a run has val_acc, else test)"
            in text)


def test_out_is_made_with_its_parents_and_may_exist(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "run", FIG1, ["fig1"])
    out = tmp_path / "not" / "yet" / "there"
    assert claims.main([str(run), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["claims.csv", "claims.md"]
    assert claims.main([str(run), "--out", str(out)]) == 0  # again, into the folder it made
    assert claims.main([str(run), "--out", str(tmp_path)]) == 0  # an existing folder
    assert (tmp_path / "claims.csv").read_text() == (out / "claims.csv").read_text()
    capsys.readouterr()


def test_out_defaults_to_the_working_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "runs" / "run", FIG1, ["fig1"])
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert claims.main([str(run)]) == 0
    assert sorted(os.listdir(tmp_path / "here")) == ["claims.csv", "claims.md"]
    assert "| [fig1](../runs/run/fig1.png) | MNIST: ConvNet > 90% at α = 100 |" in (tmp_path / "here" / "claims.md").read_text()
    capsys.readouterr()


def test_the_command_prints_the_table_without_an_index(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "run", FIG1, ["fig1"])
    capsys.readouterr()
    assert claims.main([str(run), str(run), "--out", str(tmp_path / "out")]) == 0  # several run dirs
    printed, err = capsys.readouterr()
    assert err == ""
    table = pd.read_csv(tmp_path / "out" / "claims.csv", keep_default_na=False)
    assert printed == table[["figure", "claim", "measured", "verdict"]].to_string(index=False) + "\n"
    lines = printed.splitlines()
    assert lines[0].split() == ["figure", "claim", "measured", "verdict"] and len(lines) == 1 + len(claims.CLAIMS)
    assert lines[1].split()[:3] == ["fig1", "MNIST:", "ConvNet"] and lines[1].endswith("held")
    assert f"{CONV_TEST}; {TEST_WORDS}" in lines[1]


@pytest.mark.parametrize("select,measured,selected_on", [
    (None, f"{CONV_VAL}; {VAL_WORDS}", "val_acc"),
    ("val", f"{CONV_VAL}; {VAL_WORDS}", "val_acc"),
    ("test", f"{CONV_TEST}; {TEST_WORDS}", "test_acc")], ids=["default", "val", "test"])
def test_select_chooses_the_split(tmp_path: Path, capsys: pytest.CaptureFixture, select: str | None, measured: str,
                                  selected_on: str) -> None:
    run = write_run(tmp_path / "run", FIG1_VAL, ["fig1"])
    argv = [str(run), "--out", str(tmp_path / "out"), *(["--select", select] if select else [])]
    assert claims.main(argv) == 0
    row = row_of(pd.read_csv(tmp_path / "out" / "claims.csv", keep_default_na=False), CONV)
    assert (row["measured"], row["selected_on"]) == (measured, selected_on)
    assert measured in capsys.readouterr().out


@pytest.mark.parametrize("select", ["TEST", "Val", "train"])
def test_select_takes_only_test_or_val(tmp_path: Path, capsys: pytest.CaptureFixture, select: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        claims.main([str(tmp_path), "--select", select])
    assert exit_.value.code == 2
    assert f"argument --select: invalid choice: '{select}' (choose from " in capsys.readouterr().err


def test_a_missing_run_dir_is_one_error_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "run", FIG1, ["fig1"])
    out = tmp_path / "out"
    # the run dir as a Path: the error names it without the trailing slash it was given with
    assert claims.main([str(run), f"{tmp_path / 'absent'}/", "--out", str(out)]) == 2
    printed, err = capsys.readouterr()
    assert (printed, err) == ("", f"error: {tmp_path / 'absent'} is not a finished study run dir (no study.json)\n")
    assert not out.exists()  # checked before anything is made or written
    (tmp_path / "half").mkdir()
    rundir.write_json({"exp": "e", "preset": "p", "figures": []}, tmp_path / "half" / rundir.STUDY)
    assert claims.main([str(tmp_path / "half"), "--out", str(out)]) == 2
    assert capsys.readouterr() == ("", f"error: {tmp_path / 'half'} is not a finished study run dir (no trials.csv)\n")


def test_val_selection_without_val_acc_is_one_error_line_and_exit_2(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    run = write_run(tmp_path / "run", FIG1, ["fig1"])  # no val_acc measured
    assert claims.main([str(run), "--out", str(tmp_path / "out"), "--select", "val"]) == 2
    assert capsys.readouterr() == ("", "error: select=val needs val_acc in trials.csv, and this run measured none "
                                       "(it ran with data.n_val=0): use select=test\n")
    assert os.listdir(tmp_path / "out") == []  # the folder is made, nothing written into it
