"""VQA data: easy-VQA from its package files, the fashion-VQA generator, DAQUAR's own format, CSV / JSONL, splits."""

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from peftlab.data.vqa import VQA_DATASETS, load_vqa
from peftlab.data.vqa.daquar import read_daquar_qa
from peftlab.data.vqa.fashion import (
    FASHION_VQA_MOSAICS,
    ITEMS,
    PLURALS,
    POSITIONS,
    fashion_vqa_split,
    make_mosaics,
)

from .conftest import make_shapes_set


def _digest(split) -> str:
    h = hashlib.sha256()
    for i in range(len(split.images)):
        h.update(split.images.read(i))
    h.update(json.dumps([split.questions, split.answers, split.types, split.image_index.tolist()]).encode())
    return h.hexdigest()


def _fake_fashion(n: int = 200, seed: int = 0):
    # (n, 28, 28) items whose pixels encode their class, (n,) labels covering all 10 classes
    labels = np.arange(n) % 10
    images = np.repeat((labels * 20 + 5).astype(np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    return images + np.random.default_rng(seed).integers(0, 3, images.shape, dtype=np.uint8), labels


def test_mosaic_generator_is_deterministic():
    images, labels = _fake_fashion()
    a = fashion_vqa_split(images, labels, 40, seed=5, part="train")
    b = fashion_vqa_split(images, labels, 40, seed=5, part="train")
    c = fashion_vqa_split(images, labels, 40, seed=6, part="train")
    assert _digest(a) == _digest(b) != _digest(c)


def test_mosaic_answers_follow_the_labels():
    images, labels = _fake_fashion()
    m = make_mosaics(labels, 50, seed=1)
    split = fashion_vqa_split(images, labels, 50, seed=1, part="eval")
    assert len(split) == 7 * 50 and len(split.images) == 50
    assert set(np.bincount(m.count, minlength=5).nonzero()[0]) <= set(range(5))
    for k in range(50):
        q = slice(7 * k, 7 * k + 7)
        qs, ans, types = split.questions[q], split.answers[q], split.types[q]
        assert types == ["position"] * 4 + ["presence"] * 2 + ["count"]
        cells = labels[m.items[k]]
        assert (cells == m.classes[k]).all()
        assert [a for a in ans[:4]] == [ITEMS[c] for c in cells]
        assert qs[:4] == [f"what is in the {p}?" for p in POSITIONS]
        assert ans[4:6] == ["yes", "no"]
        named = [next(i for i, n in enumerate(ITEMS) if f" {n}?" in s) for s in qs[4:6]]
        assert named[0] in cells and named[1] not in cells
        assert qs[6] == f"how many {PLURALS[m.featured[k]]} are there?"
        assert ans[6] == str(int((cells == m.featured[k]).sum()))
        pixels = np.asarray(split.images.load(k))[..., 0]  # (56, 56): the four items, row-major
        assert pixels.shape == (56, 56)
        assert (pixels[:28, 28:] == images[m.items[k, 1]]).all() and (
            pixels[28:, :28] == images[m.items[k, 2]]
        ).all()


@pytest.mark.skipif(
    not VQA_DATASETS["fashion-vqa"].available(), reason="Debian dataset-fashion-mnist not installed"
)
def test_fashion_vqa_is_the_same_set_every_time():
    a, b = load_vqa("fashion-vqa"), load_vqa("fashion-vqa")
    assert _digest(a.train) == _digest(b.train) and _digest(a.eval) == _digest(b.eval)
    assert _digest(a.validation) == _digest(b.validation)
    n_val = FASHION_VQA_MOSAICS["train"] // 10  # 10% of the training mosaics, with their 7 questions each
    assert a.full_sizes == {
        "train": 7 * (FASHION_VQA_MOSAICS["train"] - n_val),
        "validation": 7 * n_val,
        "eval": 7 * FASHION_VQA_MOSAICS["eval"],
    }
    assert set(a.train.answers) == set(ITEMS) | {"yes", "no"} | {str(k) for k in range(5)}


@pytest.mark.skipif(not VQA_DATASETS["easy-vqa"].available(), reason="easy-vqa not installed")
def test_easy_vqa_from_the_package_files():
    d = load_vqa("easy-vqa", max_train_samples=130, max_eval_samples=40)
    # 400 of the 4,000 training images go to validation with their 3,977 questions; test is the official one
    assert d.full_sizes == {"train": 34598, "validation": 3977, "eval": 9673}
    assert (
        len(d.train) == 130 and len(d.eval) == 40 and len(d.validation) == 40
    )  # validation follows the test cap
    assert not set(d.train.images.names) & set(d.validation.images.names)
    assert set(d.train.answers) <= {"circle", "green", "red", "gray", "yes", "teal", "black", "rectangle", "yellow",
                                    "triangle", "brown", "blue", "no"}  # fmt: skip
    assert set(d.train.types) == {"yes/no", "color", "shape"}
    assert d.train.images.load(0).size == (64, 64)
    assert len(d.train.images) == len(set(d.train.image_index.tolist()))


def _daquar(folder, answers=True):
    (folder / "images").mkdir(parents=True)
    for n in (1, 2, 3, 4):
        Image.new("RGB", (20, 16), (n * 40, 0, 0)).save(folder / "images" / f"image{n}.png")
    # 3 training images: validation takes one (10%, at least 1) and training keeps "lamp" and a second answer
    train = ["what is on the table in the image1 ?", "lamp", "what is left of the bed in the image2 ?",
             "chair, table", "how many chairs are in the image1 ?", "2", "what is on the desk in the image4 ?",
             "lamp", "how many chairs are in the image4 ?", "2"]  # fmt: skip
    test = [
        "what is on the table in the image3 ?",
        "lamp",
        "what is behind the sofa in the image3 ?",
        "curtain",
    ]
    if not answers:
        train, test = train[::2], test[::2]
    (folder / "qa.894.raw.train.txt").write_text("\n".join(train) + "\n")
    (folder / "qa.894.raw.test.txt").write_text("\n".join(test) + "\n")
    return folder


def test_daquar_original_format(tmp_path):
    folder = _daquar(tmp_path / "daquar")
    rows = read_daquar_qa(folder / "qa.894.raw.train.txt")
    assert rows[0] == ("what is on the table in the image?", "lamp", "image1")
    d = load_vqa(str(folder))
    # "chair, table": the first answer is the class; one of the 3 training images went to validation
    assert sorted(d.train.answers + d.validation.answers) == ["2", "2", "chair", "lamp", "lamp"]
    assert "first is the class" in d.notes and d.full_sizes["validation"] in (1, 2)
    assert len(d.train.images) == 2 and len(d.validation.images) == 1
    assert not set(d.train.images.names) & set(d.validation.images.names)
    assert d.eval.answers == ["lamp", "curtain"]  # "curtain" is never a training answer: unseen
    assert d.train.images.load(1).size == (20, 16)


def test_jsonl_with_bare_image_ids_and_no_eval_split(tmp_path):
    folder = tmp_path / "j"
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(10):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / "images" / f"im{i}.jpg")
        rows += [{"image_id": f"im{i}", "question": "what is it?", "answer": ["red", "blue"][i % 2]},
                 {"image_id": f"im{i}", "question": "is it red?", "answer": ["yes", "no"][i % 2]}]  # fmt: skip
    (folder / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    d = load_vqa(str(folder / "data.jsonl"), split_seed=3)
    assert len(d.eval.images) == 2  # 20% of the images, with all their questions
    assert len(d.validation.images) == 1 and len(d.train.images) == 7  # then 10% of the 8 left (at least 1)
    assert d.full_sizes == {"train": 14, "validation": 2, "eval": 4}
    names = [set(s.images.names) for s in (d.train, d.validation, d.eval)]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    again = load_vqa(str(folder / "data.jsonl"), split_seed=3)
    assert again.eval.images.names == d.eval.images.names
    assert again.validation.images.names == d.validation.images.names  # fixed by the split seed
    others = [load_vqa(str(folder / "data.jsonl"), split_seed=s) for s in range(4, 9)]
    assert any(o.validation.images.names != d.validation.images.names for o in others)


def test_csv_split_column_and_subsets(tmp_path):
    csv_path = make_shapes_set(tmp_path / "s")
    d = load_vqa(str(csv_path))
    # 9 train images, 3 test images (3 questions each); validation: 1 of the 9 training images
    assert (len(d.train), len(d.validation), len(d.eval)) == (24, 3, 9) and "`split` column" in d.notes
    assert d.train.types[:3] == ["color", "shape", "yes/no"]
    small = load_vqa(str(csv_path), max_train_samples=10, max_eval_samples=4, max_validation_samples=2)
    assert (len(small.train), len(small.validation), len(small.eval)) == (10, 2, 4)
    assert len(small.train.images) == len(np.unique(small.train.image_index))


def test_hub_dataset_shape_with_embedded_images(monkeypatch):
    import datasets

    red, blue = Image.new("RGB", (6, 6), (255, 0, 0)), Image.new("RGB", (6, 6), (0, 0, 255))
    feats = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
    )

    def split(images, answers):
        return datasets.Dataset.from_dict(
            {"image": images, "question": ["what colour?"] * len(images), "answer": answers}, features=feats
        )

    dd = datasets.DatasetDict(
        {"train": split([red, blue, red], ["red", "blue", "red, crimson"]), "test": split([blue], ["blue"]),
         "validation": split([red, blue], ["red", "blue"])}
    )  # fmt: skip
    monkeypatch.setattr(datasets, "load_dataset", lambda repo, config=None: dd)
    d = load_vqa("someone/daquar-like")
    assert d.source == "hub someone/daquar-like" and "validation: hub split validation" in d.notes
    assert d.train.answers == ["red", "blue", "red"]  # official validation: nothing carved from train
    assert len(d.train.images) == 2 and d.train.image_index.tolist() == [0, 1, 0]  # the same picture, once
    assert d.eval.images.load(0).getpixel((0, 0)) == (0, 0, 255)
    assert d.validation.answers == ["red", "blue"] and d.full_sizes == {
        "train": 3,
        "validation": 2,
        "eval": 1,
    }
    # train / validation only (food101's shape): validation is the test split, validation is carved from train
    del dd["test"]
    d = load_vqa("someone/daquar-like")
    assert d.eval.answers == ["red", "blue"] and "hub splits train / validation" in d.notes
    assert (
        len(d.validation.images) == 1 and len(d.train.images) == 1
    )  # by image: a picture's questions together


def _shape_rows(folder, names):
    # one table per name, 2 images each with 2 questions; images named after their table
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name in names:
        rows = ["image,question,answer"]
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / "images" / f"{name}{i}.png")
            rows += [f"images/{name}{i}.png,what color is the shape?,{'red' if i else 'blue'}",
                     f"images/{name}{i}.png,is there a red shape?,{'yes' if i else 'no'}"]  # fmt: skip
        (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")


def test_folder_with_train_val_and_test_tables(tmp_path):
    _shape_rows(tmp_path, ["train", "val", "test"])
    d = load_vqa(str(tmp_path))
    assert d.full_sizes == {"train": 4, "validation": 4, "eval": 4}  # all three official: nothing carved
    assert all("/val" in n for n in d.validation.images.names) and all(
        "/test" in n for n in d.eval.images.names
    )
    assert "files train.csv / val.csv / test.csv (test: test.csv)" in d.notes
    (
        tmp_path / "test.csv"
    ).unlink()  # train + val only: val is the test split, validation is carved from train
    d = load_vqa(str(tmp_path))
    assert all("/val" in n for n in d.eval.images.names)
    assert len(d.validation.images) == 1 and all("/train" in n for n in d.validation.images.names)


def test_split_column_with_test_and_validation_rows(tmp_path):
    csv_path = make_shapes_set(tmp_path / "s")
    lines = csv_path.read_text().splitlines()
    # images 3, 7, 11 are test; make images 0 and 1 validation
    lines = [line.replace(",train", ",validation") if line.startswith(("images/img0.", "images/img1.")) else line
             for line in lines]  # fmt: skip
    csv_path.write_text("\n".join(lines) + "\n")
    d = load_vqa(str(csv_path))
    assert (len(d.train), len(d.validation), len(d.eval)) == (21, 6, 9)  # nothing carved
    assert sorted(d.validation.images.names)[0].endswith("img0.png")
