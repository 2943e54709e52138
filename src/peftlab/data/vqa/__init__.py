"""VQA data: questions, answers and the images they ask about, from packaged sets, local files or the hub.

`load_vqa("easy-vqa", max_train_samples=2000)` -> VQAData; `VQA_DATASETS` lists the offline sets for `peftlab ls`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from peftlab.data.packaged import fashion_dir
from peftlab.data.split import EVAL_STREAM, TRAIN_STREAM, stratified_subset
from peftlab.data.vqa.easy import easy_dir, load_easy
from peftlab.data.vqa.fashion import load_fashion_vqa
from peftlab.data.vqa.hub import load_hub
from peftlab.data.vqa.local import TABLE_SUFFIXES, Columns, load_local
from peftlab.data.vqa.types import EVAL_FRACTION, Found, ImageSet, VQAData, VQASplit
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


def group_split(split: VQASplit, seed: int) -> tuple[VQASplit, VQASplit]:
    """Hold out EVAL_FRACTION of the images with all their questions, so no image is on both sides."""
    m = len(split.images)
    if m < 2:
        raise BadInput("the data has one image and no eval split: give more images or an eval file")
    perm = np.random.default_rng([seed, 0]).permutation(m)
    held = np.zeros(m, dtype=bool)
    held[perm[: max(1, round(m * EVAL_FRACTION))]] = True
    is_eval = held[split.image_index]  # (N,)
    return split.subset(np.flatnonzero(~is_eval)), split.subset(np.flatnonzero(is_eval))


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
    columns: Columns | None = None,
    eval_split: str | None = None,
) -> VQAData:
    found = find(name, columns or Columns(), eval_split)
    notes = list(found.notes)
    train, ev = found.train, found.eval
    if ev is None:
        train, ev = group_split(train, split_seed)
        notes.append(
            f"no eval split: {EVAL_FRACTION:.0%} of the images held out with their questions (split seed {split_seed})"
        )
    full = {"train": len(train), "eval": len(ev)}
    train = _subset(train, max_train_samples, split_seed, TRAIN_STREAM)
    ev = _subset(ev, max_eval_samples, split_seed, EVAL_STREAM)
    if len(train) < full["train"] or len(ev) < full["eval"]:
        notes.append(
            f"subsets stratified by answer (split seed {split_seed}): {len(train)} of {full['train']} train questions "
            f"({len(train.images)} images), {len(ev)} of {full['eval']} eval questions ({len(ev.images)} images)"
        )
    return VQAData(name, train, ev, found.source, "; ".join(notes), full, found.identity)


__all__ = ["VQA_DATASETS", "Columns", "Found", "ImageSet", "VQAData", "VQASplit", "load_vqa"]
