"""analysis/figures.py, every paper figure drawn from small hand-made frames whose numbers differ from
tests/test_figures.py's, with each drawn value checked against a number computed by hand in the test.

Covered: arch_label, archs, top5, by_x without CI columns, by_arch (fig2, fig3, and a direct call with its
metric), fig5 to fig12, human and confusion. Each test reads back from the returned Figure the saved file's
name, the title, the axis labels and scales, the legend names, every line's points and error bars, the chance
line, the ticks, Figure 9's open markers, arrows and tips, the confusion image, its cell texts and colour bar,
and the caption save() writes.

The run's own noise section (RUN_NOISE: noisy images from white noise) differs from the rows' (novel images,
a noise matrix), so a title or caption that names the study's noise instead of the rows' is caught. No
stand-ins: the figures are drawn for real (Agg) into tmp_path; the helpers that read a Figure back are
imported from tests/test_figures.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from analysis import figures
from analysis.describe import Run
from analysis.figures import ALPHA
from tests.test_figures import (BESIDE, CENSORED, IMAGENET, NONE, PAPER_RULE, bars, caption_text, close_all,  # noqa: F401
                                legend, legend_layout, line, log_between, only_file, series)

RUN_NOISE = Run("MNIST", 10, "preset=test", {"source": "white"})  # the study's section: white-noise images
CIFAR = Run("CIFAR-10", 10, "preset=test")
BIG = Run("ImageNet", 1000, "preset=paper")
NOVEL = "uniform label noise, on novel images"  # what the rows (source=novel) say, not the study (white)
CLEAN = "Number of clean training labels"


def head(out: Path, run: Run, noise: str) -> str:
    return f"run {out.resolve().name} · {run.scale} · {run.data} · {noise}"


def ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


# --- small helpers ---------------------------------------------------------------------------------------------


def test_arch_label_archs_and_top5_values() -> None:
    assert figures.arch_label("conv6") == "Conv6" and figures.arch_label("resnet101") == "ResNet-101"
    assert figures.arch_label("mlp4") == "MLP4"
    assert figures.arch_label("wide_resnet") == "wide_resnet" and figures.arch_label(12) == "12"  # unknown: itself
    table = pd.DataFrame({"arch": ["resnet101", "conv2", "resnet101", "vgg"]})
    assert figures.archs(table) == "Conv2, ResNet-101, vgg"  # sorted by the raw names, each once
    assert figures.archs(pd.DataFrame({"arch": ["mlp2"]})) == "MLP2"
    assert figures.archs(pd.DataFrame({"lr": [0.1, 0.2]})) == ""  # no arch column: nothing, no KeyError
    assert figures.top5(Run("four", 4, "p")) == "test_acc" and figures.top5(Run("ten", 10, "p")) == "test_top5"
    assert figures.top5(Run("unknown", None, "p")) == "test_top5"


def test_by_x_without_ci_columns_is_mean_only() -> None:
    table = pd.DataFrame({"alpha": [2, 1, 2], "test_acc": [0.2, 0.9, 0.4]})
    out = figures.by_x(table, "alpha", "test_acc")
    assert out["alpha"].tolist() == [1, 2] and out["mean"].tolist() == pytest.approx([0.9, 0.3])
    assert out[["half", "low", "high"]].isna().all().all()
    only_low = figures.by_x(table.assign(test_acc_ci_low=0.1), "alpha", "test_acc")  # one bound only: no CI
    assert only_low["mean"].tolist() == pytest.approx([0.9, 0.3]) and only_low["half"].isna().all()


# --- Figures 1-3 via by_arch -----------------------------------------------------------------------------------


def arch_rows() -> pd.DataFrame:
    """mlp2 and conv2 at alpha 0 and 20, novel noisy images; CIs -1/+3 points (top-5: -2/+1) on mlp2, none on conv2."""
    rows = [("mlp2", 0, 0.80, 0.95), ("mlp2", 20, 0.30, 0.70), ("conv2", 0, 0.97, 0.99), ("conv2", 20, 0.85, 0.93)]
    summary = pd.DataFrame([{"arch": arch, "alpha": a, "lr": 0.01, "source": "novel", "test_acc": acc, "test_top5": t5,
                             "selected_on": "test_acc", "replicates": 4 if arch == "mlp2" else 1}
                            for arch, a, acc, t5 in rows])
    ci = summary["arch"] == "mlp2"
    for metric, down, up in (("test_acc", 0.01, 0.03), ("test_top5", 0.02, 0.01)):
        summary[f"{metric}_ci_low"] = (summary[metric] - down).where(ci)
        summary[f"{metric}_ci_high"] = (summary[metric] + up).where(ci)
    return summary


def test_fig2_accuracy_per_arch_named_and_captioned(tmp_path: Path) -> None:
    fig = figures.fig2(arch_rows(), pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig2.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"MNIST, {NOVEL} (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == (ALPHA, "Prediction accuracy (%)")
    assert legend(ax) == ["Conv2", "chance (10%)", "MLP2"]  # conv2 (no CI): a plain line, before the error bars
    drawn = series(ax)
    assert drawn["MLP2"] == ([0, 20], pytest.approx([80, 30])) and drawn["Conv2"] == ([0, 20], pytest.approx([97, 85]))
    assert bars(ax, "MLP2") == pytest.approx([0, 78, 82, 20, 28, 32])  # -1/+3: a half-width of 2 about the mean
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, NOVEL) + f"\n{PAPER_RULE} · replicates: 1–4"


def test_by_arch_draws_its_metric_under_its_name(tmp_path: Path) -> None:
    fig = figures.by_arch(arch_rows(), "custom", tmp_path, BIG, metric="test_top5")
    only_file(tmp_path, "custom.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"ImageNet, {NOVEL} (preset=paper)" and ax.get_ylabel() == "Top-5 accuracy (%)"
    assert legend(ax) == ["Conv2", "chance (0.5%)", "MLP2"]
    assert series(ax)["MLP2"][1] == pytest.approx([95, 70]) and series(ax)["Conv2"][1] == pytest.approx([99, 93])
    assert bars(ax, "MLP2") == pytest.approx([0, 93.5, 96.5, 20, 68.5, 71.5])  # -2/+1: ±1.5


def test_fig3_is_top5_for_many_classes(tmp_path: Path) -> None:
    ax = figures.fig3(arch_rows(), pd.DataFrame(), tmp_path, BIG).axes[0]
    only_file(tmp_path, "fig3.png")
    assert ax.get_ylabel() == "Top-5 accuracy (%)" and series(ax)["MLP2"][1] == pytest.approx([95, 70])


# --- Figures 5-8, 10 -------------------------------------------------------------------------------------------


def structured(source: str | None) -> pd.DataFrame:
    """alpha 1 and 3, delta 0 and 0.4, random and confusing order; acc = 0.95 - 0.2 δ - 0.02 α (- 0.1 random)."""
    rows = [{"alpha": a, "delta": d, "order": o, "selected_on": "test_acc", "replicates": 2,
             "test_acc": 0.95 - 0.2 * d - 0.02 * a - (0.1 if o == "random" else 0)}
            for a in (3, 1) for d in (0.4, 0.0) for o in ("confusing", "random")]
    summary = pd.DataFrame(rows)
    return summary if source is None else summary.assign(source=source)


def test_fig5_lines_per_order_against_delta(tmp_path: Path) -> None:
    fig = figures.fig5(structured("novel"), pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig5.png")
    (ax,) = fig.axes
    assert ax.get_title() == "MNIST, structured label noise, α = 1, 3, on novel images (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Structure of the noise (δ)", "Prediction accuracy (%)")
    assert legend(ax) == ["confusing order", "random order", "chance (10%)"]
    drawn = series(ax)  # per δ the mean over α 1 and 3 (a mean α of 2): 95 - 20 δ - 4
    assert drawn["confusing order"] == ([0, 0.4], pytest.approx([91, 83]))
    assert drawn["random order"] == ([0, 0.4], pytest.approx([81, 73]))
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, "structured label noise (δ = 0.4, confusing order) / "
                                     "structured label noise (δ = 0.4, random order) / uniform label noise, "
                                     "on novel images") + f"\n{PAPER_RULE} · replicates: 2"
    plain = Run("MNIST", 10, "preset=test")  # no source anywhere: the title names none
    assert figures.fig5(structured(""), pd.DataFrame(), tmp_path, plain).axes[0].get_title() == (
        "MNIST, structured label noise, α = 1, 3 (preset=test)")
    assert figures.fig5(structured(None), pd.DataFrame(), tmp_path, plain).axes[0].get_title() == (
        "MNIST, structured label noise, α = 1, 3 (preset=test)")
    assert figures.fig5(structured("").assign(alpha=2.5), pd.DataFrame(), tmp_path, plain).axes[0].get_title() == (
        "MNIST, structured label noise, α = 2.5 (preset=test)")


def sources(names: list[str]) -> pd.DataFrame:
    """alpha 0 and 8 per source, noise matrix m.npy; the i-th source loses 2 (i + 1) points per unit of alpha/8."""
    rows = [{"alpha": a, "source": s, "matrix": "m.npy", "test_acc": 0.9 - 0.02 * (i + 1) * a / 8}
            for i, s in enumerate(names) for a in (8, 0)]
    return pd.DataFrame(rows).assign(selected_on="test_acc", replicates=5)


def test_fig6_names_each_source(tmp_path: Path) -> None:
    fig = figures.fig6(sources(["white", "same", "novel", "cifar100", "unknown"]), pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig6.png")
    (ax,) = fig.axes
    assert ax.get_title() == "MNIST, sources of noisy examples, noise matrix m.npy (preset=test)"
    assert ax.get_xlabel() == ALPHA
    assert legend(ax) == ["CIFAR-100", "Novel images", "MNIST (same dataset)", "unknown", "White noise", "chance (10%)"]
    drawn = series(ax)
    assert drawn["White noise"] == ([0, 8], pytest.approx([90, 88]))
    assert drawn["MNIST (same dataset)"][1] == pytest.approx([90, 86]) and drawn["Novel images"][1] == pytest.approx([90, 84])
    assert drawn["CIFAR-100"][1] == pytest.approx([90, 82]) and drawn["unknown"][1] == pytest.approx([90, 80])
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, "noise matrix m.npy, on white-noise images / novel images / "
                                     "CIFAR-100 images / unknown") + f"\n{PAPER_RULE} · replicates: 5"


def test_fig7_names_repeated_and_novel(tmp_path: Path) -> None:
    fig = figures.fig7(sources(["novel", "cifar100", "same"]), pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig7.png")
    (ax,) = fig.axes
    assert ax.get_title() == "MNIST, repeated vs novel noisy images, noise matrix m.npy (preset=test)"
    assert legend(ax) == ["cifar100", "Novel images", "Repeated images", "chance (10%)"]
    drawn = series(ax)
    assert drawn["Novel images"][1] == pytest.approx([90, 88]) and drawn["cifar100"][1] == pytest.approx([90, 86])
    assert drawn["Repeated images"] == ([0, 8], pytest.approx([90, 84]))
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, "noise matrix m.npy, on novel images / CIFAR-100 images") + (
        f"\n{PAPER_RULE} · replicates: 5")
    ax = figures.fig7(sources(["same", "novel", "white"]), pd.DataFrame(), tmp_path, IMAGENET).axes[0]
    assert ax.get_title() == "ImageNet, repeated vs novel noisy images, noise matrix m.npy (preset=paper)"
    assert legend(ax) == ["Novel images", "Repeated images", "white", "chance (0.1%)"]


def sizes() -> pd.DataFrame:
    """alpha 4 and 0.5 at 100, 1,000 and 10,000 clean labels, novel noisy images."""
    rows = [{"alpha": a, "n_clean": n, "source": "novel", "test_acc": acc, "test_top5": t5}
            for a, points in ((4, [(0.4, 0.75), (0.7, 0.9), (0.85, 0.97)]), (0.5, [(0.55, 0.8), (0.8, 0.92), (0.9, 0.98)]))
            for n, (acc, t5) in zip((1000, 100, 10000), [points[1], points[0], points[2]])]
    return pd.DataFrame(rows).assign(selected_on="test_acc", replicates=2)


@pytest.mark.parametrize("name,ylabel,chance,low,high", [
    ("fig8", "Prediction accuracy (%)", "chance (10%)", [55, 80, 90], [40, 70, 85]),
    ("fig10", "Top-5 accuracy (%)", "chance (50%)", [80, 92, 98], [75, 90, 97]),  # top-5 of 10 classes: 5/10
])
def test_fig8_fig10_against_clean_labels(name: str, ylabel: str, chance: str, low: list, high: list,
                                         tmp_path: Path) -> None:
    fig = figures.FIGURES[name](sizes(), pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, f"{name}.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"MNIST, accuracy vs clean labels, {NOVEL} (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()) == (CLEAN, ylabel, "log")
    assert ticks(ax) == ["100", "1,000", "10,000"]
    assert legend(ax) == ["α = 0.5", "α = 4", chance]
    drawn = series(ax)
    assert drawn["α = 0.5"] == ([100, 1000, 10000], pytest.approx(low))
    assert drawn["α = 4"] == ([100, 1000, 10000], pytest.approx(high))
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, NOVEL) + f"\n{PAPER_RULE} · replicates: 2"


# --- Figure 9 --------------------------------------------------------------------------------------------------


def critical(accs: dict[float, list[float]], ci: bool = True) -> pd.DataFrame:
    rows = [{"alpha": a, "n_clean": n, "test_acc": acc, "source": "novel"}
            for a, values in accs.items() for n, acc in zip((100, 1000, 10000), values)]
    summary = pd.DataFrame(rows).assign(selected_on="test_acc", replicates=4)
    if ci:
        summary = summary.assign(test_acc_ci_low=summary["test_acc"] - 0.01, test_acc_ci_high=summary["test_acc"] + 0.01)
    return summary


def test_fig9_points_markers_arrows_and_key(tmp_path: Path) -> None:
    """alpha 0 meets 80% at 100 labels (censored below); alpha 10 never meets 90% (censored above)."""
    summary = critical({0: [0.84, 0.88, 0.96], 10: [0.6, 0.82, 0.87]})
    fig = figures.fig9(summary, pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig9.png")
    (ax,) = fig.axes
    assert fig.get_size_inches().tolist() == [6, 4.2]
    assert ax.get_title() == f"MNIST, clean data needed, {NOVEL} (preset=test)"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == (ALPHA, "Critical number of clean labels", "log")
    assert ax.get_ylim()[0] < 55 and ax.get_ylim()[1] > 18000  # spans the arrow tips; no 0-100 axis
    assert ticks(ax) == ["0", "10"]
    assert legend(ax) == [CENSORED, "80% accuracy", "85% accuracy", "90% accuracy"]  # error bars: listed last
    drawn = series(ax)  # linear in log10(n) between the sizes around the target
    assert drawn["80% accuracy"] == ([10], pytest.approx([log_between(100, 0.2 / 0.22)]))
    assert drawn["85% accuracy"] == ([0, 10], pytest.approx([log_between(100, 0.25), log_between(1000, 0.6)]))
    assert drawn["90% accuracy"] == ([0], pytest.approx([log_between(1000, 0.25)]))
    for i, label in enumerate(["80% accuracy", "85% accuracy", "90% accuracy"]):
        drawn_line = line(ax, label)
        assert (to_rgba(drawn_line.get_color()), drawn_line.get_marker()) == (to_rgba(f"C{i}"), "o")
    # ±1 point: at alpha 10 the upper curve (+1) reaches the target first, the lower one (-1) last; at alpha 0 the
    # upper curve meets 85% already at 100 labels (censored), so that point has no bar
    assert bars(ax, "80% accuracy") == pytest.approx([10, log_between(100, 0.19 / 0.22), log_between(100, 0.21 / 0.22)])
    assert bars(ax, "85% accuracy") == pytest.approx([10, log_between(1000, 0.4), log_between(1000, 0.8)])
    hollow = [l for l in ax.get_lines() if to_rgba(l.get_markerfacecolor()) == NONE and len(l.get_xdata())]
    assert [(l.get_xdata().tolist(), l.get_ydata().tolist()) for l in hollow] == [([0], [100]), ([10], [10000])]
    assert [to_rgba(l.get_markeredgecolor()) for l in hollow] == [to_rgba("C0"), to_rgba("C2")]
    assert [(l.get_marker(), l.get_linestyle(), l.get_markersize()) for l in hollow] == [("o", "None", 7)] * 2
    tips = [l for l in ax.get_lines() if l.get_alpha() == 0]
    assert [(l.get_xdata().tolist(), l.get_ydata().tolist()) for l in tips] == [([0], [pytest.approx(55)]), ([10], [18000])]
    assert [(a.get_text(), a.xy, a.xyann) for a in ax.texts] == [("", (0, pytest.approx(55)), (0, 100)),
                                                                ("", (10, 18000), (10, 10000))]
    assert [(a.arrow_patch.get_edgecolor(), a.arrow_patch.get_linewidth()) for a in ax.texts] == [
        (to_rgba("C0"), 1), (to_rgba("C2"), 1)]
    (key,) = [l for l in ax.get_lines() if l.get_label() == CENSORED]
    assert (len(key.get_xdata()), key.get_marker(), to_rgba(key.get_markerfacecolor()),
            to_rgba(key.get_markeredgecolor())) == (0, "o", NONE, to_rgba("grey"))
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, NOVEL) + f"\n{PAPER_RULE} · replicates: 4"


def test_fig9_without_ci_columns_or_censoring(tmp_path: Path) -> None:
    """Every target bracketed at both alphas, no CI columns: plain lines, no arrows, no censored key."""
    fig = figures.fig9(critical({0: [0.7, 0.86, 0.95], 5: [0.6, 0.84, 0.92]}, ci=False), pd.DataFrame(), tmp_path, RUN_NOISE)
    (ax,) = fig.axes
    assert not ax.containers and not ax.texts
    assert legend(ax) == ["80% accuracy", "85% accuracy", "90% accuracy"]
    assert series(ax)["80% accuracy"] == ([0, 5], pytest.approx([log_between(100, 0.1 / 0.16), log_between(100, 0.2 / 0.24)]))


def test_fig9_a_target_never_bracketed_is_named_once_by_its_markers(tmp_path: Path) -> None:
    """90% is never met at alpha 20 or 40: two open markers, one legend name; 80% and 85% have a line."""
    fig = figures.fig9(critical({20: [0.5, 0.82, 0.86], 40: [0.45, 0.81, 0.88]}, ci=False), pd.DataFrame(), tmp_path, RUN_NOISE)
    (ax,) = fig.axes
    assert legend(ax) == ["80% accuracy", "85% accuracy", "90% accuracy", CENSORED]
    named = [l for l in ax.get_lines() if l.get_label() == "90% accuracy"]
    assert [(l.get_xdata().tolist(), l.get_ydata().tolist()) for l in named] == [([20], [10000])]
    hollow = [l for l in ax.get_lines() if to_rgba(l.get_markerfacecolor()) == NONE and len(l.get_xdata())]
    # the third target's colour on both markers, not the colour cycle's next ones (C0, then C2 after the tip)
    assert [to_rgba(l.get_markeredgecolor()) for l in hollow] == [to_rgba("C2")] * 2
    assert [(a.xy, a.xyann) for a in ax.texts] == [((20, 18000), (20, 10000)), ((40, 18000), (40, 10000))]


# --- Figures 11 and 12 -----------------------------------------------------------------------------------------


def test_fig11_batches_and_h_alpha_with_asymmetric_bars(tmp_path: Path) -> None:
    rows = [("ce", 64, 0, 0.92), ("ce", 64, 20, 0.62), ("ce", 512, 0, 0.9), ("ce", 512, 20, 0.4),
            ("h_alpha", 64, 0, 0.88), ("h_alpha", 64, 20, 0.75), ("h_alpha", 64, 50, 0.5)]
    summary = pd.DataFrame([{"loss": loss, "batch_size": b, "alpha": a, "arch": "mlp1", "source": "novel",
                             "test_acc": acc} for loss, b, a, acc in rows]).assign(selected_on="test_acc", replicates=2)
    h = summary["loss"] == "h_alpha"
    summary["test_acc_ci_low"] = (summary["test_acc"] - 0.02).where(h)
    summary["test_acc_ci_high"] = (summary["test_acc"] + 0.04).where(h)
    fig = figures.fig11(summary, pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig11.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"MNIST, MLP1, batch size, {NOVEL} (preset=test)"
    assert legend(ax) == ["batch 64", "batch 512", "chance (10%)", "H_α (infinite batch)"]
    assert legend_layout(ax) == BESIDE
    drawn = series(ax)
    assert drawn["batch 64"] == ([0, 20], pytest.approx([92, 62])) and drawn["batch 512"] == ([0, 20], pytest.approx([90, 40]))
    assert drawn["H_α (infinite batch)"] == ([0, 20, 50], pytest.approx([88, 75, 50]))
    assert bars(ax, "H_α (infinite batch)") == pytest.approx([0, 85, 91, 20, 72, 78, 50, 47, 53])  # -2/+4: ±3
    limit = line(ax, "H_α (infinite batch)")
    assert (to_rgba(limit.get_color()), limit.get_linestyle(), limit.get_marker()) == ((0, 0, 0, 1), "--", "s")
    assert ticks(ax) == ["0", "20", "50"]
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, NOVEL) + f"\n{PAPER_RULE} · replicates: 2"


def test_fig12_every_learning_rate_unselected(tmp_path: Path) -> None:
    cells = ((0, 0.05, 0.7), (10, 0.05, 0.4), (0, 0.5, 0.8), (10, 0.5, 0.3))
    trials = pd.DataFrame([{"alpha": a, "arch": "conv2", "lr": lr, "batch_size": 64, "source": "novel", "seed": seed,
                            "trial_id": f"t{a}-{lr}-{seed}", "status": "ok", "test_acc": acc + 0.04 * seed,
                            "test_top5": 1.0} for a, lr, acc in cells for seed in (0, 1)])
    fig = figures.fig12(pd.DataFrame(), trials, tmp_path, RUN_NOISE)
    only_file(tmp_path, "fig12.png")
    (ax,) = fig.axes
    assert ax.get_title() == f"MNIST, Conv2, learning rate, {NOVEL} (preset=test)"
    assert legend(ax) == ["chance (10%)", "lr 0.05", "lr 0.5"]
    drawn = series(ax)  # the two seeds' mean: +2 points
    assert drawn["lr 0.05"] == ([0, 10], pytest.approx([72, 42])) and drawn["lr 0.5"] == ([0, 10], pytest.approx([82, 32]))
    assert caption_text(fig) == head(tmp_path, RUN_NOISE, NOVEL) + "\nno selection: every lr drawn (test_acc) · replicates: 2"


# --- human noise -----------------------------------------------------------------------------------------------


W, A = "cifar10n:worst", "cifar10n:aggre"
KINDS = ["uniform label noise", "CIFAR-10N worst class-conditional matrix",
         "CIFAR-10N worst class-conditional matrix, one draw per image", "CIFAR-10N aggre per-image labels",
         "CIFAR-10N aggre per-image labels, one per image"]


def human_rows() -> pd.DataFrame:
    """Per arch (conv2, then mlp1 20 points lower), in NOISE_KINDS order: uniform at alpha 0, 1, 6; the worst
    matrix per copy at 1, 6 and per image at 6; the aggre labels per copy at 1 and per image at 1, 6.
    CIs -1/+3 points on conv2, none on mlp1."""
    kinds = [(None, None, "copy", {0: 0.9, 1: 0.85, 6: 0.6}), (W, None, "copy", {1: 0.8, 6: 0.5}),
             (W, None, "image", {6: 0.45}), (None, A, "copy", {1: 0.7}), (None, A, "image", {1: 0.75, 6: 0.4})]
    rows = [{"arch": arch, "alpha": a, "matrix": matrix, "labels": labels, "draw": draw,
             "test_acc": acc - (0.2 if arch == "mlp1" else 0)}
            for arch in ("conv2", "mlp1") for matrix, labels, draw, accs in kinds for a, acc in accs.items()]
    summary = pd.DataFrame(rows).assign(selected_on="test_acc", replicates=3)
    ci = summary["arch"] == "conv2"
    return summary.assign(test_acc_ci_low=(summary["test_acc"] - 0.01).where(ci),
                          test_acc_ci_high=(summary["test_acc"] + 0.03).where(ci))


def test_human_panels_lines_chance_and_caption(tmp_path: Path) -> None:
    fig = figures.human(human_rows(), pd.DataFrame(), tmp_path, CIFAR)
    only_file(tmp_path, "human.png")
    assert fig.get_size_inches().tolist() == [12, 4.2] and len(fig.axes) == 2
    for ax, name, drop in zip(fig.axes, ("Conv2", "MLP1"), (0, 20)):
        assert ax.get_title() == f"CIFAR-10, human label noise, {name} (preset=test)" and ax.title.get_fontsize() == 10
        assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_ylim()) == (ALPHA, "Prediction accuracy (%)", (0, 100))
        assert legend_layout(ax) == BESIDE and ticks(ax) == ["0", "1", "6"]
        drawn = series(ax)  # every kind starts at the shared alpha 0 point
        assert drawn[KINDS[0]] == ([0, 1, 6], pytest.approx([90 - drop, 85 - drop, 60 - drop]))
        assert drawn[KINDS[1]] == ([0, 1, 6], pytest.approx([90 - drop, 80 - drop, 50 - drop]))
        assert drawn[KINDS[2]] == ([0, 6], pytest.approx([90 - drop, 45 - drop]))
        assert drawn[KINDS[3]] == ([0, 1], pytest.approx([90 - drop, 70 - drop]))
        assert drawn[KINDS[4]] == ([0, 1, 6], pytest.approx([90 - drop, 75 - drop, 40 - drop]))
        assert drawn["chance (10%)"] == ([0, 1], [10, 10])  # axhline: axes x from 0 to 1 at 10%
        chance = line(ax, "chance (10%)")
        assert (to_rgba(chance.get_color()), chance.get_linestyle(), chance.get_linewidth()) == (to_rgba("grey"), ":", 1)
        assert [line(ax, kind).get_marker() for kind in KINDS] == ["o"] * 5
    conv2, mlp1 = fig.axes
    assert legend(conv2) == ["chance (10%)", *KINDS] and legend(mlp1) == [*KINDS, "chance (10%)"]
    assert bars(conv2, KINDS[4]) == pytest.approx([0, 88, 92, 1, 73, 77, 6, 38, 42])  # -1/+3: ±2
    assert bars(conv2, KINDS[3]) == pytest.approx([0, 88, 92, 1, 68, 72])
    assert not mlp1.containers
    assert caption_text(fig) == head(tmp_path, CIFAR, " / ".join(KINDS)) + f"\n{PAPER_RULE} · replicates: 3"


def test_human_clean_only_uniform_is_named_from_its_rows(tmp_path: Path) -> None:
    """Uniform labels at alpha 0 only, the aggre labels per image at 2 and 4, a study whose section names the aggre
    labels and no class count: the uniform point is still 'uniform label noise'; no chance line."""
    summary = human_rows()
    summary = summary[(summary["arch"] == "mlp1") & (summary["draw"] == "image") & summary["labels"].notna()]
    clean = human_rows().iloc[[0]].assign(arch="mlp1")
    summary = pd.concat([clean, summary.assign(alpha=summary["alpha"].map({1: 2, 6: 4}))], ignore_index=True)
    run = Run("my_images", None, "preset=smoke", {"labels": A})
    fig = figures.human(summary, pd.DataFrame(), tmp_path, run)
    (ax,) = fig.axes
    assert fig.get_size_inches().tolist() == [6, 4.2]
    assert ax.get_title() == "my_images, human label noise, MLP1 (preset=smoke)"
    assert legend(ax) == [KINDS[0], KINDS[4]]
    assert series(ax)[KINDS[0]] == ([0], [pytest.approx(90)])
    assert series(ax)[KINDS[4]] == ([0, 2, 4], pytest.approx([90, 55, 20]))


def test_human_draws_no_line_for_a_kind_an_arch_lacks(tmp_path: Path) -> None:
    """mlp1 without the per-image-label kinds: its panel has no one-point clean line standing in for them (the bug:
    each took the clean rows' label, and mlp1's legend read 'uniform label noise' three times)."""
    summary = human_rows()
    summary = summary[~((summary["arch"] == "mlp1") & summary["labels"].notna())]
    conv2, mlp1 = figures.human(summary, pd.DataFrame(), tmp_path, CIFAR).axes
    assert legend(conv2) == ["chance (10%)", *KINDS]
    assert legend(mlp1) == [*KINDS[:3], "chance (10%)"]
    assert series(mlp1)[KINDS[2]] == ([0, 6], pytest.approx([70, 25]))


# --- confusion -------------------------------------------------------------------------------------------------


def test_confusion_rows_normalised_by_their_own_sums(tmp_path: Path) -> None:
    counts = np.array([[50, 49, 1, 0],  # 100 examples: 49% and exactly 1% labelled
                       [0, 0, 0, 0],  # none: a row of 0%, not NaN
                       [0, 1, 0, 0],  # one example, confused: 100%
                       [3, 0, 1, 396]])  # 400: 0.75% and 0.25% are under 1%, unlabelled
    np.save(tmp_path / "confusion.npy", counts)
    fig = figures.confusion(pd.DataFrame(), pd.DataFrame(), tmp_path, RUN_NOISE)
    only_file(tmp_path, "confusion.png")
    ax, bar_ax = fig.axes
    assert fig.get_size_inches().tolist() == [5.2, 4.6]
    (image,) = ax.images
    expected = np.array([[50, 49, 1, 0], [0, 0, 0, 0], [0, 100, 0, 0], [0.75, 0, 0.25, 99]])
    np.testing.assert_allclose(np.ma.getdata(image.get_array()), expected)
    assert not np.ma.getmaskarray(image.get_array()).any() and image.get_cmap().name == "Blues"
    assert [(t.get_position(), t.get_text()) for t in ax.texts] == [((1, 0), "49"), ((2, 0), "1"), ((1, 2), "100")]
    assert [(t.get_ha(), t.get_va(), t.get_fontsize()) for t in ax.texts] == [("center", "center", 7)] * 3
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted class", "True class")
    assert ax.get_xticks().tolist() == [0, 1, 2, 3] and ax.get_yticks().tolist() == [0, 1, 2, 3]
    assert ax.get_title() == "MNIST: test confusion, % of each true class (preset=test)" and ax.title.get_fontsize() == 10
    assert image.colorbar is not None and image.colorbar.ax is bar_ax and bar_ax.get_ylabel() == "%"
    assert (image.colorbar.vmin, image.colorbar.vmax) == (0, 100)
    # no rows: the study's own noise section (white-noise images) is what the caption names
    assert caption_text(fig) == (head(tmp_path, RUN_NOISE, "uniform label noise, on white-noise images")
                                 + "\nno selection (summed test confusion) · replicates: n/a")
