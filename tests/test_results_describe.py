"""Results that say what was run (issue 23): every figure's title, legend, chance line and caption come from the
run (its dataset and class count, its noisy labels and their source, its scale and selection split), trials.csv
carries the noise matrix and label file per config, top-5 is drawn only with more than 5 classes, ticks sit at
the values measured only, and legends cover no line."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import rundir
from analysis.describe import Run
from analysis.figures import FIGURES
from analysis.summary import read_run, summarize
from tests.test_analysis import trials_frame


def folder_run(root: Path, figures: list[str], **grid: list) -> Path:
    """A run dir as the launcher leaves it for a 3-class folder study with a noise matrix file of one's own
    (study.json's dataset block; trials.csv's matrix and labels columns)."""
    run = root / "uniform_cifar10-smoke-20260101-000000"
    run.mkdir(parents=True)
    trials = trials_frame(**grid).assign(matrix="/data/noise/own3.npy", labels=np.nan)
    trials["test_top5"] = np.nan  # 3 classes: the trials report no top-5 (study.train.evaluate)
    rundir.write_csv(trials, run / rundir.TRIALS)
    config = {"data": {"dataset": "folder", "path": "/data/my_images", "n_val": 0},
              "noise": {"matrix": "/data/noise/own3.npy", "labels": None, "delta": 0.0, "source": "same"}}
    rundir.write_json({"exp": "uniform_cifar10", "preset": "smoke", "figures": figures, "config": config,
                       "dataset": {"name": "my_images", "classes": 3, "stand_in": False}}, run / rundir.STUDY)
    return run


def legend(ax: plt.Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_a_folder_run_with_a_matrix_file_draws_what_it_ran(tmp_path: Path) -> None:
    run = folder_run(tmp_path, ["fig2"], alpha=[0, 5, 20], arch=["conv4", "conv6"], lr=[0.1, 0.5])
    study, trials, summary = read_run(run)
    fig = FIGURES["fig2"](summary, trials, run, Run.of(study))
    ax = fig.axes[0]
    assert ax.get_title() == "my_images, noise matrix own3.npy (preset=smoke)"  # not "CIFAR-10, uniform label noise"
    assert legend(ax) == ["Conv4", "Conv6", "chance (33.3%)"]
    (chance,) = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert chance.get_ydata()[0] == pytest.approx(100 / 3)  # 1 of 3 classes, not 10%
    (caption,) = [t.get_text() for t in fig.texts]
    assert caption == (f"run {run.name} · preset=smoke · my_images (3 classes) · noise matrix own3.npy\n"
                       "LR chosen on test_acc (the paper's rule) · replicates: 1")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "5", "20"]  # no tick at 2.5 or 7.5
    assert (run / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    assert set(pd.read_csv(run / rundir.TRIALS)["matrix"]) == {"/data/noise/own3.npy"}


def test_top5_only_with_more_than_five_classes(tmp_path: Path) -> None:
    run = folder_run(tmp_path, ["fig3"], alpha=[0, 5], arch=["resnet18"])
    study, trials, summary = read_run(run)
    ax = FIGURES["fig3"](summary, trials, run, Run.of(study)).axes[0]
    assert ax.get_ylabel() == "Prediction accuracy (%)" and legend(ax)[-1] == "chance (33.3%)"
    imagenet = Run.of({"preset": "paper", "config": {"data": {"dataset": "imagenet"}}})
    uniform = summary.assign(test_top5=0.5).drop(columns=["matrix", "labels"])
    ax = FIGURES["fig3"](uniform, trials, tmp_path, imagenet).axes[0]
    assert ax.get_ylabel() == "Top-5 accuracy (%)" and legend(ax)[-1] == "chance (0.5%)"  # 5 of 1,000 classes
    assert ax.get_title() == "ImageNet, uniform label noise (preset=paper)"


@pytest.mark.parametrize("study,title,data,noise", [
    ({"preset": "smoke", "config": {"data": {"dataset": "mnist"}, "noise": {"labels": "cifar10n:worst"}}},
     "MNIST", "MNIST (10 classes)", "CIFAR-10N worst per-image labels"),
    ({"preset": "smoke", "config": {"data": {"dataset": "cifar10"}, "noise": {"matrix": "cifar10n:aggre"}},
      "dataset": {"name": "CIFAR-10", "classes": 10, "stand_in": True}},
     "CIFAR-10 (generated stand-in)", "CIFAR-10 (generated stand-in) (10 classes)", "CIFAR-10N aggre class-conditional matrix"),
    ({"preset": "paper", "config": {"data": {"dataset": "mnist"}, "noise": {"delta": 0.5, "order": "reverse",
                                                                          "source": "novel"}}},
     "MNIST", "MNIST (10 classes)", "structured label noise (δ = 0.5, reverse order), on novel images"),
    ({"preset": "paper", "config": {"data": {"dataset": "mnist"}, "noise": {"source": "white"}}},
     "MNIST", "MNIST (10 classes)", "uniform label noise, on white-noise images"),
    ({"config": {"data": {"dataset": "folder", "path": "/lab/my_images"},
                 "noise": {"matrix": "/lab/own.npy", "draw": "image"}}},
     "my_images", "my_images", "noise matrix own.npy, one draw per image"),
    ({"preset": "smoke", "config": {"data": {"dataset": "folder", "path": "/lab/my_images"},
                                    "noise": {"labels": "/lab/votes.csv", "draw": "image"}},
      "dataset": {"name": "my_images", "classes": 7}},
     "my_images", "my_images (7 classes)", "votes.csv per-image labels, one per image"),
    ({"config": {"data": {"dataset": "folder"}, "noise": {"matrix": "cifar10n:worst", "draw": "copy"}}},
     "folder", "folder", "CIFAR-10N worst class-conditional matrix"),
    ({"config": {"data": {"dataset": "svhn"}}}, "svhn", "svhn", "uniform label noise"),
    ({}, "?", "?", "uniform label noise"),
])
def test_a_run_in_words(study: dict, title: str, data: str, noise: str) -> None:
    run = Run.of(study)
    assert (run.dataset, run.data, run.noise_text()) == (title, data, noise)
    assert run.scale == f"preset={study.get('preset', '?')}"


def test_a_grid_of_noise_kinds_is_named_from_its_rows() -> None:
    run = Run.of({"preset": "smoke", "config": {"data": {"dataset": "cifar10"}, "noise": {}}})
    rows = pd.DataFrame({"matrix": [np.nan, "cifar10n:random", np.nan], "labels": [np.nan, np.nan, "cifar10n:random"]})
    assert run.labels(rows) == ("uniform label noise / CIFAR-10N random class-conditional matrix / "
                                "CIFAR-10N random per-image labels")
    assert run.labels(rows.iloc[[1]]) == "CIFAR-10N random class-conditional matrix"


def test_legend_beside_the_axes_covers_no_line(tmp_path: Path) -> None:
    """Figure 11: the legend sat on the batch-32 line; now it lies outside the axes, for every line figure."""
    trials = trials_frame(alpha=[0, 10, 50], batch_size=[32, 64, 128, 256], loss=["ce", "h_alpha"])
    run = Run.of({"preset": "smoke", "config": {"data": {"dataset": "mnist"}}})
    fig = FIGURES["fig11"](summarize(trials), trials, tmp_path, run)
    ax = fig.axes[0]
    box, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert box.x0 >= frame.x1  # wholly right of the axes
    assert "batch 32" in legend(ax) and ax.get_title().startswith("MNIST, Conv4, batch size, uniform label noise")


def test_crowded_alphas_keep_every_tick_and_label_only_the_readable_ones(tmp_path: Path) -> None:
    trials = trials_frame(alpha=[0, 1, 2, 5, 10, 20, 50, 100], arch=["conv4"])
    run = Run.of({"preset": "paper", "config": {"data": {"dataset": "mnist"}}})
    ax = FIGURES["fig1"](summarize(trials), trials, tmp_path, run).axes[0]
    assert list(ax.get_xticks()) == [0, 1, 2, 5, 10, 20, 50, 100]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "", "", "5", "10", "20", "50", "100"]


def test_trials_csv_carries_the_noise_files_of_every_config() -> None:
    from types import SimpleNamespace

    config = {"data": {"order_seed": 0, "subset_seed": 0}, "model": {"arch": "conv4"},
              "train": {"lr": 0.1, "batch_size": 128, "seed": 0}}
    members = [{**config, "noise": {"alpha": 2, "seed": 0, "matrix": m, "labels": lab}}
               for m, lab in (("/x/own.npy", None), (None, "cifar10n:worst"), (None, None))]
    trials, _ = rundir.collect([SimpleNamespace(config={"members": members}, metrics=None, metrics_dataframe=None,
                                                error=None)], [])
    assert trials["matrix"].fillna("").tolist() == ["/x/own.npy", "", ""]
    assert trials["labels"].fillna("").tolist() == ["", "cifar10n:worst", ""]


def test_the_rows_name_their_sources_and_study_json_names_its_dataset() -> None:
    """Where a grid varies noise.source the rows name each one (an unknown one as it is, an empty one not at all)
    and the study's own value does not show; an empty cell is no file; study.json's dataset block names the data."""
    run = Run.of({"preset": "smoke", "config": {"data": {"dataset": "folder", "path": "/lab/x"}, "noise": {}},
                  "dataset": {"name": "pets", "classes": 3}})
    assert (run.dataset, run.data) == ("pets", "pets (3 classes)")
    rows = pd.DataFrame({"source": ["novel", "", "rendered", "novel"], "matrix": ["", np.nan, "", ""]})
    assert run.source(rows) == "novel images / rendered"
    assert run.noise_text(rows) == "uniform label noise, on novel images / rendered"
    assert run.labels(rows.iloc[:0]) == "uniform label noise" and run.source(rows.iloc[:0]) == ""
