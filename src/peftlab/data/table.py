"""Column and label logic shared by hub datasets and local files: {split name: datasets.Dataset} -> Pools.

`hub.py` and `local.py` both end in `pools_from_splits(splits, what=..., source=..., ...)`; no pixels are decoded here.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np

from peftlab.data.images import to_rgb
from peftlab.data.types import IMAGE, TEXT, Pool, Pools
from peftlab.errors import BadInput

TEXT_COLUMNS = ("text", "sentence", "tweet", "content", "review")
IMAGE_COLUMNS = ("image", "img", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "class", "target")
TEST_SPLITS = ("test",)
VALIDATION_SPLITS = ("validation", "valid", "val", "dev")  # first present and labelled wins
EVAL_SPLITS = TEST_SPLITS + VALIDATION_SPLITS  # the test split: first present and labelled wins


def _listed(names) -> str:
    return ", ".join(str(n) for n in names) or "none"


def _raw(ds: datasets.Dataset, column: str) -> list:
    # one column as Python values, straight from Arrow: images stay {bytes, path} dicts, nothing is decoded
    return ds.with_format("arrow")[column].to_pylist()


def resolve_columns(
    columns: list[str],
    features: datasets.Features | None,
    what: str,
    task: str | None,
    text_column: str | None,
    label_column: str | None,
    image_column: str | None,
) -> tuple[str, str, str]:
    """-> (task, input column, label column), from the flags, then the features, then the usual names."""
    features = features or {}
    have = f"{what} (columns: {_listed(columns)})"
    for flag, given in (
        ("--text-column", text_column),
        ("--label-column", label_column),
        ("--image-column", image_column),
    ):
        if given is not None and given not in columns:
            raise BadInput(f"no column {given!r} in {have}: pass {flag} with one of those")

    if label_column is None:
        class_labels = [c for c in columns if isinstance(features.get(c), datasets.ClassLabel)]
        found = [c for c in LABEL_COLUMNS if c in columns] or class_labels[:1]
        if not found:
            raise BadInput(f"no label column in {have}: pass --label-column NAME")
        label_column = found[0]

    image_features = [c for c in columns if isinstance(features.get(c), datasets.Image)]
    guess_image = image_column or next(
        iter(image_features + [c for c in IMAGE_COLUMNS if c in columns]), None
    )
    guess_text = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if task is None:
        if image_column or (guess_image and not text_column):
            task = IMAGE
        elif guess_text:
            task = TEXT
        else:
            raise BadInput(
                f"found no text or image column in {have}: pass --text-column NAME or --image-column NAME"
            )
    if task == TEXT and guess_text is None:
        raise BadInput(f"no text column in {have}: pass --text-column NAME")
    if task == IMAGE and guess_image is None:
        raise BadInput(
            f"no image column in {have}: pass --image-column NAME (a column of images or image file paths)"
        )
    input_column = guess_text if task == TEXT else guess_image
    if input_column == label_column:
        raise BadInput(
            f"column {input_column!r} of {what} cannot be both input and label: pass --label-column NAME"
        )
    return task, input_column, label_column


def encode_labels(
    values: dict[str, list], feature: object, label_column: str, what: str
) -> tuple[list[str], dict[str, np.ndarray]]:
    """{split: raw label values} -> (label_names, {split: (N,) int64 in [0, K)}), one mapping for all splits."""
    where = f"label column {label_column!r} of {what}"
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        arrays = {s: np.asarray(v, dtype=np.int64) for s, v in values.items()}
        for split, labels in arrays.items():
            bad = int(((labels < 0) | (labels >= len(names))).sum())
            if bad:
                raise BadInput(
                    f"{bad} rows of split {split!r} in {where} are unlabelled (-1) or out of range: "
                    "drop those rows, or pick a labelled split with --eval-split"
                )
    else:
        flat = [v for vs in values.values() for v in vs]
        if any(isinstance(v, (list, dict)) for v in flat):
            raise BadInput(f"{where} holds lists or records (multi-label?): give one class per row")
        missing = sum(
            v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())
            for v in flat
        )
        if missing:
            raise BadInput(f"{missing} rows have no label in {where}: fill in or drop those rows")
        if all(isinstance(v, (bool, int, np.integer)) for v in flat):
            keys = sorted(set(flat))
        elif all(isinstance(v, (int, float, np.number)) for v in flat):
            if any(float(v) != int(v) for v in flat):
                raise BadInput(f"{where} holds fractional numbers, not classes: bin them into classes first")
            keys = sorted({int(v) for v in flat})
            values = {s: [int(v) for v in vs] for s, vs in values.items()}
        else:
            values = {s: [str(v) for v in vs] for s, vs in values.items()}
            keys = sorted({v for vs in values.values() for v in vs})
        index = {k: i for i, k in enumerate(keys)}
        names = [str(k) for k in keys]
        arrays = {s: np.array([index[v] for v in vs], dtype=np.int64) for s, vs in values.items()}
    present = np.unique(np.concatenate(list(arrays.values())))
    if len(names) < 2 or len(present) < 2:
        only = ", ".join(repr(names[int(i)]) for i in present)
        raise BadInput(f"{where} has one class only ({only}): classification needs at least 2 classes")
    return names, arrays


def _unlabelled(ds: datasets.Dataset, label_column: str) -> bool:
    # hub test splits are often all -1 (ClassLabel) or all null: useless for evaluation
    values = _raw(ds, label_column)
    return all(v is None or v == -1 for v in values)


class Chosen(NamedTuple):
    """Which splits of the data play which part; None: not in the data (load_data carves it from train)."""

    train: str
    validation: str | None
    test: str | None
    note: str


def choose_splits(
    splits: dict[str, datasets.Dataset], what: str, eval_split: str | None, label_column: str | None
) -> Chosen:
    """-> the train split, the official validation and test splits (or None), and a note on the choice.

    Test: --eval-split when given, else `test`, else the first validation-named split (food101 ships train/validation:
    its validation is the test split). Validation: the first validation-named split that is not the test split.
    With label_column given, splits whose labels are all missing are skipped (and said so)."""
    names = list(splits)
    if "train" in splits:
        train = "train"
    elif len(names) == 1:
        train = names[0]
    else:
        raise BadInput(f"{what} has no 'train' split (splits: {_listed(names)}): provide one named 'train'")
    skipped: list[str] = []

    def usable(name: str) -> bool:
        if name not in splits or name == train:
            return False
        if label_column is not None and _unlabelled(splits[name], label_column):
            if name not in skipped:
                skipped.append(name)
            return False
        return True

    how = ""
    if eval_split is not None:
        if eval_split not in splits:
            raise BadInput(
                f"no split {eval_split!r} in {what} (splits: {_listed(names)}): pass --eval-split with one of those"
            )
        if eval_split == train:
            raise BadInput(
                f"--eval-split {eval_split!r} is the training split of {what}: pick another, or leave it unset for a stratified split"
            )
        test, how = eval_split, " (chosen by --eval-split)"
    else:
        test = next((n for n in TEST_SPLITS + VALIDATION_SPLITS if usable(n)), None)
        if test is not None and test not in TEST_SPLITS:
            how = f" ({test} used as the test split)"
    validation = next((n for n in VALIDATION_SPLITS if n != test and usable(n)), None)
    notes = []
    if test is not None:
        notes.append(f"official split {train}/{test}{how}")
    if validation is not None:
        notes.append(f"validation: official split {validation}")
    if skipped:
        notes.append(f"{_listed(skipped)} unlabelled, not used")
    return Chosen(train, validation, test, "; ".join(notes))


def _taker(ds: datasets.Dataset, column: str, task: str, base_dir: Path | None, split: str):
    # (n,) indices -> n inputs; only the selected rows are read, and only their images decoded
    def take(idx: np.ndarray) -> list:
        values = _raw(ds.select(idx), column) if len(idx) else []
        if task == IMAGE:
            return [to_rgb(v, base_dir, f"row {i} of split {split!r}") for i, v in zip(idx, values)]
        for i, v in zip(idx, values):
            if v is None:
                raise BadInput(
                    f"row {i} of split {split!r} has no text in column {column!r}: fill in or drop that row"
                )
        return [v if isinstance(v, str) else str(v) for v in values]

    return take


def pools_from_splits(
    splits: dict[str, datasets.Dataset],
    *,
    what: str,
    source: str,
    task: str | None,
    text_column: str | None,
    label_column: str | None,
    image_column: str | None,
    eval_split: str | None,
    base_dir: Path | None = None,
) -> Pools:
    """The shared path: pick splits and columns, encode labels once for all splits, defer the inputs."""
    train_ds = splits[choose_splits(splits, what, eval_split, None).train]
    task, input_column, label_column = resolve_columns(
        train_ds.column_names, train_ds.features, what, task, text_column, label_column, image_column
    )
    chosen = choose_splits(splits, what, eval_split, label_column)
    used = {chosen.train: train_ds}
    for name in (chosen.test, chosen.validation):
        if name is None:
            continue
        ds = splits[name]
        for column in (input_column, label_column):
            if column not in ds.column_names:
                raise BadInput(
                    f"split {name!r} of {what} lacks column {column!r} (columns: {_listed(ds.column_names)}): "
                    "give it the same columns as train"
                )
        used[name] = ds
    for name, ds in used.items():
        if len(ds) == 0:
            raise BadInput(f"split {name!r} of {what} has no rows: add examples")
    names, labels = encode_labels(
        {s: _raw(ds, label_column) for s, ds in used.items()},
        train_ds.features.get(label_column),
        label_column,
        what,
    )
    pools = {s: Pool(labels[s], _taker(ds, input_column, task, base_dir, s)) for s, ds in used.items()}
    columns = f"columns {input_column!r} -> {label_column!r}"
    return Pools(
        task=task,
        label_names=names,
        train=pools[chosen.train],
        eval=pools[chosen.test] if chosen.test is not None else None,
        validation=pools[chosen.validation] if chosen.validation is not None else None,
        source=source,
        split_note="; ".join(n for n in (columns, chosen.note) if n),
    )
