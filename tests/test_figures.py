"""analysis/figures.py drawn exactly: for hand-made summaries, each figure's file, title, axis labels and scales,
legend names, plotted points (accuracy in %), error bars, chance line, Figure 9's censored markers and arrows,
the confusion heatmap's cell texts, and the caption save() writes under the figure, read back from the Figure."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from matplotlib.patches import ArrowStyle
from PIL import Image

from analysis import figures
from analysis.describe import Run
from analysis.figures import ALPHA

MNIST = Run("MNIST", 10, "preset=test")
IMAGENET = Run("ImageNet", 1000, "preset=paper")
UNNAMED = Run("my_images", None, "preset=smoke")  # no class count: no chance line
CENSORED = "censored: ↓ met at smallest size, ↑ never met"
PAPER_RULE = "LR chosen on test_acc (the paper's rule)"
NONE = (0, 0, 0, 0)  # an open marker's face: colours are compared as drawn (to_rgba), not as spelled


@pytest.fixture(autouse=True)
def close_all():
    yield
    plt.close("all")


def legend(ax: plt.Axes) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def series(ax: plt.Axes) -> dict[str, tuple[list[float], list[float]]]:
    """label -> (x, y) of every labelled line: plain lines and error-bar lines (whose label is the container's)."""
    out = {l.get_label(): l for l in ax.get_lines() if not l.get_label().startswith("_")}
    out.update({c.get_label(): c.lines[0] for c in ax.containers if isinstance(c, ErrorbarContainer)})
    return {k: (np.asarray(l.get_xdata(), float).tolist(), np.asarray(l.get_ydata(), float).tolist())
            for k, l in out.items()}


def line(ax: plt.Axes, label: str):
    """The drawn Line2D of a label (an error bar's data line for a container)."""
    for c in ax.containers:
        if c.get_label() == label:
            return c.lines[0]
    (found,) = [l for l in ax.get_lines() if l.get_label() == label]
    return found


def bars(ax: plt.Axes, label: str) -> list[float]:
    """x, low, high of each error bar drawn on the line `label`, one after the other; a point with no CI draws none."""
    (container,) = [c for c in ax.containers if c.get_label() == label]
    (segments,) = container.lines[2]
    return [float(v) for s in segments.get_segments() if len(s) for v in (s[0][0], s[0][1], s[1][1])]


def caption_text(fig: plt.Figure) -> str:
    (text,) = fig.texts
    return text.get_text()


def caption_line(out: Path, data: str, noise: str) -> str:
    return f"run {out.resolve().name} · preset=test · {data} · {noise}"


def legend_layout(ax: plt.Axes) -> tuple:
    """The legend's font size, location code, anchor (in axes coordinates) and padding."""
    leg = ax.get_legend()
    anchor = ax.transAxes.inverted().transform(leg.get_bbox_to_anchor().get_points())
    return ({t.get_fontsize() for t in leg.get_texts()}, leg._loc, np.round(anchor, 6).tolist(), leg.borderaxespad)


BESIDE = ({8.0}, 2, [[1.02, 1.0], [1.02, 1.0]], 0)  # fontsize 8, upper left, anchored right of the axes, no pad


def only_file(out: Path, name: str) -> None:
    assert sorted(p.name for p in out.iterdir() if p.suffix != ".npy") == [name]
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- small helpers ------------------------------------------------------------------------------------------


def test_arch_labels_archs_top5_and_chance() -> None:
    assert figures.arch_label("perceptron") == "Perceptron" and figures.arch_label("resnet18") == "ResNet-18"
    assert figures.arch_label("vit") == "vit" and figures.arch_label(7) == "7"  # unknown: its own name
    assert figures.archs(pd.DataFrame({"arch": ["perceptron", "mlp1", "mlp1", "wide"]})) == "MLP1, Perceptron, wide"
    assert figures.archs(pd.DataFrame({"alpha": [0, 1]})) == ""
    assert figures.top5(IMAGENET) == "test_top5" and figures.top5(UNNAMED) == "test_top5"
    assert figures.top5(Run("five", 5, "preset=test")) == "test_acc" and figures.top5(Run("six", 6, "p")) == "test_top5"
    assert figures.chance(MNIST, "test_acc") == pytest.approx(0.1)
    assert figures.chance(IMAGENET, "test_top5") == pytest.approx(0.005)
    assert figures.chance(IMAGENET, "test_acc") == pytest.approx(0.001)
    assert figures.chance(UNNAMED, "test_acc") is None


def test_by_x_means_and_combines_half_widths() -> None:
    table = pd.DataFrame({"alpha": [10, 0, 10, 0], "test_acc": [0.5, 0.9, 0.7, 0.8],
                          "test_acc_ci_low": [0.47, 0.89, 0.66, np.nan],
                          "test_acc_ci_high": [0.53, 0.91, 0.74, np.nan]})
    out = figures.by_x(table, "alpha", "test_acc")
    assert list(out.columns) == ["alpha", "mean", "half", "low", "high"] and out["alpha"].tolist() == [0, 10]
    assert out["mean"].tolist() == pytest.approx([0.85, 0.6])
    assert math.isnan(out["half"][0]) and math.isnan(out["low"][0]) and math.isnan(out["high"][0])  # a row without CI
    half = math.sqrt(0.03 ** 2 + 0.04 ** 2) / 2  # √(Σ h_i²) / k
    assert out["half"][1] == pytest.approx(half)
    assert (out["low"][1], out["high"][1]) == pytest.approx((0.6 - half, 0.6 + half))
    bare = figures.by_x(table[["alpha", "test_acc"]], "alpha", "test_acc")  # no CI columns at all
    assert bare["mean"].tolist() == pytest.approx([0.85, 0.6]) and bare[["half", "low", "high"]].isna().all().all()


def test_curve_plain_line_or_clipped_error_bars() -> None:
    _, ax = plt.subplots()
    figures.curve(ax, [1, 2], [50, 60], [np.nan, np.nan], [np.nan, np.nan], "k--", marker="s", label="plain")
    assert not ax.containers and series(ax) == {"plain": ([1, 2], [50, 60])}
    (plain,) = ax.get_lines()
    assert (plain.get_linestyle(), plain.get_marker(), to_rgba(plain.get_color())) == ("--", "s", (0, 0, 0, 1))
    figures.curve(ax, [1, 2, 3], [50, 60, 70], [40, 65, np.nan], [55, 70, np.nan], marker="o", label="bars")
    assert bars(ax, "bars") == [1, 40, 55, 2, 60, 70]  # the low end above y is clipped to y; NaN: no bar
    (container,) = ax.containers
    assert container.lines[0].get_marker() == "o"
    assert [c.get_markersize() for c in container.lines[1]] == [6, 6]  # capsize 3: lower and upper caps
    assert container.lines[2][0].get_linewidth() == 1
    _, ax = plt.subplots()
    figures.curve(ax, [1], [50], [np.nan], [55], label="upper only")  # one finite bound: still an error bar line
    assert len(ax.containers) == 1 and series(ax) == {"upper only": ([1], [50])}


@pytest.mark.parametrize("values,log,ticks,labels", [
    ([0, 1, 2, 5, 100, 100, np.nan], False, [0, 1, 2, 5, 100], ["0", "", "", "5", "100"]),
    ([2.5, 0, 5, 20], False, [0, 2.5, 5, 20], ["0", "2.5", "5", "20"]),
    ([100, 1000, 1100, 1281167], True, [100, 1000, 1100, 1281167], ["100", "1,000", "", "1,281,167"]),
    ([7], False, [7], ["7"]),
    ([100, 0, 4], False, [0, 4, 100], ["0", "4", "100"]),  # exactly 4% of the span apart: labelled
    ([10, 14, 100], False, [10, 14, 100], ["10", "14", "100"]),  # the span is 100 - 10: 4 >= 3.6
    ([0, 50, 52, 100], False, [0, 50, 52, 100], ["0", "50", "", "100"]),  # the span from the first value
    ([1, 1.01], False, [1, 1.01], ["1", "1.01"]),  # two values: their gap is the whole span
])
def test_measured_ticks(values: list, log: bool, ticks: list, labels: list) -> None:
    _, ax = plt.subplots()
    if log:
        ax.set_xscale("log")
    figures.measured_ticks(ax, values)
    assert ax.get_xticks().tolist() == ticks and [t.get_text() for t in ax.get_xticklabels()] == labels
    assert not ax.xaxis.get_minorticklocs().size


def test_finish_labels_limits_title_and_legend() -> None:
    _, ax = plt.subplots()
    ax.plot([0, 1], [500, 600], label="a")
    figures.finish(ax, "T", "X")
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("T", "X", "Prediction accuracy (%)")
    assert ax.get_ylim() == (0, 100) and ax.title.get_fontsize() == 10 and legend(ax) == ["a"]
    assert legend_layout(ax) == BESIDE
    assert all(l.get_visible() for l in ax.get_xgridlines()) and ax.get_xgridlines()[0].get_alpha() == 0.3
    _, ax = plt.subplots()
    ax.plot([0, 1], [500, 600], label="b")
    figures.finish(ax, "T2", "X2", "Count", percent=False)
    assert ax.get_ylabel() == "Count" and ax.get_ylim()[1] > 600


# --- caption and save -----------------------------------------------------------------------------------------


def test_caption_names_the_run_rule_and_replicates(tmp_path: Path) -> None:
    run = Run("CIFAR-10", 10, "preset=test", {"matrix": "own.npy", "source": "cifar100"})  # the rows' columns win
    head = f"run {tmp_path.resolve().name} · preset=test · CIFAR-10 (10 classes)"
    summary = pd.DataFrame({"selected_on": ["val_acc", "test_acc", None, "loss"], "replicates": [3, 2, 3, 3],
                            "source": ["novel", "novel", "white", ""]})
    assert figures.caption(tmp_path, run, summary) == (
        f"{head} · noise matrix own.npy, on novel images / white-noise images\n"
        f"chosen on loss; {PAPER_RULE}; LR chosen on held-out val_acc, test_acc shown · replicates: 2–3")
    assert figures.caption(tmp_path, run, summary.assign(replicates=4), "mine") == (
        f"{head} · noise matrix own.npy, on novel images / white-noise images\nmine · replicates: 4")
    study = f"{head} · noise matrix own.npy, on CIFAR-100 images\nno selection · replicates: n/a"  # no rows: the study's
    assert figures.caption(tmp_path, run, None) == study and figures.caption(tmp_path, run, summary.iloc[:0]) == study


def test_save_writes_the_png_atomically_with_its_caption(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    later = plt.figure()  # the current figure: save closes the one it saved, not this
    assert figures.save(fig, tmp_path / "x.png", "the caption") is fig
    only_file(tmp_path, "x.png")
    with Image.open(tmp_path / "x.png") as png:
        assert np.round(png.info["dpi"]).tolist() == [150, 150]
        assert png.size != (960, 720)  # bbox_inches="tight": not the 6.4 x 4.8 in figure at 150 dpi
    assert plt.fignum_exists(later.number)
    (text,) = fig.texts
    assert (text.get_text(), text.get_position(), text.get_ha(), text.get_va()) == ("the caption", (0.5, 0), "center", "top")
    assert (text.get_fontsize(), text.get_color(), text.get_transform()) == (7, "0.3", fig.transFigure)
    assert not plt.fignum_exists(fig.number)  # closed
    bare, _ = plt.subplots()
    figures.save(bare, tmp_path / "y.png")
    assert not bare.texts and (tmp_path / "y.png").exists()


# --- Figures 1-3 ----------------------------------------------------------------------------------------------


def arch_summary() -> pd.DataFrame:
    """Two archs at alpha 0 and 10; every cell's 95% CI ±1 point (top-5: ±2), but conv4 at alpha 10 has one
    replicate (NaN CI). The noisy images are novel ones."""
    rows = [("perceptron", 0, 0.90, 0.97, 3), ("perceptron", 10, 0.40, 0.60, 3),
            ("conv4", 0, 0.99, 1.00, 3), ("conv4", 10, 0.95, 0.99, 1)]
    summary = pd.DataFrame([{"alpha": a, "arch": arch, "lr": 0.1, "source": "novel", "test_acc": acc, "test_top5": top5,
                             "selected_on": "test_acc", "replicates": n} for arch, a, acc, top5, n in rows])
    for metric, half in (("test_acc", 0.01), ("test_top5", 0.02)):
        summary[f"{metric}_ci_low"] = (summary[metric] - half).where(summary["replicates"] > 1)
        summary[f"{metric}_ci_high"] = (summary[metric] + half).where(summary["replicates"] > 1)
    return summary


@pytest.mark.parametrize("name", ["fig1", "fig2"])
def test_fig1_and_fig2_draw_accuracy_per_arch(name: str, tmp_path: Path) -> None:
    fig = figures.FIGURES[name](arch_summary(), pd.DataFrame(), tmp_path, MNIST)
    only_file(tmp_path, f"{name}.png")
    (ax,) = fig.axes
    assert fig.get_size_inches().tolist() == [6, 4.2]
    assert ax.get_title() == "MNIST, uniform label noise, on novel images (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()) == (ALPHA, "Prediction accuracy (%)", "linear")
    assert legend(ax) == ["chance (10%)", "Conv4", "Perceptron"]
    drawn = series(ax)
    assert drawn["Perceptron"][1] == pytest.approx([90, 40]) and drawn["Conv4"][1] == pytest.approx([99, 95])
    assert drawn["Perceptron"][0] == [0, 10] and drawn["chance (10%)"][1] == pytest.approx([10, 10])
    assert bars(ax, "Perceptron") == pytest.approx([0, 89, 91, 10, 39, 41])
    assert bars(ax, "Conv4") == pytest.approx([0, 98, 100])  # alpha 10: one replicate, no bar
    assert line(ax, "Conv4").get_marker() == "o" and line(ax, "Perceptron").get_marker() == "o"
    chance = line(ax, "chance (10%)")
    assert (to_rgba(chance.get_color()), chance.get_linestyle(), chance.get_linewidth()) == (to_rgba("grey"), ":", 1)
    assert caption_text(fig) == (caption_line(tmp_path, "MNIST (10 classes)", "uniform label noise, on novel images")
                                 + f"\n{PAPER_RULE} · replicates: 1–3")


def test_fig3_draws_top5_where_the_run_has_more_than_5_classes(tmp_path: Path) -> None:
    fig = figures.fig3(arch_summary(), pd.DataFrame(), tmp_path, IMAGENET)
    only_file(tmp_path, "fig3.png")
    (ax,) = fig.axes
    assert ax.get_title() == "ImageNet, uniform label noise, on novel images (preset=paper)"
    assert ax.get_ylabel() == "Top-5 accuracy (%)" and legend(ax) == ["chance (0.5%)", "Conv4", "Perceptron"]
    assert series(ax)["Perceptron"][1] == pytest.approx([97, 60]) and series(ax)["Conv4"][1] == pytest.approx([100, 99])
    assert bars(ax, "Perceptron") == pytest.approx([0, 95, 99, 10, 58, 62])
    five = Run("five", 5, "preset=test")
    ax = figures.fig3(arch_summary(), pd.DataFrame(), tmp_path, five).axes[0]
    assert ax.get_ylabel() == "Prediction accuracy (%)" and series(ax)["Perceptron"][1] == pytest.approx([90, 40])
    assert legend(ax) == ["chance (20%)", "Conv4", "Perceptron"]
    ax = figures.fig3(arch_summary(), pd.DataFrame(), tmp_path, UNNAMED).axes[0]  # no class count: no chance line
    assert ax.get_ylabel() == "Top-5 accuracy (%)" and legend(ax) == ["Conv4", "Perceptron"]


# --- Figures 5-8, 10 ------------------------------------------------------------------------------------------


def clean_summary() -> pd.DataFrame:
    rows = [{"alpha": a, "n_clean": n, "source": "novel", "test_acc": acc, "test_top5": top5}
            for a, accs in ((2, [(0.5, 0.7), (0.8, 0.9), (0.9, 0.99)]), (0.5, [(0.6, 0.8), (0.85, 0.95), (0.95, 1.0)]))
            for n, (acc, top5) in zip((100, 1000, 10000), accs)]
    return pd.DataFrame(rows).assign(selected_on="test_acc", replicates=3)


@pytest.mark.parametrize("name,run,ylabel,points", [
    ("fig8", MNIST, "Prediction accuracy (%)", ([60, 85, 95], [50, 80, 90])),
    ("fig10", MNIST, "Top-5 accuracy (%)", ([80, 95, 100], [70, 90, 99])),
    ("fig10", Run("five", 5, "preset=test"), "Prediction accuracy (%)", ([60, 85, 95], [50, 80, 90])),
])
def test_fig8_and_fig10_accuracy_against_clean_labels(name: str, run: Run, ylabel: str, points: tuple, tmp_path: Path) -> None:
    fig = figures.FIGURES[name](clean_summary(), pd.DataFrame(), tmp_path, run)
    only_file(tmp_path, f"{name}.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"{run.dataset}, accuracy vs clean labels, uniform label noise, on novel images (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()) == ("Number of clean training labels", ylabel, "log")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "1,000", "10,000"]
    assert legend(ax)[:2] == ["α = 0.5", "α = 2"]
    drawn = series(ax)
    assert drawn["α = 0.5"] == ([100, 1000, 10000], pytest.approx(points[0]))
    assert drawn["α = 2"] == ([100, 1000, 10000], pytest.approx(points[1]))
    assert caption_text(fig) == (caption_line(tmp_path, run.data, "uniform label noise, on novel images")
                                 + f"\n{PAPER_RULE} · replicates: 3")


# --- Figure 9 -------------------------------------------------------------------------------------------------


def size_summary(accs: dict[float, list[float]], ci: float | None = None) -> pd.DataFrame:
    rows = [{"alpha": a, "n_clean": n, "test_acc": acc, "source": "novel"}
            for a, values in accs.items() for n, acc in zip((100, 1000, 10000), values)]
    summary = pd.DataFrame(rows).assign(selected_on="test_acc", replicates=3)
    if ci is not None:
        summary = summary.assign(test_acc_ci_low=summary["test_acc"] - ci, test_acc_ci_high=summary["test_acc"] + ci)
    return summary


def log_between(lo: float, frac: float) -> float:
    return 10 ** (math.log10(lo) + frac)


def test_fig9_critical_counts_censored_markers_and_arrows(tmp_path: Path) -> None:
    """alpha 0 meets 80% at the smallest size (censored below); alpha 50 never meets 85% or 90% (above)."""
    summary = size_summary({0: [0.82, 0.95, 0.99], 5: [0.7, 0.9, 0.95], 50: [0.5, 0.6, 0.805]}, ci=0.01)
    fig = figures.fig9(summary, pd.DataFrame(), tmp_path, MNIST)
    only_file(tmp_path, "fig9.png")
    (ax,) = fig.axes
    assert ax.get_title() == "MNIST, clean data needed, uniform label noise, on novel images (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == (ALPHA, "Critical number of clean labels", "log")
    assert ax.get_ylim()[0] < 55 and ax.get_ylim()[1] > 18000  # no 0-100 percent axis
    assert fig.get_size_inches().tolist() == [6, 4.2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "5", "50"]
    assert legend(ax) == [CENSORED, "80% accuracy", "85% accuracy", "90% accuracy"]
    drawn = series(ax)
    assert drawn["80% accuracy"] == ([5, 50], pytest.approx([log_between(100, 0.5), log_between(1000, 0.2 / 0.205)]))
    assert drawn["85% accuracy"] == ([0, 5], pytest.approx([log_between(100, 0.03 / 0.13), log_between(100, 0.75)]))
    assert drawn["90% accuracy"] == ([0, 5], pytest.approx([log_between(100, 0.08 / 0.13), 1000]))
    for i, label in enumerate(["80% accuracy", "85% accuracy", "90% accuracy"]):
        drawn_line = line(ax, label)
        assert (drawn_line.get_color(), drawn_line.get_marker()) == (f"C{i}", "o")
    # the CI's upper curve (acc + 1 point) reaches 80% first, the lower one last; alpha 50's lower curve never does
    assert bars(ax, "80% accuracy") == pytest.approx([5, log_between(100, 0.09 / 0.2), log_between(100, 0.11 / 0.2)])
    hollow = [l for l in ax.get_lines() if to_rgba(l.get_markerfacecolor()) == NONE and len(l.get_xdata())]
    assert [(l.get_xdata().tolist(), l.get_ydata().tolist()) for l in hollow] == [([0], [100]), ([50], [10000]), ([50], [10000])]
    assert [to_rgba(l.get_markeredgecolor()) for l in hollow] == [to_rgba(c) for c in ("C0", "C1", "C2")]
    assert {(l.get_marker(), l.get_linestyle(), l.get_markersize()) for l in hollow} == {("o", "None", 7)}
    assert all(l.get_label().startswith("_") for l in hollow)  # their targets have a line: named there
    tips = [l for l in ax.get_lines() if l.get_alpha() == 0]
    assert [(l.get_xdata().tolist(), l.get_ydata().tolist()) for l in tips] == [([0], [pytest.approx(55)]), ([50], [18000]), ([50], [18000])]
    arrows = ax.texts
    assert [(a.get_text(), a.xy, a.xyann) for a in arrows] == [
        ("", (0, pytest.approx(55)), (0, 100)), ("", (50, 18000), (50, 10000)), ("", (50, 18000), (50, 10000))]
    assert [a.arrow_patch.get_edgecolor() for a in arrows] == [to_rgba(c) for c in ("C0", "C1", "C2")]
    assert all(type(a.arrow_patch.get_arrowstyle()) is ArrowStyle.CurveB and a.arrow_patch.get_linewidth() == 1
               for a in arrows)
    (key,) = [l for l in ax.get_lines() if l.get_label() == CENSORED]  # the legend's key for the open markers
    assert (key.get_xdata().tolist(), key.get_marker(), key.get_linestyle()) == ([], "o", "None")
    assert (to_rgba(key.get_markerfacecolor()), to_rgba(key.get_markeredgecolor())) == (NONE, to_rgba("grey"))
    assert caption_text(fig) == (caption_line(tmp_path, "MNIST (10 classes)", "uniform label noise, on novel images")
                                 + f"\n{PAPER_RULE} · replicates: 3")


def test_fig9_a_target_met_nowhere_is_named_by_its_open_marker(tmp_path: Path) -> None:
    fig = figures.fig9(size_summary({20: [0.5, 0.7, 0.85]}), pd.DataFrame(), tmp_path, MNIST)  # no CI columns
    (ax,) = fig.axes
    assert not ax.containers and legend(ax) == ["80% accuracy", "85% accuracy", "90% accuracy", CENSORED]
    (hollow,) = [l for l in ax.get_lines() if l.get_label() == "90% accuracy"]
    assert (hollow.get_xdata().tolist(), hollow.get_ydata().tolist(), to_rgba(hollow.get_markerfacecolor())) == ([20], [10000], NONE)
    assert series(ax)["80% accuracy"] == ([20], pytest.approx([log_between(1000, 0.1 / 0.15)]))
    assert series(ax)["85% accuracy"] == ([20], pytest.approx([10000]))
    assert [(a.xy, a.xyann) for a in ax.texts] == [((20, 18000), (20, 10000))]


def test_fig9_without_censoring_has_no_censored_key(tmp_path: Path) -> None:
    fig = figures.fig9(size_summary({5: [0.7, 0.95, 0.99], 10: [0.6, 0.91, 0.98]}), pd.DataFrame(), tmp_path, MNIST)
    (ax,) = fig.axes
    assert legend(ax) == ["80% accuracy", "85% accuracy", "90% accuracy"] and not ax.texts
    assert series(ax)["90% accuracy"] == ([5, 10], pytest.approx([log_between(100, 0.8), log_between(100, 0.3 / 0.31)]))


def test_fig9_names_a_censored_only_target_once(tmp_path: Path) -> None:
    """90% is met at no bracketed size, only censored at both α: its name is in the legend once, not twice."""
    fig = figures.fig9(size_summary({20: [0.5, 0.7, 0.85], 50: [0.4, 0.6, 0.82]}), pd.DataFrame(), tmp_path, MNIST)
    assert legend(fig.axes[0]) == ["80% accuracy", "85% accuracy", "90% accuracy", CENSORED]


# --- Figures 11 and 12 ----------------------------------------------------------------------------------------


def test_fig12_draws_every_learning_rate(tmp_path: Path) -> None:
    trials = pd.DataFrame([{"alpha": a, "arch": "conv4", "lr": lr, "batch_size": 128, "source": "novel", "seed": seed,
                            "trial_id": f"t{i}", "status": "ok", "test_acc": acc + 0.02 * seed, "test_top5": 1.0}
                           for i, (a, lr, acc, seed) in enumerate(
                               (a, lr, acc, seed) for a, lr, acc in ((0, 0.01, 0.8), (10, 0.01, 0.5), (0, 0.1, 0.9),
                                                                      (10, 0.1, 0.7)) for seed in (0, 1))])
    fig = figures.fig12(pd.DataFrame(), trials, tmp_path, MNIST)
    only_file(tmp_path, "fig12.png")
    (ax,) = fig.axes
    assert ax.get_title() == "MNIST, Conv4, learning rate, uniform label noise, on novel images (preset=test)"
    assert legend(ax) == ["chance (10%)", "lr 0.01", "lr 0.1"]
    drawn = series(ax)
    assert drawn["lr 0.01"] == ([0, 10], pytest.approx([81, 51])) and drawn["lr 0.1"] == ([0, 10], pytest.approx([91, 71]))
    half = 100 * 12.706 * (0.02 / math.sqrt(2)) / math.sqrt(2)  # t(0.975, 1) · std / √2, std of two runs 2 points apart
    assert bars(ax, "lr 0.1") == pytest.approx([0, 91 - half, 91 + half, 10, 71 - half, 71 + half])
    assert caption_text(fig) == (caption_line(tmp_path, "MNIST (10 classes)", "uniform label noise, on novel images")
                                 + "\nno selection: every lr drawn (test_acc) · replicates: 2")


# --- human noise ----------------------------------------------------------------------------------------------


W, A = "cifar10n:worst", "cifar10n:aggre"


def human_summary() -> pd.DataFrame:
    """exp=human_noise: per arch, uniform labels at alpha 0 (the clean set), 1 and 5; the annotators' matrix
    drawn per copy and per image, and their per-image labels per image, at 1 and 5; their per-image labels per
    copy at alpha 1 only. CIs ±1 point on conv4's rows, none on resnet18's."""
    kinds = [(np.nan, np.nan, "copy", [0, 1, 5], 0.0), (W, np.nan, "copy", [1, 5], 0.05), (W, np.nan, "image", [1, 5], 0.1),
             (np.nan, A, "copy", [1], 0.15), (np.nan, A, "image", [1, 5], 0.2)]
    rows = [{"arch": arch, "alpha": a, "matrix": matrix, "labels": labels, "draw": draw,
             "test_acc": 0.9 - 0.05 * a - drop - (0.1 if arch == "resnet18" else 0)}
            for arch in ("resnet18", "conv4") for matrix, labels, draw, alphas, drop in kinds for a in alphas]
    summary = pd.DataFrame(rows).assign(selected_on="test_acc", replicates=3)
    ci = summary["arch"] == "conv4"
    return summary.assign(test_acc_ci_low=(summary["test_acc"] - 0.01).where(ci),
                          test_acc_ci_high=(summary["test_acc"] + 0.01).where(ci))


HUMAN_KINDS = ["uniform label noise", "CIFAR-10N worst class-conditional matrix",
               "CIFAR-10N worst class-conditional matrix, one draw per image", "CIFAR-10N aggre per-image labels",
               "CIFAR-10N aggre per-image labels, one per image"]


def test_human_a_panel_per_arch_a_line_per_kind(tmp_path: Path) -> None:
    run = Run("CIFAR-10", 10, "preset=test")
    fig = figures.human(human_summary(), pd.DataFrame(), tmp_path, run)
    only_file(tmp_path, "human.png")
    assert fig.get_size_inches().tolist() == [12, 4.2] and len(fig.axes) == 2
    for ax, name, shift in zip(fig.axes, ("Conv4", "ResNet-18"), (0, 10)):
        assert ax.get_title() == f"CIFAR-10, human label noise, {name} (preset=test)"
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_ylim()) == (ALPHA, "Prediction accuracy (%)", (0, 100))
        assert ax.title.get_fontsize() == 10 and legend_layout(ax) == BESIDE
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "5"]
        drawn = series(ax)
        assert drawn["uniform label noise"] == ([0, 1, 5], pytest.approx([90 - shift, 85 - shift, 65 - shift]))
        assert drawn[HUMAN_KINDS[1]] == ([0, 1, 5], pytest.approx([90 - shift, 80 - shift, 60 - shift]))  # alpha 0 shared
        assert drawn[HUMAN_KINDS[2]] == ([0, 1, 5], pytest.approx([90 - shift, 75 - shift, 55 - shift]))
        assert drawn[HUMAN_KINDS[3]] == ([0, 1], pytest.approx([90 - shift, 70 - shift]))
        assert drawn[HUMAN_KINDS[4]] == ([0, 1, 5], pytest.approx([90 - shift, 65 - shift, 45 - shift]))
        assert drawn["chance (10%)"][1] == pytest.approx([10, 10])
        chance = line(ax, "chance (10%)")
        assert (to_rgba(chance.get_color()), chance.get_linestyle(), chance.get_linewidth()) == (to_rgba("grey"), ":", 1)
        assert all(line(ax, kind).get_marker() == "o" for kind in HUMAN_KINDS)
    conv4, resnet = fig.axes
    assert legend(conv4) == ["chance (10%)", *HUMAN_KINDS]  # error bars (conv4): after the chance line
    assert legend(resnet) == [*HUMAN_KINDS, "chance (10%)"]
    assert bars(conv4, HUMAN_KINDS[2]) == pytest.approx([0, 89, 91, 1, 74, 76, 5, 54, 56])
    assert not resnet.containers
    assert caption_text(fig) == (f"run {tmp_path.resolve().name} · preset=test · CIFAR-10 (10 classes) · "
                                 f"{' / '.join(HUMAN_KINDS)}\n{PAPER_RULE} · replicates: 3")


def test_human_one_panel_and_no_chance_line_without_a_class_count(tmp_path: Path) -> None:
    """Uniform labels at alpha 0 only (the clean set): named from their own rows, not the study's noise section."""
    summary = human_summary()
    summary = summary[(summary["arch"] == "resnet18") & (summary["labels"].isna() & (summary["draw"] == "copy"))
                      & ((summary["alpha"] == 0) | summary["matrix"].notna())]
    run = Run("my_images", None, "preset=smoke", {"matrix": W})
    fig = figures.human(summary, pd.DataFrame(), tmp_path, run)
    (ax,) = fig.axes
    assert fig.get_size_inches().tolist() == [6, 4.2]
    assert ax.get_title() == "my_images, human label noise, ResNet-18 (preset=smoke)"
    assert legend(ax) == HUMAN_KINDS[:2]  # no chance line
    assert series(ax) == {HUMAN_KINDS[0]: ([0], [pytest.approx(80)]), HUMAN_KINDS[1]: ([0, 1, 5], pytest.approx([80, 70, 50]))}
