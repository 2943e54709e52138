"""load_data: one name (packaged, local path, hub id) -> ClassificationData with fixed train / validation / test
splits and stratified subsets.

Called by the run and compare code; `infer_task(name)` answers "text or image?" as cheaply as the source allows.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np

from peftlab.data import hub
from peftlab.data.local import local_splits, looks_like_path
from peftlab.data.packaged import PACKAGED_DATASETS
from peftlab.data.split import (
    EVAL_STREAM,
    TRAIN_STREAM,
    VALIDATION_SUBSET_STREAM,
    carve_validation,
    check_max_samples,
    stratified_split,
    stratified_subset,
)
from peftlab.data.table import pools_from_splits, resolve_columns
from peftlab.data.types import IMAGE, TASKS, TEXT, ClassificationData, LazyInputs, Pool, Pools, Split
from peftlab.errors import BadInput

EVAL_FRACTION = 0.2  # share of each class held out for test when the data has no test split
VALIDATION_FRACTION = 0.1  # share of each class left for training held out for validation when there is none


def _check_task(task: str | None) -> str | None:
    if task is not None and task not in TASKS:
        raise BadInput(
            f"unknown task {task!r} for a classification dataset: pass --task {' or '.join(TASKS)}"
        )
    return task


def _packaged_names() -> list[str]:
    return list(PACKAGED_DATASETS)


def _not_found(name: str) -> BadInput:
    return BadInput(
        f"file not found: {name} (looked in {Path(name).expanduser().resolve().parent}): check the path"
    )


def _near_miss(name: str) -> None:
    # a typo of a packaged name should not send an offline user to the hub (which retries for ~20 s)
    close = difflib.get_close_matches(name.lower(), _packaged_names(), n=1, cutoff=0.8)
    if close and name not in PACKAGED_DATASETS:
        raise BadInput(
            f"unknown dataset {name!r}: did you mean {close[0]!r}? Offline datasets: {', '.join(_packaged_names())}; "
            "local paths and hub ids (name or name:config) are also accepted"
        )


def find_pools(
    name: str,
    task: str | None,
    text_column: str | None,
    label_column: str | None,
    image_column: str | None,
    eval_split: str | None,
) -> Pools:
    """The name's source: packaged first, then an existing local path, then the hub."""
    if name in PACKAGED_DATASETS:
        flags = {
            "--text-column": text_column,
            "--label-column": label_column,
            "--image-column": image_column,
            "--eval-split": eval_split,
        }
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            raise BadInput(f"packaged dataset {name!r} has fixed columns and splits: drop {', '.join(given)}")
        return PACKAGED_DATASETS[name].load()
    columns = {"text_column": text_column, "label_column": label_column, "image_column": image_column}
    path = Path(name).expanduser()
    if path.exists():
        splits, base_dir, what = local_splits(path)
        return pools_from_splits(
            splits,
            what=what,
            source=f"local {what}",
            task=task,
            eval_split=eval_split,
            base_dir=base_dir,
            **columns,
        )
    if looks_like_path(name):
        raise _not_found(name)
    _near_miss(name)
    splits = hub.hub_splits(name, _packaged_names())
    what = f"hub dataset {name}"
    return pools_from_splits(
        splits,
        what=what,
        source=f"hub {name} (datasets.load_dataset)",
        task=task,
        eval_split=eval_split,
        **columns,
    )


def _subset(
    pool: Pool, n: int | None, seed: int, stream: int, part: str, notes: list[str], lazy: bool = False
) -> Split:
    full = len(pool.labels)
    idx = np.arange(full)
    if n is not None and n < full:
        idx = stratified_subset(pool.labels, n, seed, stream)
        k = len(np.unique(pool.labels))
        short = "" if n >= k else f"; {n} < {k} classes, so not every class is present"
        notes.append(f"{part} subset {len(idx)} of {full} (stratified, split seed {seed}{short})")
    inputs = LazyInputs(pool.take, idx) if lazy else pool.take(idx)
    return Split(inputs=inputs, labels=pool.labels[idx].astype(np.int64))


def assemble(
    name: str,
    pools: Pools,
    *,
    split_seed: int,
    eval_fraction: float,
    max_train_samples: int | None,
    max_eval_samples: int | None,
    max_validation_samples: int | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
) -> ClassificationData:
    """Pools -> fixed test split (carved from the pool when the data has none) -> fixed validation split (carved from
    what train keeps when the data has none) -> stratified subsets -> train and test inputs made (validation's on
    first use). max_validation_samples None: the test subset's cap (max_eval_samples), else all."""
    notes = [pools.split_note] if pools.split_note else []
    train, evaluation, validation = pools.train, pools.eval, pools.validation
    if evaluation is None:
        train_idx, eval_idx = stratified_split(
            pools.train.labels, eval_fraction, split_seed, pools.label_names
        )
        train, evaluation = pools.train.subset(train_idx), pools.train.subset(eval_idx)
        pct = round(100 * eval_fraction, 6)
        notes.append(f"no official split: stratified {100 - pct:g}/{pct:g}, split seed {split_seed}")
    if validation is None:
        train_idx, val_idx = carve_validation(train.labels, validation_fraction, split_seed)
        lonely = sorted(set(train.labels.tolist()) - set(train.labels[val_idx].tolist()))
        train, validation = train.subset(train_idx), train.subset(val_idx)
        pct = round(100 * validation_fraction, 6)
        note = f"validation: {pct:g}% of each training class (at least 1) carved from train, split seed {split_seed}"
        if lonely:
            names = ", ".join(repr(pools.label_names[c]) for c in lonely)
            note += f" (one training example, so not in validation: {names})"
        notes.append(note)
    full_sizes = {
        "train": len(train.labels),
        "validation": len(validation.labels),
        "eval": len(evaluation.labels),
    }
    max_validation = max_validation_samples if max_validation_samples is not None else max_eval_samples
    train_split = _subset(train, max_train_samples, split_seed, TRAIN_STREAM, "train", notes)
    val_split = _subset(
        validation, max_validation, split_seed, VALIDATION_SUBSET_STREAM, "validation", notes, lazy=True
    )
    eval_split = _subset(evaluation, max_eval_samples, split_seed, EVAL_STREAM, "test", notes)
    return ClassificationData(
        name=name,
        task=pools.task,
        label_names=list(pools.label_names),
        train=train_split,
        eval=eval_split,
        validation=val_split,
        source=pools.source,
        notes="; ".join(notes),
        full_sizes=full_sizes,
    )


def load_data(
    name: str,
    *,
    task: str | None = None,
    split_seed: int = 0,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_validation_samples: int | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    image_column: str | None = None,
    eval_split: str | None = None,
    eval_fraction: float = EVAL_FRACTION,
    validation_fraction: float = VALIDATION_FRACTION,
) -> ClassificationData:
    """A packaged name, a local file/folder or a hub id (name or name:config) -> ClassificationData.

    The splits and the subsets depend on split_seed only (never on the training seed), so every method sees the same
    data. Test: the data's own (see table.choose_splits), else eval_fraction of each class. Validation: the data's own,
    else validation_fraction of each class of what train keeps. max_eval_samples caps test; max_validation_samples caps
    validation (None: max_eval_samples' cap, else all).
    """
    if not isinstance(name, str) or not name.strip():
        raise BadInput(
            f"dataset name {name!r} is empty: pass --dataset NAME ({', '.join(_packaged_names())}, a path or a hub id)"
        )
    _check_task(task)
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)):
        raise BadInput(f"split seed must be a whole number, got {split_seed!r}: pass an integer")
    if not (isinstance(eval_fraction, (int, float)) and 0 < eval_fraction < 1):
        raise BadInput(
            f"eval fraction must lie strictly between 0 and 1, got {eval_fraction!r}: pass e.g. 0.2"
        )
    if not (isinstance(validation_fraction, (int, float)) and 0 < validation_fraction < 1):
        raise BadInput(
            f"validation fraction must lie strictly between 0 and 1, got {validation_fraction!r}: pass e.g. 0.1"
        )
    packaged = PACKAGED_DATASETS.get(name)
    if task is not None and packaged is not None and packaged.task != task:
        raise BadInput(
            f"{name!r} is {packaged.task} data, not {task}: pass --task {packaged.task} or choose another dataset"
        )
    max_train = check_max_samples(max_train_samples, "--max-train-samples")
    max_eval = check_max_samples(max_eval_samples, "--max-eval-samples")
    max_validation = check_max_samples(max_validation_samples, "--max-validation-samples")
    pools = find_pools(name, task, text_column, label_column, image_column, eval_split)
    if task is not None and pools.task != task:
        raise BadInput(
            f"{name!r} is {pools.task} data, not {task}: pass --task {pools.task} or choose another dataset"
        )
    return assemble(
        name,
        pools,
        split_seed=int(split_seed),
        eval_fraction=float(eval_fraction),
        max_train_samples=max_train,
        max_eval_samples=max_eval,
        max_validation_samples=max_validation,
        validation_fraction=float(validation_fraction),
    )


def infer_task(
    name: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    image_column: str | None = None,
) -> str:
    """The task a dataset name implies: packaged table, local columns/folders (no images decoded), hub metadata."""
    if name in PACKAGED_DATASETS:
        return PACKAGED_DATASETS[name].task
    if image_column is not None or text_column is not None:
        return IMAGE if image_column is not None else TEXT
    path = Path(name).expanduser()
    if path.exists():
        splits, _, what = local_splits(path)
        train = splits["train"] if "train" in splits else next(iter(splits.values()))
        return resolve_columns(train.column_names, train.features, what, None, None, label_column, None)[0]
    if looks_like_path(name):
        raise _not_found(name)
    known = hub.HUB_TASKS.get(hub.parse_name(name)[0].lower())
    if known is not None:
        return known
    _near_miss(name)
    features = hub.hub_features(name, _packaged_names())
    return resolve_columns(list(features), features, f"hub dataset {name}", None, None, label_column, None)[0]
