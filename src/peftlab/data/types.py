"""The shapes every data source produces: Split and ClassificationData, and the Pool a loader hands to splitting.

Loaders build a `Pools` (labels now, inputs on demand); `load.assemble` turns it into a `ClassificationData`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TEXT = "text-classification"
IMAGE = "image-classification"
TASKS = (TEXT, IMAGE)


@dataclass
class Split:
    inputs: list  # text task: list[str]; image task: list[PIL.Image.Image], decoded, mode "RGB"
    labels: np.ndarray  # (N,) int64 in [0, K)


@dataclass
class ClassificationData:
    name: str  # as the user gave it
    task: str  # "text-classification" | "image-classification"
    label_names: list[str]  # index -> name, K >= 2
    train: Split
    eval: Split
    source: str  # where it came from: packaged file, hub id, local path
    notes: str  # how the split and subsets were made
    full_sizes: dict  # sizes before subsetting {"train": int, "eval": int}


@dataclass
class Pool:
    """Examples whose labels are known and whose inputs are made only for the indices asked for."""

    labels: np.ndarray  # (N,) int64 in [0, K)
    take: Callable[[np.ndarray], list]  # (n,) indices into this pool -> n inputs (str or RGB PIL image)

    def subset(self, idx: np.ndarray) -> Pool:
        # (n,) indices into this pool -> a pool of n examples, still lazy
        return Pool(self.labels[idx], lambda sub: self.take(idx[sub]))


@dataclass
class Pools:
    """What a loader found: a train pool, maybe an official eval pool, and how to describe them."""

    task: str
    label_names: list[str]
    train: Pool
    eval: Pool | None  # None: no official eval split, load_data makes a stratified one from train
    source: str
    split_note: str  # e.g. "official split train/test"; empty when there is none
