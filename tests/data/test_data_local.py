"""Tests of local data: CSV/TSV/JSON/JSONL/Parquet files, image columns, image folders, and every bad-input message.

Builds tiny files under tmp_path; no network, well under a second each.
"""

import json

import datasets
import numpy as np
import pytest
from PIL import Image

from peftlab.data import IMAGE, TEXT, infer_task, load_data
from peftlab.errors import BadInput

ROWS = [("good day", "pos"), ("bad day", "neg"), ("fine", "neu")] * 4  # 12 rows, 4 per class


def write_csv(path, rows, header=("text", "label"), sep=","):
    path.write_text("\n".join([sep.join(header)] + [sep.join(map(str, r)) for r in rows]) + "\n")
    return path


def save_image(path, value=0, size=(6, 4), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_file_format_gives_the_same_data(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    records = [{"text": t, "label": y} for t, y in ROWS]
    if suffix in (".csv", ".tsv"):
        write_csv(path, ROWS, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".json":
        path.write_text(json.dumps(records))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in records))
    else:
        datasets.Dataset.from_list(records).to_parquet(str(path))
    data = load_data(str(path))
    assert data.task == TEXT and data.label_names == ["neg", "neu", "pos"]  # sorted unique names
    # 4 a class: 1 to test (20%), then 1 of the 3 left to validation (10%, at least 1), 2 to train
    assert data.full_sizes == {"train": 6, "validation": 3, "eval": 3}
    assert sorted(data.eval.labels.tolist()) == sorted(data.validation.labels.tolist()) == [0, 1, 2]
    assert all(isinstance(t, str) for t in data.train.inputs)
    assert str(path) in data.source and "no official split" in data.notes
    assert infer_task(str(path)) == TEXT


def test_int_labels_and_custom_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", [(f"doc {i}", i % 2 * 7) for i in range(10)], header=("body", "y"))
    data = load_data(str(path), text_column="body", label_column="y", split_seed=3)
    assert data.label_names == ["0", "7"]
    assert set(data.train.labels.tolist()) == {0, 1}
    assert "columns 'body' -> 'y'" in data.notes


def test_tsv_keeps_quotes_in_tweets(tmp_path):
    rows = [('he said "hi', "a"), ("x", "b")] * 3
    data = load_data(str(write_csv(tmp_path / "t.tsv", rows, sep="\t")))
    assert 'he said "hi' in data.train.inputs + data.eval.inputs


def test_image_column_with_relative_and_absolute_paths(tmp_path):
    rows = []
    for i in range(8):
        rel = f"imgs/{i}.png"
        save_image(tmp_path / rel, value=i * 30)
        rows.append((rel if i % 2 else str(tmp_path / rel), "cat" if i < 4 else "dog"))
    path = write_csv(tmp_path / "pics.csv", rows, header=("file", "kind"))
    assert infer_task(str(path), image_column="file") == IMAGE
    data = load_data(str(path), image_column="file", label_column="kind", max_train_samples=2)
    assert data.task == IMAGE and data.label_names == ["cat", "dog"]
    assert [im.mode for im in data.train.inputs] == ["RGB", "RGB"] and data.train.inputs[0].size == (6, 4)
    assert sorted(data.train.labels.tolist()) == [0, 1]


def test_image_folder_with_class_subfolders(tmp_path):
    for cls in ("zebra", "ant"):
        for i in range(5):
            save_image(tmp_path / "pics" / cls / f"{i}.png", value=i, mode="RGBA")
    (tmp_path / "pics" / "ant" / "notes.txt").write_text("not an image")
    data = load_data(str(tmp_path / "pics"))
    assert data.task == IMAGE and data.label_names == ["ant", "zebra"]
    assert data.full_sizes == {"train": 6, "validation": 2, "eval": 2}
    assert all(im.mode == "RGB" for im in [*data.train.inputs, *data.validation.inputs])
    assert infer_task(str(tmp_path / "pics")) == IMAGE


def test_folder_with_train_and_test_uses_them(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                save_image(tmp_path / split / cls / f"{i}.jpg", mode="RGB")
    data = load_data(str(tmp_path))
    assert data.full_sizes == {"train": 4, "validation": 2, "eval": 4}  # validation carved: 1 of 3 a class
    assert "official split train/test" in data.notes and "carved from train" in data.notes
    with pytest.raises(BadInput, match=r"no split 'dev'.*\(splits: train, test\).*--eval-split"):
        load_data(str(tmp_path), eval_split="dev")


def test_folder_with_split_files(tmp_path):
    write_csv(tmp_path / "train.csv", ROWS)
    write_csv(tmp_path / "validation.csv", ROWS[:3])
    data = load_data(str(tmp_path))
    # no test file: validation.csv is the test split, validation is carved from train.csv
    assert data.full_sizes == {"train": 9, "validation": 3, "eval": 3}
    assert "official split train/validation (validation used as the test split)" in data.notes


def test_same_seed_same_split_for_files(tmp_path):
    path = write_csv(tmp_path / "d.csv", [(f"t{i}", i % 3) for i in range(30)])
    a, b = load_data(str(path), split_seed=5), load_data(str(path), split_seed=5)
    assert a.eval.inputs == b.eval.inputs and a.train.inputs == b.train.inputs
    assert list(a.validation.inputs) == list(b.validation.inputs)
    other = load_data(str(path), split_seed=6)
    assert other.eval.inputs != a.eval.inputs and list(other.validation.inputs) != list(a.validation.inputs)


@pytest.mark.parametrize(
    "names", [("train", "validation", "test"), ("train", "dev", "test"), ("train", "valid", "test")]
)
def test_folder_with_train_validation_and_test_files_uses_all_three(tmp_path, names):
    train, val, test = names
    write_csv(tmp_path / f"{train}.csv", [(f"train {i}", "ab"[i % 2]) for i in range(8)])
    write_csv(tmp_path / f"{val}.csv", [(f"val {i}", "ab"[i % 2]) for i in range(4)])
    write_csv(tmp_path / f"{test}.tsv", [(f"test {i}", "ab"[i % 2]) for i in range(6)], sep="\t")
    data = load_data(str(tmp_path), max_validation_samples=2)
    assert data.full_sizes == {"train": 8, "validation": 4, "eval": 6}  # nothing carved
    assert "official split train/test" in data.notes and f"validation: official split {val}" in data.notes
    assert data.train.inputs == [f"train {i}" for i in range(8)]
    assert all(t.startswith("val ") for t in data.validation.inputs) and len(data.validation.inputs) == 2
    assert sorted(data.validation.labels.tolist()) == [0, 1]  # the subset is stratified too
    assert all(t.startswith("test ") for t in data.eval.inputs)


def test_image_folders_train_val_test(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        for cls in ("a", "b"):
            for i in range(n):
                save_image(tmp_path / split / cls / f"{i}.png", value=40 * i)
    data = load_data(str(tmp_path))
    assert data.full_sizes == {"train": 8, "validation": 4, "eval": 6}
    assert all(im.mode == "RGB" for im in data.validation.inputs)
    assert "validation: official split val" in data.notes


def test_validation_inputs_are_read_only_when_asked(tmp_path):
    # a validation image that does not decode: loading succeeds (a plain run never looks), reading it names it
    write_csv(tmp_path / "train.csv", [(f"{i}.png", i % 2) for i in range(4)], header=("image", "label"))
    write_csv(tmp_path / "dev.csv", [("broken.png", 0), ("broken.png", 1)], header=("image", "label"))
    write_csv(tmp_path / "test.csv", [(f"{i}.png", i % 2) for i in range(2)], header=("image", "label"))
    for i in range(4):
        save_image(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    data = load_data(str(tmp_path))
    assert len(data.validation.inputs) == 2 and data.validation.labels.tolist() == [0, 1]
    with pytest.raises(BadInput, match=r"broken\.png.*does not decode"):
        data.validation.inputs[0]


def test_max_validation_samples_defaults_to_the_test_cap(tmp_path):
    path = write_csv(tmp_path / "d.csv", [(f"t{i}", i % 3) for i in range(105)])
    data = load_data(str(path), max_eval_samples=4)
    assert data.full_sizes == {
        "train": 75,
        "validation": 9,
        "eval": 21,
    }  # 7 a class to test, then 2.8 -> 3 of 28
    assert len(data.eval.labels) == len(data.validation.labels) == 4
    assert len(load_data(str(path)).validation.labels) == 9  # no caps: all of it
    assert len(load_data(str(path), max_eval_samples=4, max_validation_samples=6).validation.labels) == 6
    with pytest.raises(BadInput, match="--max-validation-samples must be a positive whole number"):
        load_data(str(path), max_validation_samples=0)


# --- bad input: each one line, what was wrong and what to do --------------------------------------------------


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message and ":" in message
    return message


def test_file_not_found(tmp_path):
    with pytest.raises(BadInput, match="file not found") as e:
        load_data(str(tmp_path / "nope.csv"))
    one_line(e)


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(BadInput, match="is empty"):
        load_data(str(tmp_path / "e.csv"))
    (tmp_path / "h.csv").write_text("text,label\n")
    with pytest.raises(BadInput, match="no rows"):
        load_data(str(tmp_path / "h.csv"))


def test_missing_label_column_names_the_columns_and_the_flag(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS, header=("text", "sentiment"))
    with pytest.raises(
        BadInput, match=r"no label column in .*\(columns: text, sentiment\): pass --label-column"
    ) as e:
        load_data(str(path))
    one_line(e)
    with pytest.raises(BadInput, match=r"no column 'polarity' .*pass --label-column"):
        load_data(str(path), label_column="polarity")


def test_one_class_only(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "pos"), ("b", "pos")])
    with pytest.raises(BadInput, match=r"one class only \('pos'\)"):
        load_data(str(path))


def test_missing_text_column(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS, header=("words", "label"))
    with pytest.raises(BadInput, match=r"found no text or image column .*--text-column"):
        load_data(str(path))
    with pytest.raises(BadInput, match=r"no text column .*\(columns: words, label\): pass --text-column"):
        load_data(str(path), task=TEXT)


def test_image_that_does_not_decode_is_named(tmp_path):
    for i in range(4):
        save_image(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    rows = [(f"{i}.png", i % 2) for i in range(4)] + [("broken.png", 0), ("broken.png", 1)]
    path = write_csv(tmp_path / "d.csv", rows, header=("image", "label"))
    with pytest.raises(BadInput, match=r"image '.*broken\.png' .*does not decode") as e:
        load_data(str(path))
    one_line(e)


def test_image_path_that_does_not_exist_is_named(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("gone.png", 0), ("gone.png", 1)] * 2, header=("image", "label"))
    with pytest.raises(BadInput, match=r"image file '.*gone\.png'.* not found"):
        load_data(str(path))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3"])
def test_max_samples_must_be_positive_int(tmp_path, bad):
    path = write_csv(tmp_path / "d.csv", ROWS)
    with pytest.raises(BadInput, match="--max-eval-samples must be a positive whole number"):
        load_data(str(path), max_eval_samples=bad)


def test_unknown_eval_split_lists_the_splits(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS)
    with pytest.raises(BadInput, match=r"no split 'test' .*\(splits: train\): pass --eval-split"):
        load_data(str(path), eval_split="test")


def test_unsupported_extension(tmp_path):
    (tmp_path / "d.xlsx").write_bytes(b"PK")
    with pytest.raises(BadInput, match=r"unsupported file type 'd\.xlsx': use \.csv"):
        load_data(str(tmp_path / "d.xlsx"))


def test_folder_without_class_subfolders(tmp_path):
    save_image(tmp_path / "lonely.png")
    with pytest.raises(BadInput, match="has no class subfolders: put images in one subfolder per class"):
        load_data(str(tmp_path))


def test_class_folder_without_images(tmp_path):
    save_image(tmp_path / "a" / "1.png")
    (tmp_path / "b").mkdir()
    with pytest.raises(BadInput, match=r"class folder .*b has no images"):
        load_data(str(tmp_path))


def test_class_with_one_example_cannot_be_split(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "x"), ("c", "y")])
    with pytest.raises(
        BadInput, match="class 'y' has only 1 example, so a stratified train/eval split is impossible"
    ):
        load_data(str(path))


def test_missing_labels_and_bad_json(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "x"), ("b", ""), ("c", "y")])
    with pytest.raises(BadInput, match="1 rows have no label"):
        load_data(str(path))
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(BadInput, match="line 2 of .* is not valid JSON"):
        load_data(str(tmp_path / "d.jsonl"))


def test_label_values_must_be_classes(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", 0.25), ("b", 1.5)] * 3)
    with pytest.raises(BadInput, match="fractional numbers, not classes"):
        load_data(str(path))


def test_unknown_name_near_a_packaged_one():
    with pytest.raises(
        BadInput, match=r"unknown dataset 'vader-tweet': did you mean 'vader-tweets'\?.*hub ids"
    ):
        load_data("vader-tweet")


def test_eval_fraction_and_seed_are_checked(tmp_path):
    path = write_csv(tmp_path / "d.csv", ROWS)
    with pytest.raises(BadInput, match="eval fraction must lie strictly between 0 and 1"):
        load_data(str(path), eval_fraction=1.0)
    with pytest.raises(BadInput, match="split seed must be a whole number"):
        load_data(str(path), split_seed="0")
    assert load_data(str(path), eval_fraction=0.25).notes.count("75/25") == 1
    assert np.bincount(load_data(str(path), eval_fraction=0.5).eval.labels).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    "content",
    [
        {"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]},
        {"data": [{"text": t, "label": y} for t, y in ROWS]},
    ],
)
def test_json_columns_or_records_under_a_key(tmp_path, content):
    (tmp_path / "d.json").write_text(json.dumps(content))
    data = load_data(str(tmp_path / "d.json"))
    assert data.label_names == ["neg", "neu", "pos"]
    assert data.full_sizes == {"train": 6, "validation": 3, "eval": 3}
