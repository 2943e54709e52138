"""VQA data: questions, answers and the images they ask about, from packaged sets, local files or the hub.

`load_vqa("easy-vqa", max_train_samples=2000)` -> VQAData; `VQA_DATASETS` lists the offline sets for `peftlab ls`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from peftlab.data.packaged import fashion_dir
from peftlab.data.split import (
    EVAL_STREAM,
    SPLIT_STREAM,
    TRAIN_STREAM,
    VALIDATION_STREAM,
    VALIDATION_SUBSET_STREAM,
    stratified_subset,
)
from peftlab.data.vqa.easy import easy_dir, load_easy
from peftlab.data.vqa.fashion import load_fashion_vqa
from peftlab.data.vqa.hub import load_hub
from peftlab.data.vqa.local import TABLE_SUFFIXES, Columns, load_local
from peftlab.data.vqa.types import EVAL_FRACTION, VALIDATION_FRACTION, Found, ImageSet, VQAData, VQASplit
from peftlab.errors import BadInput


@dataclass(frozen=True)
class VQADataset:
    name: str
    description: str  # one line for `peftlab ls datasets`
    install: str  # what makes it available here
    files: Callable[[], Path | None] = field(repr=False)
    load: Callable[[], Found] = field(repr=False)
    task: str = "vqa"

    def available(self) -> bool:
        return self.files() is not None


VQA_DATASETS: dict[str, VQADataset] = {}


def register(d: VQADataset) -> None:
    if d.name in VQA_DATASETS:
        raise ValueError(f"VQA dataset {d.name!r} registered twice")
    VQA_DATASETS[d.name] = d


register(VQADataset("easy-vqa", "4,000/1,000 64x64 synthetic shape images, 38,575/9,673 questions, 13 answers (MIT)",
                    "pip install --no-deps easy-vqa==1.0", easy_dir, load_easy))  # fmt: skip
register(VQADataset("fashion-vqa", "2,000/500 2x2 Fashion-MNIST mosaics (56x56), 7 template questions each "
                    "(position, presence, count), 17 answers; generated", "apt-get install -y dataset-fashion-mnist",
                    fashion_dir, load_fashion_vqa))  # fmt: skip


def group_split(
    split: VQASplit, seed: int, fraction: float = EVAL_FRACTION, stream: int = SPLIT_STREAM
) -> tuple[VQASplit, VQASplit]:
    """Hold out `fraction` of the images (at least 1, at most all but 1) with all their questions, so no image is on
    both sides; which ones depends on (seed, stream) only. -> (kept, held out)."""
    m = len(split.images)
    if m < 2:
        raise BadInput("the data has one image and no eval split: give more images or an eval file")
    perm = np.random.default_rng([seed, stream]).permutation(m)
    held = np.zeros(m, dtype=bool)
    held[perm[: min(m - 1, max(1, round(m * fraction)))]] = True
    is_held = held[split.image_index]  # (N,)
    return split.subset(np.flatnonzero(~is_held)), split.subset(np.flatnonzero(is_held))


def _subset(split: VQASplit, n: int | None, seed: int, stream: int) -> VQASplit:
    if n is None or n >= len(split):
        return split
    _, labels = np.unique(split.answers, return_inverse=True)  # (N,) answer ids, for a stratified pick
    return split.subset(stratified_subset(labels.astype(np.int64), n, seed, stream))


def find(name: str, cols: Columns, eval_split: str | None) -> Found:
    if name in VQA_DATASETS:
        d = VQA_DATASETS[name]
        if not d.available():
            raise BadInput(f"--dataset {name} is not available here: {d.install}")
        return d.load()
    path = Path(name).expanduser()
    if path.exists():
        return load_local(path, cols)
    if name.startswith((".", "/", "~")) or Path(name).suffix.lower() in TABLE_SUFFIXES + (".txt",):
        raise BadInput(f"--dataset {name}: no such file or folder")
    return load_hub(name, cols, eval_split)


def load_vqa(
    name: str,
    *,
    split_seed: int = 0,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    max_validation_samples: int | None = None,
    columns: Columns | None = None,
    eval_split: str | None = None,
) -> VQAData:
    """Train / validation / test questions. Test: the data's own, else EVAL_FRACTION of the images with their
    questions. Validation: the data's own, else VALIDATION_FRACTION of the training images with their questions (none
    when training has a single image). Both depend on split_seed only. Subsets are stratified by answer;
    max_validation_samples None: max_eval_samples' cap, else all."""
    found = find(name, columns or Columns(), eval_split)
    notes = list(found.notes)
    train, ev, val = found.train, found.eval, found.validation
    if ev is None:
        train, ev = group_split(train, split_seed)
        notes.append(
            f"no eval split: {EVAL_FRACTION:.0%} of the images held out with their questions (split seed {split_seed})"
        )
    if val is None:
        if len(train.images) < 2:
            train, val = train, train.subset(np.zeros(0, dtype=np.int64))
            notes.append("no validation: training has a single image")
        else:
            train, val = group_split(train, split_seed, VALIDATION_FRACTION, VALIDATION_STREAM)
            notes.append(
                f"validation: {VALIDATION_FRACTION:.0%} of the training images held out with their questions "
                f"(split seed {split_seed})"
            )
    full = {"train": len(train), "validation": len(val), "eval": len(ev)}
    max_val = max_validation_samples if max_validation_samples is not None else max_eval_samples
    train = _subset(train, max_train_samples, split_seed, TRAIN_STREAM)
    val = _subset(val, max_val, split_seed, VALIDATION_SUBSET_STREAM)
    ev = _subset(ev, max_eval_samples, split_seed, EVAL_STREAM)
    parts = [(train, "train"), (val, "validation"), (ev, "eval")]
    if any(len(s) < full[k] for s, k in parts):
        shown = ", ".join(f"{len(s)} of {full[k]} {k} questions ({len(s.images)} images)" for s, k in parts)
        notes.append(f"subsets stratified by answer (split seed {split_seed}): {shown}")
    return VQAData(name, train, ev, found.source, "; ".join(notes), full, found.identity, val)


__all__ = ["VQA_DATASETS", "Columns", "Found", "ImageSet", "VQAData", "VQASplit", "load_vqa"]
