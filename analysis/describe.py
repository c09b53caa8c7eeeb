"""What a run was, in the words its figures use: the dataset and its class count, the noisy labels (uniform,
structured, a matrix file, a label file, a CIFAR-10N kind), where the noisy images come from, and the scale.

Read from study.json (its `dataset` block: name, classes, stand-in; its config's noise section) and from the
rows drawn, whose columns override the study's value of a key a grid varies (trials.csv always has the noise
matrix and labels, rundir.COLUMNS). analysis/ imports no loaders: a run dir from before study.json recorded its
dataset is named from PAPER_DATASETS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import pandas as pd

PAPER_DATASETS = {"mnist": ("MNIST", 10), "cifar10": ("CIFAR-10", 10), "cifar100": ("CIFAR-100", 100),
                  "imagenet": ("ImageNet", 1000)}
SOURCES = {"same": "", "novel": "novel images", "cifar100": "CIFAR-100 images", "white": "white-noise images"}
CIFAR10N = "cifar10n:"


@dataclass(frozen=True)
class Run:
    dataset: str  # as a title names it: MNIST, CIFAR-10 (stand-in), my_images
    classes: int | None  # None: not recorded (a run dir of another dataset from before study.json held it)
    scale: str  # preset=smoke
    noise: dict[str, Any] = field(default_factory=dict)  # the study's noise section; a grid's values are in the rows

    @classmethod
    def of(cls, study: dict[str, Any]) -> "Run":
        config = study.get("config", {})
        data = config.get("data", {})
        recorded = study.get("dataset") or {}
        name, classes = PAPER_DATASETS.get(str(data.get("dataset")), (str(data.get("dataset", "?")), None))
        if data.get("dataset") == "folder" and data.get("path"):
            name = PurePath(data["path"]).name
        name, classes = recorded.get("name", name), recorded.get("classes", classes)
        if recorded.get("stand_in"):
            name += " (generated stand-in)"
        return cls(name, classes, f"preset={study.get('preset', '?')}", dict(config.get("noise", {})))

    @property
    def chance(self) -> float | None:
        """Top-1 accuracy of a uniform guess."""
        return 1 / self.classes if self.classes else None

    @property
    def has_top5(self) -> bool:
        """Top-5 accuracy says something only with more than 5 classes (else it is 100%)."""
        return self.classes is None or self.classes > 5

    @property
    def data(self) -> str:
        """The dataset with its class count: "MNIST (10 classes)"."""
        return f"{self.dataset} ({self.classes} classes)" if self.classes else self.dataset

    def values(self, rows: pd.DataFrame | None, key: str) -> list[Any]:
        """A noise key's value in each row drawn: its column where the rows have one, else the study's value."""
        if rows is not None and key in rows:
            return [None if pd.isna(v) or v == "" else v for v in rows[key]]
        return [self.noise.get(key)] * (1 if rows is None else max(len(rows), 1))

    def labels(self, rows: pd.DataFrame | None = None) -> str:
        """The noisy labels of the rows, in words; several kinds are joined with " / "."""
        keys = ("matrix", "labels", "delta", "order", "draw")
        kinds = [labels_text(*row) for row in zip(*(self.values(rows, k) for k in keys))]
        return " / ".join(dict.fromkeys(kinds)) or labels_text(*(self.noise.get(k) for k in keys))

    def source(self, rows: pd.DataFrame | None = None) -> str:
        """Where the rows' noisy images come from, when not the clean images themselves: "", or e.g. "novel images"."""
        names = [SOURCES.get(str(v), str(v)) for v in self.values(rows, "source") if v]
        return " / ".join(dict.fromkeys(name for name in names if name))

    def noise_text(self, rows: pd.DataFrame | None = None) -> str:
        """Labels and source: "uniform label noise", "noise matrix own.npy, on novel images"."""
        source = self.source(rows)
        return self.labels(rows) + (f", on {source}" if source else "")


def annotated(value: str) -> str:
    """A noise.matrix or noise.labels value as a reader knows it: "CIFAR-10N worst", or a file's name."""
    return f"CIFAR-10N {value[len(CIFAR10N):]}" if value.startswith(CIFAR10N) else PurePath(value).name


def labels_text(matrix: str | None, labels: str | None, delta: float | None, order: str | None,
                draw: str | None = None) -> str:
    """One kind of noisy label in words; draw=image (one label per image, kept by all its copies) is said."""
    tied = ", one per image" if draw == "image" else ""
    if labels:
        return f"{annotated(labels)} per-image labels{tied}"
    if matrix:
        return (f"{annotated(matrix)} class-conditional matrix" if matrix.startswith(CIFAR10N)
                else f"noise matrix {annotated(matrix)}") + (", one draw per image" if tied else "")
    if delta:
        return f"structured label noise (δ = {delta:g}, {order} order)"
    return "uniform label noise"
