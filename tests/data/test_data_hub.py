"""Tests of the hub path without the hub: `datasets.load_dataset` is replaced by in-memory DatasetDicts shaped like
food101 and tweet_eval:sentiment, and by errors shaped like an unreachable or unknown hub.
"""

import datasets
import numpy as np
import pytest
from PIL import Image

from peftlab.data import IMAGE, TEXT, infer_task, load_data
from peftlab.data.table import pools_from_splits
from peftlab.errors import BadInput

FOOD = ["apple_pie", "baby_back_ribs", "baklava"]
SENTIMENT = ["negative", "neutral", "positive"]


def food101_like(n_train=9, n_test=6):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=FOOD)})

    def split(n):
        images = [Image.new("RGB" if i % 2 else "L", (10 + i, 8), i * 10) for i in range(n)]
        return datasets.Dataset.from_dict(
            {"image": images, "label": [i % 3 for i in range(n)]}, features=features
        )

    return datasets.DatasetDict({"train": split(n_train), "validation": split(n_test)})


def tweet_eval_like(test_labels=None, validation_labels=None):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=SENTIMENT)}
    )

    def split(name, n, labels=None):
        labels = labels or [i % 3 for i in range(n)]
        return datasets.Dataset.from_dict(
            {"text": [f"{name} tweet {i}" for i in range(n)], "label": labels}, features=features
        )

    return datasets.DatasetDict({"train": split("train", 12), "validation": split("validation", 6, validation_labels),
                                 "test": split("test", 9, test_labels)})  # fmt: skip


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []

    def install(result):
        def load_dataset(path, name=None, **kwargs):
            calls.append((path, name))
            if isinstance(result, Exception):
                raise result
            return result

        monkeypatch.setattr(datasets, "load_dataset", load_dataset)
        return calls

    return install


def test_food101_shaped_data(fake_hub):
    calls = fake_hub(food101_like())
    data = load_data("food101", max_train_samples=6)
    assert calls == [("food101", None)]
    assert data.task == IMAGE and data.label_names == FOOD
    # train/validation only: the official validation is the test split, validation is carved from train (1 a class)
    assert data.full_sizes == {"train": 6, "validation": 3, "eval": 6}
    assert "official split train/validation (validation used as the test split)" in data.notes
    assert "validation: 10% of each training class (at least 1) carved from train" in data.notes
    assert data.test is data.eval
    assert all(
        isinstance(im, Image.Image) and im.mode == "RGB"
        for im in [*data.train.inputs, *data.validation.inputs, *data.eval.inputs]
    )
    assert sorted(data.train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert sorted(data.validation.labels.tolist()) == [0, 1, 2]
    # the train images are 10+i px wide: the carved validation images are train images that training lost
    train_widths = {im.size[0] for im in data.train.inputs}
    assert not train_widths & {im.size[0] for im in data.validation.inputs}
    assert train_widths | {im.size[0] for im in data.validation.inputs} == set(range(10, 19))
    assert data.source.startswith("hub food101")


def test_tweet_eval_shaped_data_uses_test_for_eval(fake_hub):
    calls = fake_hub(tweet_eval_like())
    data = load_data("tweet_eval:sentiment")
    assert calls == [("tweet_eval", "sentiment")]
    assert data.task == TEXT and data.label_names == SENTIMENT
    # all three official splits: nothing is carved, training keeps all 12
    assert data.full_sizes == {"train": 12, "validation": 6, "eval": 9}
    assert "official split train/test" in data.notes and "validation: official split validation" in data.notes
    assert "carved" not in data.notes
    assert data.eval.inputs[0] == "test tweet 0" and data.eval.labels.dtype == np.int64
    assert list(data.validation.inputs) == [f"validation tweet {i}" for i in range(6)]
    assert data.train.inputs == [f"train tweet {i}" for i in range(12)]
    # --eval-split validation: that is the test split now, so validation is carved from train (and never the test)
    other = load_data("tweet_eval:sentiment", eval_split="validation")
    assert other.full_sizes == {"train": 9, "validation": 3, "eval": 6}
    assert all(t.startswith("train ") for t in other.validation.inputs)
    assert "(chosen by --eval-split)" in other.notes


def test_unlabelled_test_split_is_skipped(fake_hub):
    fake_hub(tweet_eval_like(test_labels=[-1] * 9))
    data = load_data("glue:sst2")
    assert (
        data.full_sizes == {"train": 9, "validation": 3, "eval": 6}
        and "test unlabelled, not used" in data.notes
    )
    assert all(t.startswith("validation ") for t in data.eval.inputs)
    with pytest.raises(BadInput, match=r"unlabelled \(-1\)"):
        load_data("glue:sst2", eval_split="test")


def test_unlabelled_validation_split_is_carved_from_train_instead(fake_hub):
    fake_hub(tweet_eval_like(validation_labels=[-1] * 6))
    data = load_data("tweet_eval:sentiment", max_validation_samples=2)
    assert data.full_sizes == {"train": 9, "validation": 3, "eval": 9}
    assert "validation unlabelled, not used" in data.notes
    assert len(data.validation.labels) == 2 and all(t.startswith("train ") for t in data.validation.inputs)


def test_unknown_eval_split_lists_hub_splits(fake_hub):
    fake_hub(tweet_eval_like())
    with pytest.raises(
        BadInput, match=r"no split 'dev' .*\(splits: train, validation, test\): pass --eval-split"
    ):
        load_data("tweet_eval:sentiment", eval_split="dev")


def test_unreachable_hub_names_the_offline_datasets(fake_hub):
    fake_hub(ConnectionError("Couldn't reach 'food101' on the Hub (LocalEntryNotFoundError)"))
    with pytest.raises(
        BadInput, match="hub is unreachable.*offline, use a packaged dataset \\(vader-tweets,"
    ) as e:
        load_data("food101")
    assert "\n" not in str(e.value)


def test_unknown_hub_name(fake_hub):
    fake_hub(datasets.exceptions.DatasetNotFoundError("Dataset 'nope/nope' doesn't exist on the Hub"))
    with pytest.raises(BadInput, match=r"unknown dataset 'nope/nope'.*vader-tweets.*local file.*hub id"):
        load_data("nope/nope")


def test_other_hub_failures_are_one_line(fake_hub):
    fake_hub(ValueError("BuilderConfig 'sentimen' not found.\nAvailable: ['sentiment']"))
    with pytest.raises(
        BadInput, match=r"could not load 'tweet_eval:sentimen' \(ValueError: BuilderConfig"
    ) as e:
        load_data("tweet_eval:sentimen")
    assert "\n" not in str(e.value)


def test_infer_task_for_known_hub_names_needs_no_hub(fake_hub):
    fake_hub(ConnectionError("no network"))
    assert infer_task("food101") == IMAGE and infer_task("tweet_eval:sentiment") == TEXT
    assert infer_task("cardiffnlp/tweet_eval:emotion") == TEXT


def test_real_load_dataset_output_takes_the_same_path(tmp_path, monkeypatch):
    # datasets.load_dataset on local Parquet files (no hub): its DatasetDict goes through the shared column logic
    for name, dd in (("train", food101_like()["train"]), ("test", food101_like()["validation"])):
        dd.to_parquet(str(tmp_path / f"{name}.parquet"))
    files = {s: str(tmp_path / f"{s}.parquet") for s in ("train", "test")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    pools = pools_from_splits(
        dict(loaded),
        what="parquet",
        source="test",
        task=None,
        text_column=None,
        label_column=None,
        image_column=None,
        eval_split=None,
    )
    assert pools.task == IMAGE and pools.label_names == FOOD and len(pools.eval.labels) == 6
    images = pools.train.take(np.array([0, 3]))
    assert [im.size for im in images] == [(10, 8), (13, 8)] and images[0].mode == "RGB"
    # the same files as a local folder: read without load_dataset, same result
    data = load_data(str(tmp_path))
    assert data.label_names == FOOD and data.full_sizes == {"train": 6, "validation": 3, "eval": 6}


def test_image_column_named_img_and_a_broken_hub_image(fake_hub):
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    good = [Image.new("RGB", (4, 4))] * 4
    ds = datasets.Dataset.from_dict({"img": good, "label": [0, 1, 0, 1]}, features=features)
    bad = ds.cast_column("img", datasets.Image(decode=False)).map(
        lambda row, i: {"img": {"bytes": b"junk", "path": "broken.jpg"} if i == 0 else row["img"]},
        with_indices=True,
    )
    fake_hub(datasets.DatasetDict({"train": ds, "test": bad.cast_column("img", datasets.Image())}))
    with pytest.raises(BadInput, match=r"image broken\.jpg \(row 0 of split 'test'\) does not decode"):
        load_data("cifar-like")
