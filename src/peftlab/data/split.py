"""Deterministic, stratified train/validation/test splits and subsets, driven by the split seed only.

`stratified_split(labels, 0.2, seed, names)` (test from the pool), `carve_validation(labels, 0.1, seed)` (validation
from what is left for training) and `stratified_subset(labels, n, seed, stream)` return sorted indices.
"""

from __future__ import annotations

import numpy as np

from peftlab.errors import BadInput

# Separate random streams per purpose, so a subset never shifts the split and vice versa: the test carve, the train
# subset and the test subset draw exactly what they drew before validation existed.
SPLIT_STREAM, TRAIN_STREAM, EVAL_STREAM = 0, 1, 2
VALIDATION_STREAM, VALIDATION_SUBSET_STREAM = 3, 4  # carving validation from the training pool; its subset


def allocate(counts: np.ndarray, n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Split n across classes in proportion to counts (K,), each class kept within [lo, hi]; largest remainder."""
    quota = counts * (n / counts.sum())  # (K,) ideal, fractional
    take = np.clip(np.floor(quota).astype(np.int64), lo, hi)
    # Floors leave at most K units short; minimums can overshoot by at most K: fix one unit at a time.
    while take.sum() < n:
        room = np.where(take < hi, quota - take, -np.inf)
        take[int(np.argmax(room))] += 1
    while take.sum() > n:
        room = np.where(take > lo, quota - take, np.inf)
        take[int(np.argmin(room))] -= 1
    return take


def _members(labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    # (N,) labels -> per class present, its indices in a seeded random order
    return [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]


def stratified_split(
    labels: np.ndarray, eval_fraction: float, seed: int, label_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) labels -> (train_idx, eval_idx), sorted; every class in both, eval about eval_fraction of each class."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        lonely = label_names[int(classes[np.argmin(counts)])]
        raise BadInput(
            f"class {lonely!r} has only {counts.min()} example, so a stratified train/eval split is impossible: "
            "give every class at least 2 examples, drop the class, or provide an eval split"
        )
    n_eval = int(round(len(labels) * eval_fraction))
    n_eval = min(
        max(n_eval, len(classes)), len(labels) - len(classes)
    )  # room for 1 of each class on both sides
    take = allocate(counts, n_eval, np.ones_like(counts), counts - 1)
    rng = np.random.default_rng([seed, SPLIT_STREAM])
    eval_idx = np.concatenate([m[:k] for m, k in zip(_members(labels, rng), take)])
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[eval_idx] = False
    return np.flatnonzero(train_mask), np.sort(eval_idx)


def carve_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) training-pool labels -> (train_idx, validation_idx), sorted and disjoint. Each class c of n_c >= 2 examples
    gives round(fraction * n_c) of them (half up), at least 1 and at most n_c - 1; a class with a single example keeps
    it for training (no validation example). Depends on labels, fraction and seed only."""
    _, counts = np.unique(labels, return_counts=True)
    take = np.where(counts < 2, 0, np.clip(np.floor(counts * fraction + 0.5), 1, counts - 1)).astype(np.int64)
    rng = np.random.default_rng([seed, VALIDATION_STREAM])
    val_idx = np.concatenate([m[:k] for m, k in zip(_members(labels, rng), take)]).astype(np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), np.sort(val_idx)


def stratified_subset(labels: np.ndarray, n: int, seed: int, stream: int) -> np.ndarray:
    """(N,) labels -> (min(n, N),) sorted indices; classes in proportion, every class present when n >= K."""
    if n >= len(labels):
        return np.arange(len(labels))
    _, counts = np.unique(labels, return_counts=True)
    lo = np.ones_like(counts) if n >= len(counts) else np.zeros_like(counts)
    take = allocate(counts, n, lo, counts)
    rng = np.random.default_rng([seed, stream])
    return np.sort(np.concatenate([m[:k] for m, k in zip(_members(labels, rng), take)]))


def check_max_samples(value: object, flag: str) -> int | None:
    """None or a positive int; anything else is the user's to fix."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise BadInput(f"{flag} must be a positive whole number, got {value!r}: pass {flag} N with N >= 1")
    return int(value)
