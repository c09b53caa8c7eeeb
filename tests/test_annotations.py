"""loaders.annotations by hand: a small annotation table and the class matrix it gives, the CSV and .npy forms
read into the same padded table, and matrices read exactly (the noise they drive: tests/test_noise_human.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from errors import UsageError
from loaders import annotations
from loaders.annotations import Votes

# Four images with 2, 3, 1 and 3 annotations (-1 pads), true classes 0, 1, 2, 0, and m = 4 classes.
LABELS = np.array([[0, 1, -1], [1, 1, 2], [2, -1, -1], [0, 0, 0]])
COUNTS = np.array([2, 3, 1, 3])
CLEAN = np.array([0, 1, 2, 0])


def test_matrix_of_a_hand_built_table() -> None:
    """Row c: the share of each label among every annotation of class-c images (padding never counts: a -1
    would land in the last column); a class with none gets the uniform row."""
    got = Votes(LABELS, COUNTS).matrix(CLEAN, 4)
    want = np.array([[4 / 5, 1 / 5, 0, 0],  # image 0 (0, 1) and image 3 (0, 0, 0)
                     [0, 2 / 3, 1 / 3, 0],  # image 1 (1, 1, 2)
                     [0, 0, 1, 0],  # image 2 (2)
                     [1 / 4] * 4])  # no image of class 3
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    sub = Votes(LABELS, COUNTS).subset(np.array([3, 1]))
    assert sub.labels.tolist() == [[0, 0, 0], [1, 1, 2]] and sub.counts.tolist() == [3, 3]
    np.testing.assert_allclose(sub.matrix(CLEAN[[3, 1]], 4)[:2], [[1, 0, 0, 0], [0, 2 / 3, 1 / 3, 0]], atol=1e-15)


@pytest.mark.parametrize("header", ["", "index,label\n", "# annotators' votes\nimage, label\n"])
def test_csv_rows_in_any_order_become_the_padded_table(header: str, tmp_path: Path) -> None:
    """`index,label` rows, repeats kept in file order per image; an image without any row has count 0."""
    (tmp_path / "v.csv").write_text(header + "2,1\n0,3\n2,0\n0,3\n1,2\n")
    votes = annotations.load_votes(str(tmp_path / "v.csv"), 4, 4, "")
    assert votes.labels.tolist() == [[3, 3], [2, -1], [1, 0], [-1, -1]]
    assert votes.counts.tolist() == [2, 1, 2, 0]
    assert votes.labels.dtype == np.int64


def test_a_negative_first_index_is_no_header(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("-1,2\n0,1\n")
    with pytest.raises(UsageError, match=r"indices in \[0, 3\), the training split \(it names image -1\)"):
        annotations.load_votes(str(tmp_path / "v.csv"), 3, 4, "")


def test_npy_tables(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.array([3, 0, 2], dtype=np.int32))  # one annotation per image
    votes = annotations.load_votes(str(tmp_path / "one.npy"), 3, 4, "")
    assert votes.labels.tolist() == [[3], [0], [2]] and votes.counts.tolist() == [1, 1, 1]
    assert votes.labels.dtype == np.int64
    np.save(tmp_path / "two.npy", LABELS.clip(0))
    votes = annotations.load_votes(str(tmp_path / "two.npy"), 4, 4, "")
    assert votes.labels.tolist() == LABELS.clip(0).tolist() and votes.counts.tolist() == [3, 3, 3, 3]
    for bad, shape in ((np.zeros((3, 2)), "float64 array of shape (3, 2)"), (np.zeros((3, 0), int), "shape (3, 0)"),
                       (np.zeros((3, 1, 1), int), "shape (3, 1, 1)")):
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(UsageError, match=r"an \(n, r\) integer array, r >= 1 annotations per image \(it is a "):
            annotations.load_votes(str(tmp_path / "bad.npy"), 3, 4, "")
        with pytest.raises(UsageError, match=rf"{shape.replace('(', '[(]').replace(')', '[)]')}"):
            annotations.load_votes(str(tmp_path / "bad.npy"), 3, 4, "")
    np.save(tmp_path / "neg.npy", np.array([[0, -1]]))
    with pytest.raises(UsageError, match=r"labels in \[0, 4\) \(it gives image 0 the label -1\)"):
        annotations.load_votes(str(tmp_path / "neg.npy"), 1, 4, "")


def test_csv_shapes_refused(tmp_path: Path) -> None:
    for text, must in (("0,1,2\n", "two columns, index,label (it has 3)"), ("a,b\nx,1\n", "rows of two integers, index,label")):
        (tmp_path / "v.csv").write_text(text)
        with pytest.raises(UsageError) as err:
            annotations.load_votes(str(tmp_path / "v.csv"), 3, 4, "")
        assert str(err.value) == f"noise.labels={str(tmp_path / 'v.csv')!r} is invalid: it must be {must}"
    with pytest.raises(UsageError, match=r"an existing \.npy or \.csv file or cifar10n:<random\|worst\|aggre>"):
        annotations.load_votes(str(tmp_path / "v.txt"), 3, 4, "")


def refused(call, message: str) -> None:
    """call() raises the one-line UsageError `message`."""
    with pytest.raises(UsageError) as err:
        call()
    assert str(err.value) == message


def test_matrix_files_read_exactly(tmp_path: Path) -> None:
    matrix = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]])
    np.save(tmp_path / "m.npy", matrix.astype(np.float32))
    got = annotations.load_matrix(str(tmp_path / "m.npy"), 3, "")
    wide = matrix.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got, wide / wide.sum(1, keepdims=True))
    assert got.dtype == np.float64  # a float32 file is read as float64
    rounded = matrix + np.array([[0, 0, 4e-7], [0, 0, 0], [0, 0, 0]])  # a CSV's rounding: renormalised
    np.savetxt(tmp_path / "m.csv", rounded, delimiter=",")
    got = annotations.load_matrix(str(tmp_path / "m.csv"), 3, "")
    np.testing.assert_allclose(got, rounded / rounded.sum(1, keepdims=True), rtol=0, atol=1e-16)
    assert got.dtype == np.float64

    def bad(name: str) -> str:
        return f"noise.matrix={str(tmp_path / name)!r} is invalid: it must be "

    np.savetxt(tmp_path / "off.csv", matrix + np.array([[0, 0, 0], [0, 3e-6, 0], [0, 0, 0]]), delimiter=",")
    refused(lambda: annotations.load_matrix(str(tmp_path / "off.csv"), 3, ""),
            bad("off.csv") + "row-stochastic, every row summing to 1 (it has row 1 summing to 1.000003)")
    np.save(tmp_path / "nan.npy", np.where(np.eye(3) > 0, np.nan, 0.5))
    refused(lambda: annotations.load_matrix(str(tmp_path / "nan.npy"), 3, ""),
            bad("nan.npy") + "finite and >= 0 in every entry (it has entry [0, 0] = nan)")
    np.save(tmp_path / "neg.npy", np.array([[0.5, 0.5, 0], [0, 1.5, -0.5], [0, 0, 1]]))
    refused(lambda: annotations.load_matrix(str(tmp_path / "neg.npy"), 3, ""),
            bad("neg.npy") + "finite and >= 0 in every entry (it has entry [1, 2] = -0.5)")
    refused(lambda: annotations.load_matrix(str(tmp_path / "m.npy"), 4, ""),
            bad("m.npy") + "(4, 4), a row and a column per class of the dataset (it has shape (3, 3))")
    (tmp_path / "text.csv").write_text("a,b,c\n")
    with pytest.raises(UsageError, match=r"^noise.matrix='.*text.csv' is invalid: it must be a numeric matrix \("):
        annotations.load_matrix(str(tmp_path / "text.csv"), 3, "")
    refused(lambda: annotations.load_matrix(str(tmp_path / "m.txt"), 3, ""),
            bad("m.txt") + "an existing .npy or .csv file or cifar10n:<random|worst|aggre>")
    refused(lambda: annotations.load_matrix(str(tmp_path / "none.npy"), 3, ""),
            bad("none.npy") + "an existing .npy or .csv file or cifar10n:<random|worst|aggre>")
    for key, load in (("noise.matrix", annotations.load_matrix), ("noise.labels", None)):
        call = (lambda: annotations.load_matrix("cifar10n:best", 3, "")) if load else (
            lambda: annotations.load_votes("cifar10n:best", 5, 3, ""))
        refused(call, f"{key}='cifar10n:best' is unknown: choose one of cifar10n:random, cifar10n:worst, "
                      "cifar10n:aggre, a file")
    assert annotations.is_cifar10n("cifar10n:worst") and not annotations.is_cifar10n("votes/cifar10n:worst.npy")


def test_cifar10n_matrix_is_its_annotators_against_the_clean_labels(tmp_path: Path) -> None:
    """cifar10n:<kind> reads the named columns of CIFAR-10_human.pt: a hand-made file of five images."""
    import torch

    clean = [0, 1, 1, 2, 0]
    human = {"clean_label": clean, "random_label1": [0, 1, 2, 2, 1], "random_label2": [0, 1, 1, 2, 0],
             "random_label3": [1, 1, 1, 2, 0], "worse_label": [2, 2, 1, 2, 1], "aggre_label": clean}
    root = tmp_path / "cifar-n"
    root.mkdir()
    torch.save({k: torch.tensor(v) for k, v in human.items()}, root / annotations.CIFAR10N_FILE)
    random = annotations.load_matrix("cifar10n:random", 3, str(root))
    np.testing.assert_allclose(random, [[4 / 6, 2 / 6, 0], [0, 5 / 6, 1 / 6], [0, 0, 1]], atol=1e-15)
    worst = annotations.load_matrix("cifar10n:worst", 3, str(root))
    np.testing.assert_allclose(worst, [[0, 1 / 2, 1 / 2], [0, 1 / 2, 1 / 2], [0, 0, 1]], atol=1e-15)
    votes = annotations.load_votes("cifar10n:random", 5, 3, str(root))
    assert votes.labels.tolist() == [[0, 0, 1], [1, 1, 1], [2, 1, 1], [2, 2, 2], [1, 0, 0]]
    assert votes.counts.tolist() == [3] * 5
    with pytest.raises(UsageError, match="one row per training image, in their original order"):
        annotations.load_votes("cifar10n:aggre", 4, 3, str(root))
