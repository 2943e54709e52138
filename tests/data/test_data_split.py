"""Tests of the stratified split and subsets: deterministic by split seed, proportional, every class present.

Pure numpy on synthetic labels; runs in well under a second.
"""

import numpy as np
import pytest

from peftlab.data.split import (
    EVAL_STREAM,
    TRAIN_STREAM,
    allocate,
    check_max_samples,
    stratified_split,
    stratified_subset,
)
from peftlab.errors import BadInput

# 3 unbalanced classes: 50 / 30 / 20 examples, shuffled
LABELS = np.random.default_rng(123).permutation(np.repeat([0, 1, 2], [50, 30, 20]))
NAMES = ["a", "b", "c"]


def test_split_is_deterministic_in_the_split_seed():
    a_train, a_eval = stratified_split(LABELS, 0.2, 0, NAMES)
    b_train, b_eval = stratified_split(LABELS, 0.2, 0, NAMES)
    np.testing.assert_array_equal(a_train, b_train)
    np.testing.assert_array_equal(a_eval, b_eval)
    _, other_eval = stratified_split(LABELS, 0.2, 1, NAMES)
    assert not np.array_equal(a_eval, other_eval)


def test_split_is_stratified_disjoint_and_complete():
    train, evaluation = stratified_split(LABELS, 0.2, 0, NAMES)
    assert len(evaluation) == 20  # 20% of 100
    assert np.bincount(LABELS[evaluation]).tolist() == [10, 6, 4]  # 20% of 50 / 30 / 20
    assert np.intersect1d(train, evaluation).size == 0
    assert sorted(np.concatenate([train, evaluation]).tolist()) == list(range(100))


def test_split_keeps_every_class_on_both_sides_even_when_tiny():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    train, evaluation = stratified_split(labels, 0.2, 0, NAMES)
    assert set(labels[train]) == set(labels[evaluation]) == {0, 1, 2}


def test_split_needs_two_examples_per_class():
    with pytest.raises(BadInput, match="class 'c' has only 1 example.*stratified"):
        stratified_split(np.array([0, 0, 1, 1, 2]), 0.2, 0, NAMES)


def test_subset_has_every_class_and_is_deterministic():
    idx = stratified_subset(LABELS, 10, 0, TRAIN_STREAM)
    assert len(idx) == 10 and set(LABELS[idx]) == {0, 1, 2}
    np.testing.assert_array_equal(idx, stratified_subset(LABELS, 10, 0, TRAIN_STREAM))
    assert not np.array_equal(idx, stratified_subset(LABELS, 10, 0, EVAL_STREAM))
    assert np.bincount(LABELS[stratified_subset(LABELS, 3, 0, TRAIN_STREAM)]).tolist() == [1, 1, 1]
    assert len(stratified_subset(LABELS, 500, 0, TRAIN_STREAM)) == 100  # more than there is: all


def test_allocate_respects_bounds_and_total():
    counts = np.array([1000, 10, 1])
    take = allocate(counts, 6, np.ones(3, dtype=np.int64), counts)
    assert take.sum() == 6 and take.min() >= 1 and (take <= counts).all()


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_max_samples_must_be_a_positive_int(bad):
    with pytest.raises(BadInput, match="--max-train-samples must be a positive whole number"):
        check_max_samples(bad, "--max-train-samples")


def test_max_samples_none_and_ints_pass():
    assert check_max_samples(None, "--x") is None
    assert check_max_samples(np.int64(5), "--x") == 5
