"""Tests of the stratified split and subsets: deterministic by split seed, proportional, every class present.

Pure numpy on synthetic labels; runs in well under a second.
"""

import numpy as np
import pytest

from peftlab.data.split import (
    EVAL_STREAM,
    TRAIN_STREAM,
    allocate,
    carve_validation,
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


def test_validation_is_a_tenth_of_each_class_disjoint_and_fixed_by_the_split_seed():
    train_pool, test = stratified_split(LABELS, 0.2, 0, NAMES)  # 40 / 24 / 16 left for training
    train, val = carve_validation(LABELS[train_pool], 0.1, 0)
    train, val = train_pool[train], train_pool[val]  # back to indices of LABELS
    assert np.bincount(LABELS[val]).tolist() == [4, 2, 2]  # 4.0, 2.4, 1.6 -> half up
    assert np.bincount(LABELS[train]).tolist() == [36, 22, 14]
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert sorted([*train, *val, *test]) == list(range(100))
    again = carve_validation(LABELS[train_pool], 0.1, 0)[1]
    np.testing.assert_array_equal(train_pool[again], val)
    assert not np.array_equal(train_pool[carve_validation(LABELS[train_pool], 0.1, 1)[1]], val)


def test_validation_keeps_one_of_each_class_and_leaves_single_examples_to_train():
    labels = np.array([0, 0, 1, 1, 1, 2])  # 10% rounds to 0: still 1 of each class that can spare one
    train, val = carve_validation(labels, 0.1, 0)
    assert labels[val].tolist() == [0, 1] and sorted(labels[train].tolist()) == [0, 1, 1, 2]
    assert carve_validation(np.array([0, 1]), 0.1, 0)[1].size == 0  # nothing can be spared


def test_validation_carve_draws_from_its_own_stream():
    # the same per-class sizes as the test carve of the same pool and seed, but other members: a separate stream
    _, test = stratified_split(LABELS, 0.2, 7, NAMES)
    _, val = carve_validation(LABELS, 0.2, 7)
    assert np.bincount(LABELS[val]).tolist() == np.bincount(LABELS[test]).tolist() == [10, 6, 4]
    assert not np.array_equal(val, test)


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
