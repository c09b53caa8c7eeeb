"""Held-out validation (data.n_val): the split, val_acc per member and epoch, the run-dir columns, and model
selection on it (analysis --select val|test), with the rule named in summary.csv, the captions and claims.md."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import rundir
from analysis import claims, report
from analysis.describe import Run
from analysis.figures import FIGURES
from analysis.summary import summarize
from errors import UsageError
from loaders import data as loaders_data, datasets
from loaders.data import clean_and_val, table_rows
from loaders.noise import NoiseSpec
from study import config
from study.trial import Trial
from tests.conftest import trial_config
from tests.test_replicates import replicate_rows


def test_val_split_is_carved_out_before_n_clean_stratified_seeded_and_disjoint() -> None:
    labels = torch.arange(6000) % 10
    data = {"n_clean": 1000, "subset_seed": 3}
    clean0, none = clean_and_val(labels, {**data, "n_val": 0})
    assert none is None and torch.equal(clean0, datasets.stratified_subset(labels, 1000, 3))  # n_val=0: as before
    clean, val = clean_and_val(labels, {**data, "n_val": 500})
    assert len(clean) == 1000 and len(val) == 500 and not set(clean.tolist()) & set(val.tolist())
    assert torch.bincount(labels[val]).tolist() == [50] * 10  # stratified
    again_clean, again_val = clean_and_val(labels, {**data, "n_val": 500})
    assert torch.equal(again_val, val) and torch.equal(again_clean, clean)  # seeded
    _, val_other_n = clean_and_val(labels, {**data, "n_clean": 3000, "n_val": 500})
    assert torch.equal(val_other_n, val)  # one validation split for every n_clean of a study
    everything, val_all = clean_and_val(labels, {"n_clean": None, "subset_seed": 3, "n_val": 500})
    assert len(everything) == 5500 and not set(everything.tolist()) & set(val_all.tolist())


def test_config_declares_n_val() -> None:
    config.check_value("data.n_val", 0)
    config.check_value("data.n_val", 500)
    with pytest.raises(Exception, match="data.n_val"):
        config.check_value("data.n_val", -1)


def test_every_member_reports_val_acc_each_epoch(data_root: Path) -> None:
    torch.set_num_threads(2)
    configs = []
    for lr, seed in ((0.5, 0), (0.1, 1)):
        config = trial_config(data_root, model={"arch": "mlp1"}, noise={"alpha": 1.0},
                              data={"n_clean": 300, "n_test": 300, "n_val": 200}, train={"epochs": 2, "lr": lr, "seed": seed})
        configs.append(config)
    trial = Trial(configs)
    reports = []
    trial.run(lambda rs: reports.append(rs))
    assert [len(r) for r in reports] == [2, 2]
    assert all(0 < r.val_acc <= 1 for epoch in reports for r in epoch)
    assert sum(len(y) for _, y in trial.data.val_batches()) == 200
    plain = Trial(trial_config(data_root, model={"arch": "mlp1"}, data={"n_clean": 300, "n_test": 300}, train={"epochs": 1}))
    assert plain.data.val_batches is None
    assert math.isnan(plain.run(lambda rs: None)[0].val_acc)


def result(members: int, val: bool) -> SimpleNamespace:
    """A ray.tune.Result-shaped object for rundir.collect."""
    history = {"epoch": [1, 2], "node_id": ["n", "n"], "trial_id": ["g", "g"]}
    for k in range(members):
        history.update({f"members/{k}/epoch": [1, 2], f"members/{k}/train_loss": [1.0, 0.5], f"members/{k}/test_acc": [0.5, 0.6],
                        f"members/{k}/test_top5": [0.9, 0.95], f"members/{k}/images_per_s": [10.0, 10.0]})
        if val:
            history[f"members/{k}/val_acc"] = [0.7, 0.65]
    config = {"data": {"order_seed": 0, "subset_seed": 0}, "noise": {"alpha": 0, "seed": 0}, "model": {"arch": "mlp1"}, "train": {"lr": 0.1, "batch_size": 128, "seed": 0}}
    return SimpleNamespace(config={"members": [config] * members}, metrics={"trial_id": "g"},
                           metrics_dataframe=pd.DataFrame(history), error=None)


def test_rundir_collects_val_acc_and_best_val_acc_nan_without() -> None:
    trials, epochs = rundir.collect([result(2, True), result(1, False)], [])
    assert {"val_acc", "best_val_acc"} <= set(trials.columns) and "val_acc" in epochs
    assert trials["val_acc"].tolist()[:2] == [0.65, 0.65] and trials["best_val_acc"].tolist()[:2] == [0.7, 0.7]
    assert math.isnan(trials["val_acc"].iloc[2]) and math.isnan(trials["best_val_acc"].iloc[2])


# val_acc prefers lr 1.0 at alpha 0 while test_acc prefers lr 0.1 (replicate means, test_replicates.ACC)
ACC = {(0, 0.1): [0.80, 0.82, 0.84], (0, 1.0): [0.70, 0.75, 0.90], (100, 0.1): [0.30, 0.35, 0.55], (100, 1.0): [0.45, 0.46, 0.50]}
VAL = {(0, 0.1): 0.5, (0, 1.0): 0.9, (100, 0.1): 0.6, (100, 1.0): 0.4}


def with_val(trials: pd.DataFrame) -> pd.DataFrame:
    val = trials.apply(lambda r: VAL[(r["alpha"], r["lr"])], axis=1)
    return trials.assign(val_acc=val, best_val_acc=val)


def test_select_val_chooses_on_val_and_reports_test_of_that_choice() -> None:
    trials = with_val(replicate_rows(ACC))
    by_val = summarize(trials, select="val").set_index("alpha")
    by_test = summarize(trials, select="test").set_index("alpha")
    assert by_val["lr"].to_dict() == {0: 1.0, 100: 0.1} and by_test["lr"].to_dict() == {0: 0.1, 100: 1.0}
    assert by_val.loc[0, "test_acc"] == pytest.approx(np.mean(ACC[(0, 1.0)]))  # the test accuracy of the val choice
    assert set(by_val["selected_on"]) == {"val_acc"} and set(by_test["selected_on"]) == {"test_acc"}
    assert set(summarize(trials)["selected_on"]) == {"val_acc"}  # default: val when the run has it
    no_val = replicate_rows(ACC).assign(val_acc=np.nan, best_val_acc=np.nan)
    assert set(summarize(no_val)["selected_on"]) == {"test_acc"}
    with pytest.raises(ValueError, match="n_val=0"):
        summarize(no_val, select="val")


def run_dir(path: Path, trials: pd.DataFrame, figures: list[str]) -> Path:
    path.mkdir(exist_ok=True)
    rundir.write_csv(trials, path / rundir.TRIALS)
    rundir.write_json({"exp": "uniform_mnist", "preset": "smoke", "figures": figures, "config": {"data": {"dataset": "mnist"}}},
                      path / rundir.STUDY)
    return path


def test_report_select_flag_summary_captions_and_claims_links(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_dir(tmp_path / "uniform_mnist-smoke-x", with_val(replicate_rows(ACC)), ["fig1"])
    for select, column in (("val", "val_acc"), ("test", "test_acc"), (None, "val_acc")):
        assert report.main([str(run)] + ([f"--select={select}"] if select else [])) == 0
        summary = pd.read_csv(run / rundir.SUMMARY)
        assert set(summary["selected_on"]) == {column}
        md = (run / "claims.md").read_text()
        assert f"| {column} |" in md and "[fig1](fig1.png)" in md
    fig = FIGURES["fig1"](summarize(with_val(replicate_rows(ACC))), None, run,
                          Run.of({"preset": "smoke", "config": {"data": {"dataset": "mnist"}}}))
    (text,) = [t.get_text() for t in fig.texts]
    assert "uniform_mnist-smoke-x" in text and "preset=smoke" in text and "val_acc" in text and "replicates: 3" in text
    no_val = run_dir(tmp_path / "old", replicate_rows(ACC), ["fig1"])
    assert report.main([str(no_val), "--select", "val"]) == 2
    assert "n_val=0" in capsys.readouterr().err
    assert report.main([str(no_val)]) == 0 and set(pd.read_csv(no_val / rundir.SUMMARY)["selected_on"]) == {"test_acc"}


def test_claims_link_to_figures_relative_to_out(tmp_path: Path) -> None:
    run = run_dir(tmp_path / "run", replicate_rows(ACC), ["fig1"])
    out = tmp_path / "report"
    out.mkdir()
    assert claims.main([str(run), "--out", str(out)]) == 0
    assert "[fig1](../run/fig1.png)" in (out / "claims.md").read_text()


@pytest.mark.slow
def test_smoke_study_with_n_val_selects_on_val(data_root: Path, tmp_path: Path) -> None:
    """A real smoke study through Tune with data.n_val=500: val_acc in trials.csv, summary.csv chosen on it,
    and `analysis.report --select val|test` both work on the run."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.helpers import launch

    proc = launch("exp=uniform_mnist", "preset=smoke", "data.n_val=500", "data.n_clean=1000", "grid.noise.alpha=[0,10]",
                  "grid.model.arch=[mlp1]", "grid.train.lr=[0.1,0.5]", "train.epochs=1", f"run_dir={tmp_path / 'run'}",
                  env={"STUDY_DATA_ROOT": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = Path(proc.stdout.strip().splitlines()[-1].removeprefix("results: "))
    trials = pd.read_csv(run / rundir.TRIALS)
    assert trials["val_acc"].between(0.2, 1).all() and (trials["best_val_acc"] >= trials["val_acc"]).all()
    assert pd.read_csv(run / rundir.EPOCHS)["val_acc"].notna().all()
    summary = pd.read_csv(run / rundir.SUMMARY)
    assert set(summary["selected_on"]) == {"val_acc"} and summary["val_acc"].notna().all() and len(summary) == 2
    for select in ("test", "val"):
        out = subprocess.run([sys.executable, "-m", "analysis.report", str(run), "--select", select],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
        assert out.returncode == 0, out.stderr
        assert set(pd.read_csv(run / rundir.SUMMARY)["selected_on"]) == {f"{select}_acc"}
        assert "| selected on |" in (run / "claims.md").read_text()  # no fig1 claim is measured on this tiny grid


def test_best_epoch_scores_each_trial_at_its_best_validation_epoch(tmp_path: Path) -> None:
    """--epoch best: lr 0.1 peaks on val at epoch 1 and then collapses, lr 0.5 ends best: last-epoch selection
    picks 0.5, best-epoch selection picks 0.1 and reports 0.1's epoch-1 test accuracy."""
    import json

    import pandas as pd

    from analysis.summary import read_run

    trials = pd.DataFrame({"alpha": [0, 0], "arch": ["conv4"] * 2, "lr": [0.1, 0.5], "batch_size": [128] * 2,
                           "seed": [0, 0], "noise_seed": [0, 0], "trial_id": ["g-0", "g-1"], "group": ["g", "g"],
                           "status": ["ok"] * 2, "epochs": [2, 2], "test_acc": [0.40, 0.80], "best_test_acc": [0.9, 0.8],
                           "test_top5": [0.9, 0.95], "best_test_top5": [0.99, 0.95], "val_acc": [0.41, 0.79],
                           "best_val_acc": [0.92, 0.79], "train_loss": [1.0] * 2, "images_per_s": [1.0] * 2,
                           "node_id": ["n"] * 2})
    epochs = pd.DataFrame({"trial_id": ["g-0", "g-0", "g-1", "g-1"], "epoch": [1, 2, 1, 2],
                           "test_acc": [0.88, 0.40, 0.70, 0.80], "test_top5": [0.99, 0.9, 0.9, 0.95],
                           "val_acc": [0.92, 0.41, 0.71, 0.79]})
    trials.to_csv(tmp_path / "trials.csv", index=False)
    epochs.to_csv(tmp_path / "epochs.csv", index=False)
    (tmp_path / "study.json").write_text(json.dumps({"exp": "x", "preset": "smoke", "config": {}, "figures": []}))
    _, _, last = read_run(tmp_path, "val")
    _, _, best = read_run(tmp_path, "val", epoch="best")
    assert last["lr"].tolist() == [0.5] and last["test_acc"].tolist() == [0.80]
    assert best["lr"].tolist() == [0.1] and best["test_acc"].tolist() == [0.88]
    assert best["selected_on"].tolist() == ["val_acc at its best epoch"]
    _, _, default = read_run(tmp_path, epoch="best")  # no select: val, since the run measured it
    assert default["lr"].tolist() == [0.1] and default["selected_on"].tolist() == ["val_acc at its best epoch"]
    _, _, on_test = read_run(tmp_path, "test", epoch="best")  # best test epochs: 0.88 (lr 0.1) vs 0.80
    assert on_test["lr"].tolist() == [0.1] and on_test["selected_on"].tolist() == ["test_acc at its best epoch"]
    with pytest.raises(ValueError, match=r"^epoch='worst' is unknown: choose one of last, best$"):
        read_run(tmp_path, epoch="worst")


def test_summary_of_a_run_where_no_trial_finished_is_empty() -> None:
    """Every trial failed (test_acc NaN): the paper's rule has nothing to choose, and says so with an empty
    summary rather than a ValueError about a missing validation split."""
    import pandas as pd

    from analysis.summary import summarize

    trials = pd.DataFrame({"alpha": [0, 0], "arch": ["conv4"] * 2, "lr": [0.1, 0.5], "batch_size": [128] * 2,
                           "seed": [0, 0], "noise_seed": [0, 0], "trial_id": ["g-0", "g-1"], "group": ["g", "g"],
                           "status": ["error"] * 2, "epochs": [0, 0], "test_acc": [float("nan")] * 2,
                           "best_test_acc": [float("nan")] * 2, "test_top5": [float("nan")] * 2,
                           "best_test_top5": [float("nan")] * 2, "train_loss": [float("nan")] * 2,
                           "images_per_s": [float("nan")] * 2, "node_id": [None] * 2})
    assert summarize(trials, select="test").empty


def test_best_epoch_takes_each_metric_at_that_epoch_whatever_else_is_missing() -> None:
    """at_best_epoch: test_acc, test_top5 and val_acc all come from the best epoch; a NaN in another column
    (images_per_s) does not hide that epoch; a trial only in epochs.csv is ignored; an epochs.csv without
    val_acc (a run from before n_val) leaves trials' val_acc as it was."""
    from analysis.summary import at_best_epoch

    trials = pd.DataFrame({"trial_id": ["a", "b"], "lr": [0.1, 0.5], "test_acc": [0.40, 0.80], "test_top5": [0.90, 0.95],
                           "val_acc": [0.41, 0.79]})
    epochs = pd.DataFrame({"trial_id": ["a", "a", "b", "b", "c"], "epoch": [1, 2, 1, 2, 1],
                           "test_acc": [0.88, 0.40, 0.70, 0.80, 0.99], "test_top5": [0.99, 0.90, 0.90, 0.95, 0.99],
                           "val_acc": [0.92, 0.41, 0.71, 0.79, 0.99], "images_per_s": [np.nan, 1.0, 1.0, np.nan, 1.0]})
    out = at_best_epoch(trials, epochs, "val_acc")
    assert list(out.columns) == list(trials.columns) and out["trial_id"].tolist() == ["a", "b"]
    assert out["test_acc"].tolist() == [0.88, 0.80] and out["test_top5"].tolist() == [0.99, 0.95]
    assert out["val_acc"].tolist() == [0.92, 0.79]
    out = at_best_epoch(trials, epochs.drop(columns="val_acc"), "test_acc")
    assert out["test_acc"].tolist() == [0.88, 0.80] and out["val_acc"].tolist() == [0.41, 0.79]


def test_clean_validation_and_novel_images_are_disjoint_at_mnist_proportions() -> None:
    """MNIST's 60,000 training images, 5,000 held out, 1,000 clean and 54 novel images per clean one: the three
    sets are disjoint and together use every image; one more novel image per clean one is refused."""
    labels = torch.arange(60_000) % 10
    d = {"n_clean": 1000, "n_val": 5000, "subset_seed": 2}
    clean, val = clean_and_val(labels, d)
    rows = table_rows(NoiseSpec(alpha=54, seed=3, source="novel"), 60_000, 60_000, clean, val)
    novel = rows[1000:]
    assert torch.equal(rows[:1000], clean) and len(novel) == 54_000 == novel.unique().numel()
    together = torch.cat([clean, val, novel])
    assert together.unique().numel() == 60_000 and together.min() == 0 and together.max() == 59_999
    assert torch.equal(table_rows(NoiseSpec(alpha=54, seed=3, source="novel"), 60_000, 60_000, clean, val), rows)
    with pytest.raises(UsageError, match=r"needs 55000 unused training images .* but only 54000 lie outside the 1000 "
                                         r"clean ones and the 5000 validation ones: lower noise.alpha to at most 54"):
        table_rows(NoiseSpec(alpha=55, source="novel"), 60_000, 60_000, clean, val)


@pytest.mark.parametrize("data, noise, refused", [
    ({"n_clean": 1000, "n_val": 5000}, {"alpha": 54, "source": "novel"}, None),
    ({"n_clean": 1000, "n_val": 5000}, {"alpha": 55, "source": "novel"}, "noise.alpha=55 is invalid: noise.source=novel "
     "needs 55000 unused training images (n_clean x alpha) but only 54000 lie outside the 1000 clean ones and the "
     "5000 validation ones: lower noise.alpha to at most 54 or data.n_clean"),
    ({"n_clean": 55_000, "n_val": 5000}, {}, None),
    ({"n_clean": 55_001, "n_val": 5000}, {}, "data.n_clean=55001 is invalid: it must be an integer in [1, 55000] (the "
     "mnist training split, less the 5000 held out by data.n_val)"),
    ({"n_clean": None, "n_val": 60_000}, {}, "data.n_val=60000 is invalid: it must be an integer in [0, 59999] (the "
     "mnist training split, leaving one image to train on)"),
])
def test_check_counts_the_validation_split(data: dict, noise: dict, refused: str | None, data_root: Path) -> None:
    """loaders.data.check (the launcher's, before any trial) refuses what build() would, the held-out split
    included, at MNIST's sizes."""
    config = trial_config(data_root, data=data, noise=noise)
    if refused is None:
        loaders_data.check(config["data"], config["noise"])
        Trial(config) if noise else None  # build() agrees: it runs
        return
    with pytest.raises(UsageError) as err:
        loaders_data.check(config["data"], config["noise"])
    assert str(err.value) == refused
    with pytest.raises(UsageError):
        Trial(config)


def test_the_brief_summary_shows_the_keys_that_vary_and_accuracies_in_percent() -> None:
    """analysis.report.brief by hand: keys that vary (all of them for one row, none that is empty), accuracies in %
    with the interval where replicates give one, empty metrics left out, the selection rule and replicate range."""
    nan = float("nan")
    summary = pd.DataFrame({
        "model.arch": ["conv2", "conv2"], "noise.delta": [nan, nan], "noise.alpha": [0.0, 5.0],
        "test_acc": [0.981, 0.9], "test_acc_ci_low": [0.97, nan], "test_acc_ci_high": [0.99, nan],
        "val_acc": [nan, nan], "test_top5": [0.999, 0.9984], "selected_on": ["test_acc", None], "replicates": [3, 1]})
    shown = pd.DataFrame({"noise.alpha": [0.0, 5.0], "test_acc": ["98.1%", "90.0%"], "test_acc_ci_low": ["97.0%", ""],
                          "test_acc_ci_high": ["99.0%", ""], "test_top5": ["99.9%", "99.8%"]})
    assert report.brief(summary) == ("summary (learning rate chosen on test_acc; replicates: 1–3)\n"
                                     + shown.to_string(index=False))
    one = summary.iloc[:1].assign(replicates=[3], val_acc=[0.95], selected_on=["val_acc"])
    assert report.brief(one) == ("summary (learning rate chosen on val_acc; replicates: 3)\n" + pd.DataFrame({
        "model.arch": ["conv2"], "noise.alpha": [0.0], "test_acc": ["98.1%"], "test_acc_ci_low": ["97.0%"],
        "test_acc_ci_high": ["99.0%"], "val_acc": ["95.0%"], "test_top5": ["99.9%"]}).to_string(index=False))
    assert report.brief(summary.iloc[:0]) == "summary: no trial finished"


def test_the_report_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """python -m analysis.report: its help, the summary and where the results are on stdout, a run dir that is none
    and a choice it does not offer each one line on stderr with exit 2."""
    import sys

    run = run_dir(tmp_path / "r", with_val(replicate_rows(ACC)), ["fig1"])
    monkeypatch.setattr(sys, "argv", ["report.py", str(run)])
    assert report.main() == 0
    out, err = capsys.readouterr()
    summary = pd.read_csv(run / rundir.SUMMARY)
    assert out == f"{report.brief(summary)}\nresults: {run.resolve()}\n" and err == ""
    assert report.main([str(tmp_path / "none")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1 and str(tmp_path / "none") in err
    for flag, value, offered in (("--select", "train", "'test', 'val'"), ("--epoch", "first", "'last', 'best'")):
        with pytest.raises(SystemExit) as exit_:
            report.main([str(run), flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}: invalid choice: '{value}' (choose from {offered})" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        report.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and out.startswith("usage: python -m analysis.report [-h]")
    assert report.__doc__.splitlines()[0] in out
    assert "the split the LR is chosen on" in out and "at its last epoch (the paper's rule)" in " ".join(out.split())
