"""One trial's data: given the data section, one noise section per group member and a device, the
training loader, the test batches, the held-out validation batches (data.n_val > 0), the noise models and distributions, the image shape and the classes.

Members of a group share the images and their order; they may differ in noise.seed, which fixes which
label each noisy copy carries, so each member gets its own noise model and the loader yields one label
row per member. Each noise distribution is computed once, here, and serves both the noise model and
the loss (H_alpha).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errors import UsageError, invalid
from loaders import annotations, backends, datasets
from loaders.noise import NoiseModel, NoiseSpec, distribution
from loaders.tensor import batches

EVAL_BATCH = 1024
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def noise_spec(noise: dict[str, Any], dataset: str) -> NoiseSpec:
    """A noise section as a spec; noise.confusion defaults to where exp=confusion writes its artifact."""
    return NoiseSpec(**{**noise, "confusion": noise.get("confusion") or str(datasets.default_confusion_path(dataset))})


def check(data: dict[str, Any], noise: dict[str, Any], clean_only: bool = False) -> None:
    """What build() would reject, from the split sizes and the noise section alone (nothing loaded): the noise
    spec, its confusion artifact, its (alpha, delta) feasibility, its noise.matrix and noise.labels, its image
    source; data.n_clean and data.n_test against the splits, and the unused training images noise.source=novel
    takes; and a data.root that may not be read. clean_only: H_alpha, whose training set has no noisy copies."""
    name, root = data["dataset"], Path(data["root"])
    spec = noise_spec(noise, name)
    if spec.delta > 0 and spec.order != "random" and not Path(spec.confusion).is_file():
        make = "python -m study.launch exp=confusion" + (f" data.dataset={name}" if name != "mnist" else "")
        if Path(spec.confusion) != datasets.default_confusion_path(name):
            make += f" noise.confusion={spec.confusion}"
        raise UsageError(f"noise.order={spec.order} needs the confusion matrix {spec.confusion}, which does not "
                         f"exist: make it with `{make}`")
    if spec.source == "cifar100" and name != "cifar10":
        raise invalid("noise.source", spec.source, f"same, novel or white with data.dataset={name} (CIFAR-100's "
                                                   "images have the shape of data.dataset=cifar10 only)")
    try:
        datasets.present(name, root)  # stats under the root: one may not read it
        sizes = datasets.split_sizes(name, root, data["stand_in"], data["path"])
    except PermissionError as exc:
        raise invalid("data.root", data["root"], f"a folder you may read ({exc.strerror}: {exc.filename})") from None
    m = datasets.num_classes(data)
    distribution(spec, m, data["root"], data["download"])  # rejects an infeasible (alpha, delta), a bad matrix
    if sizes is None:  # an ImageNet folder tree: build() checks it once listed
        return
    kind = f"stand-in {name}" if sizes == datasets.STAND_IN_SIZE.get(name) and not datasets.present(name, root) else name
    n_val = data.get("n_val") or 0
    check_val(n_val, sizes[0], f" (the {kind} training split, leaving one image to train on)")
    held = f", less the {n_val} held out by data.n_val" if n_val else ""
    datasets.check_subset_size(data["n_clean"], sizes[0] - n_val, "data.n_clean", f" (the {kind} training split{held})")
    datasets.check_subset_size(data["n_test"], sizes[1], "data.n_test", f" (the {kind} test split)")
    if spec.labels and not clean_only:  # the annotations file against the training split, before anything runs
        annotations.load_votes(spec.labels, sizes[0], m, data["root"], data["download"])
    if spec.source == "novel" and not clean_only:
        n = data["n_clean"] or sizes[0] - n_val
        datasets.check_novel(sizes[0] - n - n_val, n, spec.n_virtual(n) - n, spec.alpha, n_val)


def check_val(n_val: int, n: int, where: str = "") -> None:
    """The held-out split leaves at least one of the n training images to train on."""
    if n_val >= n:
        raise invalid("data.n_val", n_val, f"an integer in [0, {n - 1}]{where}")


@functools.lru_cache(maxsize=4)
def load_split(name: str, root: str, train: bool, stand_in: bool = False, image_size: int = 224,
               path: str | None = None, cache: str | None = None) -> datasets.ImageSet:
    """Cached per process, so trials that share a Tune actor read the files once."""
    return datasets.load(name, Path(root), train, stand_in, image_size, path, cache)


def data_key(data: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The data keys that decide which images table_source loads (hashable, for its cache)."""
    return tuple((k, data.get(k)) for k in ("dataset", "root", "stand_in", "image_size", "path", "cache"))


def split_args(d: dict[str, Any]) -> tuple[Any, ...]:
    """load_split's arguments after `train`, from a data section."""
    return d.get("stand_in", False), d.get("image_size", 224), d.get("path"), d.get("cache")


@functools.lru_cache(maxsize=2)
def table_source(data: tuple[tuple[str, Any], ...], source: str) -> tuple[str, datasets.ImageSet]:
    """The set (and its name, the key of its .beton) whose rows form a trial's image table: the training
    split, with CIFAR-100's training images appended for noise.source=cifar100 (they have no class: -1)."""
    d = dict(data)
    full = load_split(d["dataset"], d["root"], True, *split_args(d))
    if source != "cifar100":  # a folder's .beton is named by its tree: two folders never share one
        return datasets.tree(d).key if d["dataset"] == "folder" else d["dataset"], full
    other = load_split("cifar100", d["root"], True, *split_args(d))
    pool = datasets.ImageSet(other.images, torch.full_like(other.labels, -1), other.num_classes, other.mean, other.std)
    return f"{d['dataset']}+cifar100", full.extend(pool)


def table_rows(spec: NoiseSpec, n_full: int, n_source: int, clean_index: torch.Tensor,
               val_index: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of table_source's set that form the image table (see loaders.noise.NoiseModel): the clean
    examples, then one unused training image per noisy copy (novel: never a validation image) or all of
    CIFAR-100 (cifar100)."""
    n_noisy = spec.n_virtual(clean_index.numel()) - clean_index.numel()
    if spec.source == "novel":
        return torch.cat([clean_index, datasets.novel_index(n_full, clean_index, n_noisy, spec.seed, val_index)])
    if spec.source == "cifar100":
        return torch.cat([clean_index, torch.arange(n_full, n_source)])
    return clean_index


def table_votes(spec: NoiseSpec, data: dict[str, Any], labels: torch.Tensor, rows: torch.Tensor,
                m: int) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, np.ndarray | None]:
    """noise.labels: the annotations of the image table's images (rows: their training indices, so subsets
    keep each image's own) and their empirical matrix, every member's noise distribution; else (None, None)."""
    if not spec.labels:
        return None, None
    votes = annotations.load_votes(spec.labels, labels.numel(), m, str(data["root"]), data.get("download", False))
    votes = votes.subset(rows.numpy())
    if (votes.counts < 1).any():
        image = int(rows[int(np.argmax(votes.counts < 1))])
        raise UsageError(f"noise.labels={spec.labels} gives no annotation for training image {image}: every image "
                         "trained on needs at least one")
    return (torch.from_numpy(votes.labels), torch.from_numpy(votes.counts)), votes.matrix(labels[rows].numpy(), m)


VAL_SEED = 7919  # added to data.subset_seed for the held-out split, so it is drawn apart from the clean subset


def clean_and_val(labels: torch.Tensor, data: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training-set rows of the clean subset and of the held-out validation split.

    data.n_val = 0 (default, the paper's protocol): no validation split, and the clean subset is exactly
    what it was before n_val existed. n_val > 0: the validation split is carved out FIRST (stratified,
    seeded by subset_seed + VAL_SEED), then data.n_clean is drawn (stratified, subset_seed) from the rows
    left; so the validation images are never trained on, never diluted, never a novel noisy image, and
    the same for every n_clean of a study."""
    n_val = data.get("n_val") or 0
    check_val(n_val, labels.numel())
    if not n_val:
        return datasets.stratified_subset(labels, data["n_clean"], data["subset_seed"], "data.n_clean"), None
    val = datasets.stratified_subset(labels, n_val, data["subset_seed"] + VAL_SEED, "data.n_val")
    rest = torch.from_numpy(np.setdiff1d(np.arange(labels.numel()), val.numpy()))
    return rest[datasets.stratified_subset(labels[rest], data["n_clean"], data["subset_seed"], "data.n_clean")], val


@dataclass
class TrainData:
    """What a trial trains and evaluates on. `loader` yields (images, labels (K, B)), one row per member."""

    loader: Any  # TensorLoader | TorchLoader | VirtualLoader: iterable, len(), set_epoch(e)
    test_batches: Callable[[], Batches]
    noises: list[NoiseModel]  # one per member; their image table is shared
    distributions: list[np.ndarray]  # each member's (m, m) per-copy noise distribution
    shape: tuple[int, int, int]
    num_classes: int
    val_batches: Callable[[], Batches] | None = None  # the held-out clean split (data.n_val > 0), else None


def build(data: dict[str, Any], noises: Sequence[dict[str, Any]], device: torch.device, batch_size: int,
          order_seed: int, clean_only: bool = False) -> TrainData:
    """The training and test data of a group whose members have these noise sections.

    clean_only: the training set is the clean examples alone (H_alpha puts the noise in the loss), while
    `distributions` still describe each member's noise.
    """
    specs = [noise_spec(noise, data["dataset"]) for noise in noises]
    m = datasets.num_classes(data)
    root, download = str(data["root"]), data.get("download", False)
    dists = {spec.seed: distribution(spec, m, root, download) for spec in specs}  # differ only by seed (random order)
    label_specs = [dataclasses.replace(s, alpha=0.0, delta=0.0) if clean_only else s for s in specs]
    if backends.on_disk(data):
        return _from_folders(data, label_specs, dists, device, batch_size, order_seed)
    return _in_memory(data, label_specs, dists, device, batch_size, order_seed)


def _in_memory(data: dict[str, Any], specs: list[NoiseSpec], dists: dict[int, np.ndarray], device: torch.device,
               batch_size: int, order_seed: int) -> TrainData:
    """Both splits loaded as tensors; the training loader from data.backend."""
    split = (data["dataset"], data["root"])
    full, test = load_split(*split, True, *split_args(data)), load_split(*split, False, *split_args(data))
    clean_index, val_index = clean_and_val(full.labels, data)
    test_set = test.subset(datasets.stratified_subset(test.labels, data["n_test"], data["subset_seed"], "data.n_test"))
    name, source = table_source(data_key(data), specs[0].source)
    rows = table_rows(specs[0], len(full), len(source), clean_index, val_index)
    n = clean_index.numel()
    votes, votes_dist = table_votes(specs[0], data, full.labels, rows, full.num_classes)
    dists = dists if votes is None else dict.fromkeys(dists, votes_dist)
    noises = [NoiseModel(spec, full.labels[clean_index], full.num_classes, dists[spec.seed], source.labels[rows[n:]],
                         votes) for spec in specs]
    loader = backends.make(data, name, source, rows, noises, batch_size, order_seed, device)
    val_set = None if val_index is None else full.subset(val_index)
    return TrainData(loader, lambda: batches(test_set, EVAL_BATCH, device), noises, [dists[s.seed] for s in specs],
                     tuple(full.images.shape[1:]), full.num_classes,
                     None if val_set is None else lambda: batches(val_set, EVAL_BATCH, device))


def _from_folders(data: dict[str, Any], specs: list[NoiseSpec], dists: dict[int, np.ndarray], device: torch.device,
                  batch_size: int, order_seed: int) -> TrainData:
    """A class-folder tree (real ImageNet, or data.dataset=folder with data.backend=ffcv or a large tree): both
    splits read through FFCV from JPEG .betons, only their labels in memory."""
    (train_path, labels), (test_path, test_labels) = backends.folder_split(data, True), backends.folder_split(data, False)
    m = datasets.num_classes(data)
    clean_index, val_index = clean_and_val(labels, data)
    rows = table_rows(specs[0], len(labels), len(labels), clean_index, val_index)
    pool = labels[rows[clean_index.numel():]]
    votes, votes_dist = table_votes(specs[0], data, labels, rows, m)
    dists = dists if votes is None else dict.fromkeys(dists, votes_dist)
    noises = [NoiseModel(spec, labels[clean_index], m, dists[spec.seed], pool, votes) for spec in specs]
    loader = backends.folder_loader(data, train_path, rows, noises, batch_size, order_seed, device)
    test_rows = datasets.stratified_subset(test_labels, data["n_test"], data["subset_seed"], "data.n_test")
    clean_test = NoiseModel(NoiseSpec(), test_labels[test_rows], m)  # alpha = 0: every label clean
    test_loader = backends.folder_loader(data, test_path, test_rows, [clean_test], EVAL_BATCH, 0, device)

    def test_batches() -> Batches:
        return ((x, y[0]) for x, y in test_loader)

    val_batches = None
    if val_index is not None:  # held-out training images, read from the training .beton with clean labels
        clean_val = NoiseModel(NoiseSpec(), labels[val_index], m)
        val_loader = backends.folder_loader(data, train_path, val_index, [clean_val], EVAL_BATCH, 0, device)

        def val_batches() -> Batches:
            return ((x, y[0]) for x, y in val_loader)

    size = data.get("image_size", 224)
    return TrainData(loader, test_batches, noises, [dists[s.seed] for s in specs], (3, size, size), m, val_batches)
