"""VQA data in one shape: questions, answer strings and the distinct images they ask about, split train / validation /
test (`eval` is the test split's name in code), an image's questions always on one side.

Every loader in data/vqa/ returns a `Found`; `load_vqa` (data/vqa/__init__.py) makes it a `VQAData`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from peftlab.data.images import open_rgb
from peftlab.errors import BadInput

EVAL_FRACTION = (
    0.2  # share of images (with all their questions) held out for test when the data has no test split
)
VALIDATION_FRACTION = (
    0.1  # share of the training images (with their questions) held out when there is no validation
)


@dataclass
class ImageSet:
    """The distinct images of a split: a name each (for messages), identifying bytes (the cache key), pixels."""

    names: list[str]  # (M,) where each image comes from: a path, a hub row, a mosaic number
    read: Callable[[int], bytes] = field(
        repr=False
    )  # i -> bytes that identify image i (file bytes, raw pixels)
    load: Callable[[int], Image.Image] = field(repr=False)  # i -> RGB PIL image

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: np.ndarray) -> ImageSet:
        # (m,) indices into this set -> a set of m images, still lazy
        idx = np.asarray(idx, dtype=np.int64)
        return ImageSet(
            [self.names[i] for i in idx], lambda i: self.read(int(idx[i])), lambda i: self.load(int(idx[i]))
        )


@dataclass
class VQASplit:
    questions: list[str]  # (N,)
    answers: list[str]  # (N,) one answer string each (multi-answer data: the first, see notes)
    image_index: np.ndarray  # (N,) int64 into images
    images: ImageSet  # (M,) distinct images, M <= N
    types: list[str] | None = None  # (N,) question type where the data has types

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, q_idx: np.ndarray) -> VQASplit:
        """Keep questions q_idx (n,) and only the images they ask about, renumbered 0..m-1."""
        q_idx = np.asarray(q_idx, dtype=np.int64)
        used, new_index = np.unique(self.image_index[q_idx], return_inverse=True)  # (m,), (n,) into used
        return VQASplit(
            questions=[self.questions[i] for i in q_idx],
            answers=[self.answers[i] for i in q_idx],
            image_index=new_index.astype(np.int64),
            images=self.images.subset(used),
            types=[self.types[i] for i in q_idx] if self.types is not None else None,
        )


@dataclass
class VQAData:
    name: str  # as the user gave it
    train: VQASplit
    eval: VQASplit  # the test split: every reported metric comes from it (also reachable as `.test`)
    source: str  # packaged file, hub id, local path
    notes: str  # how the splits, subsets and answers were made
    full_sizes: (
        dict  # questions before subsetting {"train": int, "validation": int, "eval": int}; eval = test
    )
    identity: str  # what the data is, for the embedding cache key: name + version / path
    validation: VQASplit  # for choosing, never reported; not embedded by plain runs

    @property
    def test(self) -> VQASplit:
        return self.eval


@dataclass
class Found:
    """What a loader read: the train split, maybe test and validation splits, and how to describe them."""

    train: VQASplit
    eval: VQASplit | None  # the test split; None: load_vqa holds out EVAL_FRACTION of the images
    source: str
    notes: list[str]
    identity: str
    validation: VQASplit | None = None  # None: load_vqa holds out VALIDATION_FRACTION of the training images


def file_images(paths: list[Path]) -> ImageSet:
    """Images stored as files: identified by their bytes, decoded on demand."""

    def read(i: int) -> bytes:
        try:
            return paths[i].read_bytes()
        except OSError as e:
            raise BadInput(f"image file {paths[i]} cannot be read ({e.strerror}): restore it") from None

    return ImageSet([str(p) for p in paths], read, lambda i: open_rgb(paths[i], str(paths[i])))


def pixel_images(pixels: list[np.ndarray] | np.ndarray, names: list[str]) -> ImageSet:
    """Images held as uint8 arrays (H, W) or (H, W, 3): identified by shape + pixel bytes."""

    def read(i: int) -> bytes:
        a = np.ascontiguousarray(pixels[i])
        return repr(a.shape).encode() + a.tobytes()

    return ImageSet(names, read, lambda i: Image.fromarray(np.asarray(pixels[i])).convert("RGB"))


def check_files(paths: list[Path], where: list[str]) -> None:
    """Fail early, with the question that needs it, when an image file is missing."""
    for p, w in zip(paths, where):
        if not p.is_file():
            raise BadInput(
                f"image file {p} not found ({w}): put the image there or drop the questions about it"
            )


def index_images(keys: list[str]) -> tuple[list[str], np.ndarray]:
    # (N,) image key per question -> (M,) distinct keys in first-seen order, (N,) index into them
    order: dict[str, int] = {}
    index = np.array([order.setdefault(k, len(order)) for k in keys], dtype=np.int64)
    return list(order), index


def first_answer(answer: str) -> str:
    """DAQUAR lists several answers comma-separated ("chair, table"): the first one is the class."""
    return answer.split(",")[0].strip()


def first_answers(raw: list[str], notes: list[str]) -> list[str]:
    out = [first_answer(str(a)) for a in raw]
    multi = sum("," in str(a) for a in raw)
    if multi:
        notes.append(
            f"{multi} of {len(raw)} answers listed several (comma-separated): the first is the class"
        )
    return out
