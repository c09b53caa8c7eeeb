"""Structured label noise (§3.2, Fig. 4): the distribution's properties, its sampling, its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from errors import UsageError
from loaders import data
from loaders.noise import (NoiseModel, NoiseSpec, copy_distribution, distribution, structured_distribution, thresholds,
                           uniform_distribution, wrong_class_order)
from study import launch
from tests.conftest import trial_config

M = 10
CASES = [(20, 0.0), (20, 0.3), (20, 1.0), (10, 1.0), (100, 0.5), (5, 0.5), (3.5, 0.35)]


def correct_probability(m: int, alpha: float) -> float:
    return 1 / (1 + alpha) + alpha / (m * (1 + alpha))


def chi_square_p(observed: np.ndarray, expected: np.ndarray) -> float:
    """p-value of Pearson's chi-square test (cells with zero expectation must be observed zero)."""
    assert (observed[expected == 0] == 0).all()
    keep = expected > 0
    stat = float((((observed - expected) ** 2)[keep] / expected[keep]).sum())
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), torch.tensor(stat / 2, dtype=torch.float64)))


@pytest.mark.parametrize("kind", ["random", "confusing", "reverse"])
@pytest.mark.parametrize("alpha,delta", CASES)
def test_rows_are_distributions_and_keep_the_correct_probability(alpha: float, delta: float, kind: str) -> None:
    confusion = np.random.default_rng(1).integers(0, 50, (M, M))
    target = structured_distribution(M, alpha, delta, wrong_class_order(kind, M, 0, confusion))
    assert target.shape == (M, M) and (target >= -1e-15).all()
    np.testing.assert_allclose(target.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(target), correct_probability(M, alpha), atol=1e-12)
    per_copy = copy_distribution(target, alpha)
    np.testing.assert_allclose(per_copy.sum(1), 1.0, atol=1e-12)
    # The clean copy plus alpha noisy copies drawn from D give the target exactly.
    np.testing.assert_allclose(np.eye(M) / (1 + alpha) + alpha / (1 + alpha) * per_copy, target, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 5, 20, 100])
def test_delta_zero_is_uniform(alpha: float) -> None:
    order = wrong_class_order("random", M, 3, None)
    target = structured_distribution(M, alpha, 0.0, order)
    u = alpha / (M * (1 + alpha))
    np.testing.assert_allclose(target, np.full((M, M), u) + np.eye(M) / (1 + alpha), atol=1e-15)
    assert (distribution(NoiseSpec(alpha=alpha, delta=0.0, order="random"), M) == uniform_distribution(M)).all()


def test_delta_zero_labels_are_bit_identical_to_uniform_noise() -> None:
    labels = torch.arange(200) % M
    v = torch.arange(200 * 21)
    plain = NoiseModel(NoiseSpec(alpha=20, seed=5), labels, M, dist=uniform_distribution(M))
    structured = NoiseModel(NoiseSpec(alpha=20, seed=5, delta=0.0, order="reverse"), labels, M)
    assert torch.equal(plain(v)[1], structured(v)[1])


@pytest.mark.parametrize("alpha", [10, 20, 100])
def test_delta_one_makes_the_top_wrong_class_as_likely_as_the_correct_one(alpha: float) -> None:
    order = wrong_class_order("random", M, 0, None)
    target = structured_distribution(M, alpha, 1.0, order)
    for c in range(M):
        assert target[c, order[c, 0]] == pytest.approx(target[c, c], abs=1e-12)
        assert np.delete(target[c], [c, order[c, 0]]).max() < target[c, c]


def test_wrong_classes_fall_linearly_in_the_chosen_order() -> None:
    confusion = np.random.default_rng(2).permutation(M * M).reshape(M, M)  # no ties
    for kind in ("confusing", "reverse", "random"):
        order = wrong_class_order(kind, M, 7, confusion)
        target = structured_distribution(M, 20, 0.6, order)
        for c in range(M):
            assert sorted(order[c]) == [j for j in range(M) if j != c]
            steps = np.diff(target[c, order[c]])
            assert (steps < 0).all() and np.allclose(steps, steps[0])  # linear, decreasing
    confusing = wrong_class_order("confusing", M, 0, confusion)
    for c in range(M):  # most confused first: confusion[c, j] = test images of class c predicted as j
        assert list(confusion[c, confusing[c]]) == sorted(confusion[c, confusing[c]], reverse=True)
    np.testing.assert_array_equal(wrong_class_order("reverse", M, 0, confusion), confusing[:, ::-1])


def test_random_order_is_fixed_by_the_noise_seed() -> None:
    first = wrong_class_order("random", M, 11, None)
    assert (wrong_class_order("random", M, 11, None) == first).all()
    assert (wrong_class_order("random", M, 12, None) != first).any()


def test_ties_in_the_confusion_matrix_break_by_class_index() -> None:
    order = wrong_class_order("confusing", 4, 0, np.zeros((4, 4)))
    np.testing.assert_array_equal(order, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


@pytest.mark.parametrize("alpha,delta", [(5, 1.0), (0, 0.1), (9.9, 1.0), (2, 0.3)])
def test_infeasible_combinations_are_rejected(alpha: float, delta: float) -> None:
    order = wrong_class_order("random", M, 0, None)
    with pytest.raises(UsageError, match=rf"noise.delta={delta}.*noise.alpha={alpha}.*alpha/m"):
        structured_distribution(M, alpha, delta, order)
    structured_distribution(M, alpha, alpha / M, order)  # the boundary itself is feasible


@pytest.mark.parametrize("fields,match", [({"delta": 1.5}, r"noise.delta=1.5.*\[0, 1\]"),
                                          ({"delta": -0.1}, r"noise.delta=-0.1"),
                                          ({"order": "sideways"}, r"noise.order='sideways'.*confusing, reverse, random"),
                                          ({"delta": 0.5, "source": "white"}, r"noise.delta=0.5.*source=white")])
def test_bad_spec_values_are_rejected(fields: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        NoiseSpec(alpha=20, **fields)


def test_two_classes_admit_no_structure() -> None:
    with pytest.raises(UsageError, match="at least 3 classes"):
        structured_distribution(2, 20, 0.5, np.array([[1], [0]]))


def test_sampled_label_frequencies_match_the_distribution() -> None:
    """Chi-square per true class: noisy copies against D, all copies against the target."""
    alpha, delta, per_class = 20, 0.8, 300
    spec = NoiseSpec(alpha=alpha, seed=9, delta=delta, order="random")
    labels = torch.arange(M * per_class) % M
    model = NoiseModel(spec, labels, M)
    _, noisy = model(torch.arange(model.n_virtual))
    true = labels.repeat(1 + alpha)
    per_copy = distribution(spec, M)
    target = structured_distribution(M, alpha, delta, wrong_class_order("random", M, 9, None))
    p_values = []
    for c in range(M):
        is_noisy_copy = (true == c) & (torch.arange(model.n_virtual) >= model.n)
        counts = np.bincount(noisy[is_noisy_copy].numpy(), minlength=M)
        p_values.append(chi_square_p(counts, per_copy[c] * counts.sum()))
        all_counts = np.bincount(noisy[true == c].numpy(), minlength=M)
        np.testing.assert_allclose(all_counts / all_counts.sum(), target[c], atol=0.012)
    # Ten independent tests: all above 1e-4 unless the sampler is off.
    assert min(p_values) > 1e-4, p_values


def test_confusing_order_reads_the_confusion_artifact(tmp_path: Path) -> None:
    confusion = np.random.default_rng(4).permutation(M * M).reshape(M, M)
    path = tmp_path / "mnist.npy"
    np.save(path, confusion)
    spec = NoiseSpec(alpha=20, delta=1.0, order="confusing", confusion=str(path))
    per_copy = distribution(spec, M)
    for c in range(M):
        top = max((j for j in range(M) if j != c), key=lambda j: confusion[c, j])
        assert per_copy[c].argmax() == top


def test_missing_confusion_artifact_names_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.npy"
    config = trial_config(tmp_path, noise={"alpha": 20, "delta": 0.5, "order": "confusing", "confusion": str(missing)})
    with pytest.raises(UsageError, match=rf"{missing}.*`python -m study.launch exp=confusion noise.confusion={missing}`"):
        data.check(config["data"], config["noise"])
    config["noise"]["order"] = "random"
    data.check(config["data"], config["noise"])  # random order needs no artifact


def test_structured_study_without_artifact_stops_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "absent.npy"
    code = launch.main(["exp=structured", "preset=smoke", f"noise.confusion={missing}", f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "exp=confusion" in err[0] and str(missing) in err[0]
    assert not (tmp_path / "run").exists()


def test_trial_reports_its_test_confusion_matrix(data_root: Path) -> None:
    from study.trial import Trial

    trial = Trial(trial_config(data_root, data={"n_clean": 200, "n_test": 300}, train={"epochs": 1}))
    trial.run(lambda r: None)
    (confusion,) = trial.confusion()  # one member
    assert confusion.shape == (M, M) and confusion.sum() == 300
    np.testing.assert_array_equal(confusion.sum(1), np.bincount(torch.cat([y for _, y in trial.data.test_batches()]).numpy(), minlength=M))


def test_per_copy_distribution_at_alpha_one_and_the_feasibility_boundary() -> None:
    """α = 1 (D is no longer 'any'), and m = 5, δ = α/m, where ((1 + α) T − I)/α has a −3e-17 entry: D is
    clipped to exact zeros, so its thresholds build, and it equals the closed form of copy_distribution."""
    for m, alpha, delta in ((5, 1.0, 0.2), (10, 1.0, 0.1), (3, 2.0, 0.5)):
        order = wrong_class_order("random", m, 0, None)
        per_copy = copy_distribution(structured_distribution(m, alpha, delta, order), alpha)
        assert (per_copy >= 0).all() and thresholds(per_copy)[:, -1].tolist() == [2**32] * m
        expected = np.full((m, m), 1 / m)
        for c in range(m):
            for k, wrong in enumerate(order[c], start=1):
                expected[c, wrong] = 1 / m + delta * (m - 2 * k) / (alpha * (m - 2))
        np.testing.assert_allclose(per_copy, expected, atol=1e-12)
    np.testing.assert_array_equal(copy_distribution(np.eye(4), 0), np.full((4, 4), 0.25))  # α = 0: uniform


def test_three_classes_admit_structure_and_the_bound_is_named() -> None:
    target = structured_distribution(3, 3.0, 1.0, wrong_class_order("random", 3, 0, None))
    assert target.shape == (3, 3) and (target >= 0).all()
    with pytest.raises(UsageError, match=r"alpha/m = 0\.5\b"):
        structured_distribution(M, 5, 0.6, wrong_class_order("random", M, 0, None))


@pytest.mark.parametrize("confusion", [None, "nowhere.npy"])
def test_confusing_order_without_its_artifact_names_the_command(confusion: str | None, tmp_path: Path) -> None:
    path = None if confusion is None else str(tmp_path / confusion)
    spec = NoiseSpec(alpha=20, delta=0.5, order="reverse", confusion=path)
    with pytest.raises(UsageError, match=rf"^noise.order=reverse needs a confusion matrix at noise.confusion={path}, "
                                         r"which does not exist: make it with `python -m study.launch exp=confusion`$"):
        distribution(spec, M)
