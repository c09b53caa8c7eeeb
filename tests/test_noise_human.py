"""noise.matrix and noise.labels: bit-identical labels on every backend, their statistics, CIFAR-10N, bad files."""

from __future__ import annotations

import re

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ffcv.pipeline.compiler import Compiler

from errors import UsageError
from analysis.summary import kind_of
from loaders import annotations, backends, data, datasets
from loaders.ffcv_ops import Relabel
from loaders.noise import DRAWS, NoiseModel, NoiseSpec, distribution, structured_distribution, copy_distribution, wrong_class_order
from tests.conftest import trial_config

CPU = torch.device("cpu")
CHI2_9_P1E5 = 37.3  # chi-square quantile, 9 dof, p = 1e-5
M = 10


def random_votes(n: int, rng: np.random.Generator, r_max: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Annotations of n images, 1..r_max each, padded with -1."""
    counts = rng.integers(1, r_max + 1, n)
    labels = rng.integers(0, M, (n, r_max))
    labels[np.arange(r_max) >= counts[:, None]] = -1
    return torch.from_numpy(labels), torch.from_numpy(counts)


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
@pytest.mark.parametrize("source", ["same", "novel"])
@pytest.mark.parametrize("draw", DRAWS)
def test_numba_votes_equal_torch_votes(seed: int, source: str, draw: str) -> None:
    rng = np.random.default_rng(seed)
    n = 500
    clean = torch.from_numpy(rng.integers(0, M, n))
    pool = torch.from_numpy(rng.integers(0, M, 3 * n)) if source == "novel" else None
    votes = random_votes(n + (3 * n if source == "novel" else 0), rng)
    models = [NoiseModel(NoiseSpec(alpha=3, seed=s, source=source, labels="x", draw=draw), clean, M, pool_labels=pool,
                         votes=votes) for s in (seed, seed ^ 0x5BD1E995)]
    v = np.arange(4 * n, dtype=np.int64)
    if source == "same":  # far past n_virtual: the high word of the hash too
        v = np.concatenate([v, rng.integers(0, 2**62, 20_000)])
    src, want = models[0](torch.from_numpy(v))
    relabel = Compiler.compile(Relabel(models).generate_code())
    decoded = models[0].rows[src].numpy().reshape(-1, 1).copy()
    got = relabel(decoded, np.empty((len(v), 2), np.int64), v)
    assert np.array_equal(got[:, 0], want.numpy())
    assert np.array_equal(got[:, 1], models[1](torch.from_numpy(v))[1].numpy())
    assert not np.array_equal(got[:, 0], got[:, 1])  # the seed matters


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
@pytest.mark.parametrize("source", ["same", "novel", "cifar100"])
def test_numba_tied_labels_equal_torch_labels(seed: int, source: str) -> None:
    """noise.draw=image through the FFCV op: bit-identical to NoiseModel for a matrix (cifar100: the uniform row
    of images with no class), past n_virtual and 2**32 too, and each member (seed) draws its own."""
    rng = np.random.default_rng(seed)
    n = 1000
    matrix = rng.dirichlet(np.ones(M), size=M)
    clean = torch.from_numpy(rng.integers(0, M, n))
    pool = torch.from_numpy(rng.integers(-1 if source == "cifar100" else 0, M, 4 * n))
    models = [NoiseModel(NoiseSpec(alpha=4, seed=s, source=source, draw="image"), clean, M, matrix, pool_labels=pool)
              for s in (seed, seed ^ 0x5BD1E995)]
    v = np.arange(5 * n, dtype=np.int64)
    if source != "novel":
        v = np.concatenate([v, rng.integers(0, 2**62, 20_000), 2**32 + np.arange(-100, 100)])
    src, want = models[0](torch.from_numpy(v))
    relabel = Compiler.compile(Relabel(models).generate_code())
    got = relabel(models[0].rows[src].numpy().reshape(-1, 1).copy(), np.empty((len(v), 2), np.int64), v)
    assert np.array_equal(got[:, 0], want.numpy())
    assert np.array_equal(got[:, 1], models[1](torch.from_numpy(v))[1].numpy())
    assert not np.array_equal(got[:, 0], got[:, 1])


def epoch(loader) -> Counter:
    pairs = Counter()
    for x, y in loader:
        pairs.update(zip((hash(img.numpy().tobytes()) for img in x), y[0].tolist()))
    return pairs


@pytest.mark.parametrize("kind,draw", [("matrix", "copy"), ("labels", "copy"), ("matrix", "image"), ("labels", "image")])
def test_one_epoch_identical_across_backends(data_root: Path, cache: Path, kind: str, draw: str) -> None:
    mnist = datasets.load("mnist", data_root, train=True)
    rng = np.random.default_rng(1)
    clean = datasets.stratified_subset(mnist.labels, 300, 0)
    spec = NoiseSpec(alpha=2.5, seed=11, draw=draw, **{kind: "x"})
    matrix = rng.dirichlet(np.ones(M), size=M)
    votes = random_votes(300, rng)
    noise = lambda: NoiseModel(spec, mnist.labels[clean], M, matrix, votes=votes if kind == "labels" else None)  # noqa: E731
    cfg = {"dataset": "mnist", "cache": str(cache), "workers": 2}
    runs = {b: epoch(backends.make({**cfg, "backend": b}, "mnist", mnist, clean, [noise()], 128, 3, CPU))
            for b in ("tensor", "torch", "ffcv")}
    assert sum(runs["tensor"].values()) == spec.n_virtual(300)
    assert runs["ffcv"] == runs["tensor"] == runs["torch"]


def test_matrix_draws_follow_the_matrix_chi_square() -> None:
    """Per true class, the noisy copies' label histogram against the matrix row: chi-square, 9 dof."""
    rng = np.random.default_rng(3)
    matrix = rng.dirichlet(np.full(M, 2.0), size=M)
    clean = torch.arange(2000) % M
    noise = NoiseModel(NoiseSpec(alpha=20, seed=5, matrix="x"), clean, M, matrix)
    _, labels = noise(torch.arange(noise.n, noise.n_virtual))
    true = clean.repeat(20)
    for c in range(M):
        observed = np.bincount(labels[true == c].numpy(), minlength=M)
        expected = matrix[c] * observed.sum()
        keep = expected > 0
        assert ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum() < CHI2_9_P1E5


def test_tied_draws_one_label_per_image_from_the_matrix() -> None:
    """noise.draw=image: every noisy copy of an image carries one label; those per-image labels follow the
    matrix (per true class, chi-square over 2,000 images, 9 dof, p = 1e-5); they are drawn apart from the
    per-copy draws of the same seed and from another seed's (each agrees with them no more often than chance
    would, sum_k D[c,k]^2, to within 5 binomial standard deviations)."""
    rng = np.random.default_rng(6)
    matrix = rng.dirichlet(np.full(M, 2.0), size=M)
    n, alpha = 20_000, 3.5  # a fractional alpha: the last round's copies spread over the images, still tied
    clean = torch.arange(n) % M
    tied = NoiseModel(NoiseSpec(alpha=alpha, seed=5, matrix="x", draw="image"), clean, M, matrix)
    v = torch.arange(tied.n, tied.n_virtual)
    source, labels = tied(v)
    per_image = torch.full((n,), -1).scatter_(0, source, labels)
    assert torch.equal(labels, per_image[source])  # one label per image, whichever copy
    for c in range(M):
        observed = np.bincount(per_image[clean == c].numpy(), minlength=M)
        expected = matrix[c] * observed.sum()
        assert ((observed - expected) ** 2 / expected).sum() < CHI2_9_P1E5
    chance = float((matrix[clean.numpy()] ** 2).sum(1).mean())  # P(two independent draws agree)
    bound = 5 * np.sqrt(chance * (1 - chance) / n)
    for seed, draw in ((5, "copy"), (6, "image")):
        other = NoiseModel(NoiseSpec(alpha=alpha, seed=seed, matrix="x", draw=draw), clean, M, matrix)(v)[1]
        first = (v - n) < n  # one copy per image: the first round
        assert abs((other[first] == labels[first]).double().mean().item() - chance) < bound


def test_structured_noise_is_its_matrix(tmp_path: Path) -> None:
    """delta/order is a special case of noise.matrix: its matrix written to a file gives the same labels."""
    spec = NoiseSpec(alpha=20, seed=3, delta=0.6, order="random")
    dist = distribution(spec, M)
    np.save(tmp_path / "d.npy", dist)
    as_file = NoiseSpec(alpha=20, seed=3, matrix=str(tmp_path / "d.npy"))
    assert np.allclose(distribution(as_file, M), dist, atol=1e-15)
    clean = torch.arange(1000) % M
    v = torch.arange(21_000)
    assert torch.equal(NoiseModel(spec, clean, M)(v)[1], NoiseModel(as_file, clean, M)(v)[1])
    order = wrong_class_order("random", M, 3, None)
    assert np.allclose(dist, copy_distribution(structured_distribution(M, 20, 0.6, order), 20))


def test_votes_are_only_the_image_s_own_and_each_equally_likely(tmp_path: Path) -> None:
    """From a CSV with repeats (1-4 annotations per image): every noisy copy carries one of its image's
    annotations, and the r of an image are picked equally often (chi-square over all images' picks)."""
    rng = np.random.default_rng(4)
    n, alpha = 400, 30
    counts = rng.integers(1, 5, n)
    rows = [(i, int(rng.integers(0, M))) for i in range(n) for _ in range(counts[i])]
    order = rng.permutation(len(rows))
    (tmp_path / "votes.csv").write_text("index,label\n" + "".join(f"{rows[k][0]},{rows[k][1]}\n" for k in order))
    votes = annotations.load_votes(str(tmp_path / "votes.csv"), n, M, "")
    assert votes.counts.tolist() == counts.tolist()
    for i, label in rows:
        assert label in votes.labels[i, :votes.counts[i]]
    clean = torch.from_numpy(rng.integers(0, M, n))
    noise = NoiseModel(NoiseSpec(alpha=alpha, seed=8, labels="x"), clean, M,
                       votes=(torch.from_numpy(votes.labels), torch.from_numpy(votes.counts)))
    v = torch.arange(n * (1 + alpha))
    source, labels = noise(v)
    assert torch.equal(labels[:n], clean)
    stat, dof = 0.0, 0
    for i in range(n):
        got = labels[n:][source[n:] == i].numpy()
        own = votes.labels[i, :votes.counts[i]]
        assert np.isin(got, own).all()
        picks = np.bincount([int(np.flatnonzero(own == g)[0]) for g in got], minlength=len(own))
        distinct = np.unique(own, return_index=True)[1]  # repeated labels within an image merge their picks
        expected = np.array([(own == own[j]).sum() for j in distinct]) * alpha / len(own)
        stat += ((picks[distinct] - expected) ** 2 / expected).sum()
        dof += len(distinct) - 1
    assert stat < dof + 5 * np.sqrt(2 * dof)  # chi-square with dof degrees of freedom, ~5 sd


def test_cifar10n_file_matrix_and_subset_keep_original_index(cifar10_root: Path) -> None:
    if not (cifar10_root / annotations.CIFAR10N_FILE).is_file():
        pytest.skip(f"no {annotations.CIFAR10N_FILE} under {cifar10_root}")
    human = annotations.cifar10n(str(cifar10_root))
    matrix = annotations.load_matrix("cifar10n:random", M, str(cifar10_root))
    assert np.allclose(matrix.sum(1), 1)
    wrong = np.mean([(human[f"random_label{k}"] != human["clean_label"]).mean() for k in (1, 2, 3)])
    assert 1 - np.diag(matrix).mean() == pytest.approx(wrong, abs=0.01)  # balanced classes: 17.7% wrong
    worst = annotations.load_matrix("cifar10n:worst", M, str(cifar10_root))
    assert 1 - np.diag(worst).mean() == pytest.approx(0.402, abs=0.01)
    cfg = trial_config(cifar10_root, data={"dataset": "cifar10", "n_clean": 500, "n_val": 100, "n_test": 100,
                                           "backend": "tensor"})["data"]
    built = data.build(cfg, [{"alpha": 4, "seed": 2, "labels": "cifar10n:random"}], CPU, 128, 0)
    full = datasets.load("cifar10", cifar10_root, train=True)
    clean_index, _ = data.clean_and_val(full.labels, cfg)
    assert torch.equal(torch.from_numpy(human["clean_label"][clean_index.numpy()]), full.labels[clean_index])
    noise = built.noises[0]
    source, labels = noise(torch.arange(noise.n, noise.n_virtual))
    original = clean_index[source].numpy()
    own = np.stack([human[f"random_label{k}"][original] for k in (1, 2, 3)], 1)
    assert (own == labels.numpy()[:, None]).any(1).all()
    assert (labels.numpy() != full.labels[clean_index][source].numpy()).mean() == pytest.approx(0.177, abs=0.03)


@pytest.mark.parametrize("content,message", [
    (np.ones((3, 3)) / 3, "has shape (3, 3)"),
    (np.full((M, M), 0.2) - 0.1 * np.eye(M) * 3, "entry [0, 0] = -0.1"),
    (np.full((M, M), 0.2), "row 0 summing to 2"),
])
def test_bad_matrix_one_line(tmp_path: Path, content: np.ndarray, message: str) -> None:
    np.savetxt(tmp_path / "m.csv", content, delimiter=",")
    with pytest.raises(UsageError, match=r"noise\.matrix=.*m\.csv") as err:
        distribution(NoiseSpec(alpha=1, matrix=str(tmp_path / "m.csv")), M)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_labels_and_combinations_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.full((5, 2), 10))
    with pytest.raises(UsageError, match=r"v\.npy' is invalid: it must be labels in \[0, 10\) \(it gives image 0 the label 10\)"):
        annotations.load_votes(str(tmp_path / "v.npy"), 5, M, "")
    with pytest.raises(UsageError, match="holds annotations for 5 images, but the training split has 6"):
        annotations.load_votes(str(tmp_path / "v.npy"), 6, M, "")
    (tmp_path / "v.csv").write_text("0,1\n7,2\n")
    with pytest.raises(UsageError, match=r"v\.csv' is invalid: it must be indices in \[0, 5\), the training split \(it names image 7\)"):
        annotations.load_votes(str(tmp_path / "v.csv"), 5, M, "")
    with pytest.raises(UsageError, match="cifar10n:random, cifar10n:worst, cifar10n:aggre"):
        annotations.load_votes("cifar10n:best", 5, M, "")
    with pytest.raises(UsageError, match="noise.delta=0.5 and noise.matrix=m.npy are two ways"):
        NoiseSpec(alpha=20, delta=0.5, matrix="m.npy")
    with pytest.raises(UsageError, match="noise.labels=v.npy needs images with a true class"):
        NoiseSpec(alpha=2, labels="v.npy", source="white")
    with pytest.raises(UsageError, match=r"^noise.draw=image ties a label to an image, but with noise.source=white .*"
                                         r"use noise.draw=copy, or source=same, novel or cifar100$"):
        NoiseSpec(alpha=2, draw="image", source="white")
    with pytest.raises(UsageError, match=r"^noise.draw='tied' is unknown: choose one of copy, image$"):
        NoiseSpec(alpha=2, draw="tied")
    with pytest.raises(UsageError, match="CIFAR-10N annotations not found at"):
        annotations.cifar10n(str(tmp_path), download=False)


def test_csv_image_without_annotation_is_named(data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("".join(f"{i},{i % 10}\n" for i in range(1, 60_000)))  # image 0 has none
    cfg = trial_config(data_root, data={"n_clean": None, "backend": "tensor"})["data"]
    with pytest.raises(UsageError, match="gives no annotation for training image 0"):
        data.build(cfg, [{"alpha": 1, "seed": 0, "labels": str(tmp_path / "v.csv")}], CPU, 128, 0)


@pytest.mark.slow
def test_human_noise_smoke_study_yields_its_figure_and_claim(cifar10_root: Path, tmp_path: Path, ray_tmpdir: str) -> None:
    """exp=human_noise preset=smoke through the launcher on real CIFAR-10 and CIFAR-10N (about 3 CPU minutes)."""
    from tests.helpers import launch

    if not (cifar10_root / annotations.CIFAR10N_FILE).is_file():
        pytest.skip(f"no {annotations.CIFAR10N_FILE} under {cifar10_root}")
    run = tmp_path / "run"
    proc = launch("exp=human_noise", "preset=smoke", "data.download=false", f"run_dir={run}",
                  env={"STUDY_DATA_ROOT": str(cifar10_root), "RAY_TMPDIR": ray_tmpdir})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = pd.read_csv(run / "trials.csv")
    kinds = kind_of(trials)
    assert (trials["status"] == "ok").all()
    assert Counter(kinds) == {"uniform": 3, "matrix": 2, "matrix tied": 2, "labels tied": 2}
    uniform = trials[kinds == "uniform"].set_index("alpha")["test_acc"]
    human = trials[kinds != "uniform"].groupby("alpha")["test_acc"].min()
    assert (human > uniform.loc[human.index]).all()  # 17.7% wrong labels beat 90% wrong ones at every alpha
    assert (run / "human.png").stat().st_size > 10_000
    claims = pd.read_csv(run / "claims.csv", keep_default_na=False)
    rows = claims[claims["figure"] == "human"]
    assert len(rows) == 2
    for row in rows.itertuples():
        assert "conv6 α=2" in row.measured and "conv6 α=5" in row.measured
        low, high = map(float, re.search(r"95% CI ([-+\d.]+) to ([-+\d.]+)", row.measured).groups())
        assert row.verdict == ("held" if low > 0 else "contradicted" if high <= 0 else "inconclusive")  # 2 pairs: wide


def human_summary(fresh: float, tied: float, labels: float, std: float | None = None) -> pd.DataFrame:
    """A human_noise summary as analysis.summary makes it: uniform rows (alpha 0, 2, 5) with empty matrix and
    labels, then at alpha 2 and 5 the three human kinds: the matrix drawn per copy (accuracy `fresh`) and per
    image (`tied`), the annotations one per image (`labels`). std: every cell's spread over 3 replicates; None:
    one replicate each."""
    rows = [{"alpha": a, "arch": "conv6", "matrix": np.nan, "labels": np.nan, "draw": "copy", "test_acc": acc}
            for a, acc in ((0, 0.5), (2, 0.3), (5, 0.1))]
    for a in (2, 5):
        for matrix, votes, draw, acc in (("cifar10n:random", np.nan, "copy", fresh), ("cifar10n:random", np.nan, "image", tied),
                                         (np.nan, "cifar10n:random", "image", labels)):
            rows.append({"alpha": a, "arch": "conv6", "matrix": matrix, "labels": votes, "draw": draw, "test_acc": acc})
    summary = pd.DataFrame(rows)
    return summary if std is None else summary.assign(test_acc_std=std, replicates=3)


def human_claims():
    from analysis import claims

    return [c for c in claims.CLAIMS if c.figure == "human"]  # tied matrix − per-image; fresh − tied matrix


@pytest.mark.parametrize("fresh,tied,labels,std,held", [
    (0.50, 0.45, 0.40, None, (True, True)),     # gaps of 5 points, one replicate: ± the 2-point floor
    (0.45, 0.45, 0.50, None, (False, None)),    # per-image labels 5 points better; no repetition cost: 0 ± 2
    (0.46, 0.45, 0.44, None, (None, None)),     # 1 ± 2 points
    (0.47, 0.45, 0.43, 0.01, (True, True)),     # 2 ± 2.306·0.577 = 2 ± 1.33 points (Welch: 8 dof)
    (0.46, 0.45, 0.44, 0.01, (None, None))])    # 1 ± 1.33 points
def test_human_claim_verdict_and_figure(tmp_path: Path, fresh: float, tied: float, labels: float, std: float | None,
                                        held: tuple[bool | None, bool | None]) -> None:
    from analysis import figures
    from analysis.describe import Run

    summary = human_summary(fresh, tied, labels, std)
    for claim, gap, expected in zip(human_claims(), (tied - labels, fresh - tied), held):
        text, verdict = claim.check(summary, None, claim.tolerance)
        assert verdict is expected and f": {100 * gap:+.1f} points (95% CI " in text and "over 2 (arch, α) pairs" in text
    no_draw = summary.drop(columns="draw")  # a run from before noise.draw: every kind drawn per copy
    assert [c.check(no_draw, None, c.tolerance) for c in human_claims()] == [None, None]
    run = Run.of({"preset": "smoke", "config": {"data": {"dataset": "cifar10"}}})
    fig = figures.human(summary, None, tmp_path, run)
    lines = {l.get_label(): (list(l.get_xdata()), list(l.get_ydata())) for l in fig.axes[0].get_lines()}
    assert lines["uniform label noise"] == ([0, 2, 5], [50.0, 30.0, 10.0])
    assert lines["CIFAR-10N random per-image labels, one per image"] == ([0, 2, 5], [50.0, 100 * labels, 100 * labels])
    assert lines["CIFAR-10N random class-conditional matrix, one draw per image"][1] == [50.0, 100 * tied, 100 * tied]
    assert lines["CIFAR-10N random class-conditional matrix"][1] == [50.0, 100 * fresh, 100 * fresh]  # alpha 0 shared
    assert lines["chance (10%)"][1] == [10.0, 10.0] and (tmp_path / "human.png").stat().st_size > 10_000


def test_human_claim_text_interval_and_pairs() -> None:
    """Each row's text: the mean gap with its Welch interval over the replicates (2 ± 1.33 points), the pair count
    and each pair; α = 1 counts as noisy; a run without the tied matrix has neither row, one with only the two
    matrix kinds only the repetition row, over the one pair they share."""
    per_image, repetition = human_claims()
    summary = human_summary(0.47, 0.45, 0.43, 0.01)
    summary.loc[summary["alpha"] == 2, "alpha"] = 1
    text, held = per_image.check(summary, None, per_image.tolerance)
    assert held is True and text == ("tied matrix − per-image labels: +2.0 points (95% CI +0.7 to +3.3 points, 3 replicates) "
                                     "over 2 (arch, α) pairs (tied matrix vs per-image labels: conv6 α=1: 45.0% vs 43.0%, "
                                     "conv6 α=5: 45.0% vs 43.0%)")
    text, held = repetition.check(summary, None, repetition.tolerance)
    assert held is True and text.startswith("fresh matrix − tied matrix: +2.0 points (95% CI +0.7 to +3.3 points")
    untied = summary[summary["draw"] == "copy"]
    assert per_image.check(untied, None, per_image.tolerance) is None
    assert repetition.check(untied, None, repetition.tolerance) is None
    matrix_only = summary[summary["labels"].isna() & ~((summary["alpha"] == 5) & (summary["draw"] == "image"))]
    assert per_image.check(matrix_only, None, per_image.tolerance) is None
    text, held = repetition.check(matrix_only, None, repetition.tolerance)
    assert held is None and "over 1 (arch, α) pairs (fresh matrix vs tied matrix: conv6 α=1: 47.0% vs 45.0%)" in text
