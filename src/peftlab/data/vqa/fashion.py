"""fashion-VQA, generated here: 2x2 mosaics of Fashion-MNIST items with template questions from their labels.

`load_fashion_vqa()` -> Found; a fixed generator seed makes it one data set, whatever --split-seed says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peftlab.data.packaged import FASHION_FILES, FASHION_MNIST_DIR, fashion_dir, read_idx
from peftlab.data.vqa.types import Found, VQASplit, pixel_images
from peftlab.errors import BadInput

# (images, labels) file keys of data/packaged.py's FASHION_FILES for each part
PARTS = {"train": ("train_images", "train_labels"), "eval": ("eval_images", "eval_labels")}
ITEMS = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
PLURALS = [
    "t-shirts",
    "trousers",
    "pullovers",
    "dresses",
    "coats",
    "sandals",
    "shirts",
    "sneakers",
    "bags",
    "ankle boots",
]
POSITIONS = [
    "top left",
    "top right",
    "bottom left",
    "bottom right",
]  # cell order of the 2x2 mosaic, row-major
FASHION_VQA_MOSAICS = {"train": 2000, "eval": 500}
FASHION_VQA_SEED = 2024  # fixed: fashion-vqa is one data set, not a function of --split-seed
FASHION_VQA_VERSION = "1"  # bump when the generator changes (it is part of the embedding cache key)


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


@dataclass
class Mosaics:
    items: (
        np.ndarray
    )  # (n, 4) indices into the source images, cells top-left, top-right, bottom-left, bottom-right
    classes: np.ndarray  # (n, 4) their Fashion-MNIST classes
    featured: np.ndarray  # (n,) the class the count question asks about
    count: np.ndarray  # (n,) how many cells hold it, 0..4


def make_mosaics(labels: np.ndarray, n: int, seed: int) -> Mosaics:
    """n 2x2 mosaics: count k ~ U{0..4} cells of a featured class c ~ U{0..9}, the other 4-k cells of other classes
    (uniform, repeats allowed), shuffled over the cells; each cell an item of its class drawn from `labels` (N,)."""
    rng = np.random.default_rng([seed, n])
    pools = [np.flatnonzero(labels == c) for c in range(10)]
    items = np.empty((n, 4), dtype=np.int64)
    classes = np.empty((n, 4), dtype=np.int64)
    featured = rng.integers(0, 10, size=n)
    count = rng.integers(0, 5, size=n)
    for m in range(n):
        c, k = int(featured[m]), int(count[m])
        others = rng.choice([x for x in range(10) if x != c], size=4 - k)
        classes[m] = rng.permutation(np.concatenate([np.full(k, c), others]))
        items[m] = [rng.choice(pools[x]) for x in classes[m]]
    return Mosaics(items, classes, featured, count)


def mosaic_questions(mosaics: Mosaics, seed: int) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """7 questions per mosaic: 4 position, 2 presence (one yes, one no), 1 count -> questions, answers, types,
    (7n,) mosaic index."""
    rng = np.random.default_rng([seed, len(mosaics.items), 1])
    qs, ans, types, index = [], [], [], []
    for m, cells in enumerate(mosaics.classes):
        for pos, c in zip(POSITIONS, cells):
            qs.append(f"what is in the {pos}?")
            ans.append(ITEMS[c])
            types.append("position")
        present = sorted(set(cells.tolist()))
        absent = [c for c in range(10) if c not in present]
        for c, a in ((rng.choice(present), "yes"), (rng.choice(absent), "no")):
            qs.append(f"is there {_article(ITEMS[int(c)])}?")
            ans.append(a)
            types.append("presence")
        qs.append(f"how many {PLURALS[int(mosaics.featured[m])]} are there?")
        ans.append(str(int(mosaics.count[m])))
        types.append("count")
        index += [m] * 7
    return qs, ans, types, np.array(index, dtype=np.int64)


def mosaic_pixels(images: np.ndarray, items: np.ndarray) -> np.ndarray:
    # (N, 28, 28) source items, (n, 4) cells -> (n, 56, 56): [[tl, tr], [bl, br]]
    cells = images[items]  # (n, 4, 28, 28)
    top = np.concatenate([cells[:, 0], cells[:, 1]], axis=2)  # (n, 28, 56)
    bottom = np.concatenate([cells[:, 2], cells[:, 3]], axis=2)
    return np.concatenate([top, bottom], axis=1)  # (n, 56, 56)


def fashion_vqa_split(images: np.ndarray, labels: np.ndarray, n: int, seed: int, part: str) -> VQASplit:
    """The deterministic fashion-VQA split of n mosaics over source items images (N, 28, 28), labels (N,)."""
    mosaics = make_mosaics(labels, n, seed)
    qs, ans, types, index = mosaic_questions(mosaics, seed)
    pixels = mosaic_pixels(images, mosaics.items)  # (n, 56, 56) uint8, 3 KiB each
    return VQASplit(qs, ans, index, pixel_images(pixels, [f"{part} mosaic {m}" for m in range(n)]), types)


def load_fashion_vqa() -> Found:
    folder = fashion_dir()
    if folder is None:
        raise BadInput(
            f"fashion-vqa needs Fashion-MNIST at {FASHION_MNIST_DIR}: apt-get install -y dataset-fashion-mnist"
        )
    splits = {}
    for i, (part, (img_key, lab_key)) in enumerate(PARTS.items()):
        images = read_idx(folder / FASHION_FILES[img_key])  # (N, 28, 28) uint8
        labels = read_idx(folder / FASHION_FILES[lab_key]).astype(np.int64)  # (N,)
        splits[part] = fashion_vqa_split(
            images, labels, FASHION_VQA_MOSAICS[part], FASHION_VQA_SEED + i, part
        )
    return Found(
        train=splits["train"],
        eval=splits["eval"],
        source=f"generated from Fashion-MNIST ({folder}): {FASHION_VQA_MOSAICS['train']} train mosaics from its "
        f"train images, {FASHION_VQA_MOSAICS['eval']} eval mosaics from t10k",
        notes=[
            "2x2 mosaics of 28x28 items (56x56), 7 template questions each: position, presence (1 yes + 1 no), "
            "count 0-4; answers from the Fashion-MNIST labels"
        ],
        identity=f"fashion-vqa v{FASHION_VQA_VERSION} seed {FASHION_VQA_SEED} {FASHION_VQA_MOSAICS}",
    )
