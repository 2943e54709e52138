"""The shapes every data source produces: Split and ClassificationData, and the Pool a loader hands to splitting.

Loaders build a `Pools` (labels now, inputs on demand); `load.assemble` turns it into a `ClassificationData` with
train / validation / test splits (`eval` is the test split's name in code).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

TEXT = "text-classification"
IMAGE = "image-classification"
TASKS = (TEXT, IMAGE)


class LazyInputs(Sequence):
    """A split's inputs made on first use (n,) -> n inputs, then kept: its length is known without making any."""

    def __init__(self, take: Callable[[np.ndarray], list], idx: np.ndarray):
        self._take, self._idx, self._items = take, idx, None

    def __len__(self) -> int:
        return len(self._idx)

    def __getitem__(self, i):
        if self._items is None:
            self._items = self._take(self._idx)
        return self._items[i]


@dataclass
class Split:
    inputs: Sequence  # text task: str each; image task: PIL.Image.Image each, decoded, mode "RGB" (a list, or
    # LazyInputs for validation: nothing is read or decoded until a caller asks)
    labels: np.ndarray  # (N,) int64 in [0, K)


@dataclass
class ClassificationData:
    name: str  # as the user gave it
    task: str  # "text-classification" | "image-classification"
    label_names: list[str]  # index -> name, K >= 2
    train: Split
    eval: Split  # the test split: every reported metric comes from it (also reachable as `.test`)
    source: str  # where it came from: packaged file, hub id, local path
    notes: str  # how the splits and subsets were made
    full_sizes: dict  # sizes before subsetting {"train": int, "validation": int, "eval": int}; eval = test
    validation: Split  # for choosing (epochs, settings), never for reporting; inputs made on first use

    @property
    def test(self) -> Split:
        return self.eval


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
    """What a loader found: a train pool, maybe official test and validation pools, and how to describe them."""

    task: str
    label_names: list[str]
    train: Pool
    eval: Pool | None  # the test pool; None: no official one, load_data carves a stratified one from train
    source: str
    split_note: str  # e.g. "official split train/test"; empty when there is none
    validation: Pool | None = None  # None: no official one, load_data carves it from what train keeps
