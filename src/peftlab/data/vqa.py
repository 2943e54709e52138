"""VQA data in one shape: questions, answer strings and the distinct images they ask about, split train/eval.

`load_vqa("easy-vqa", max_train_samples=2000)` -> VQAData; `VQA_DATASETS` lists the offline sets for `peftlab ls`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.metadata
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from peftlab.data.split import EVAL_STREAM, TRAIN_STREAM, stratified_subset
from peftlab.errors import BadInput

EVAL_FRACTION = 0.2  # share of images (with all their questions) held out when the data has no eval split
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


# --- the common shape ---------------------------------------------------------------------------------------


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
    eval: VQASplit
    source: str  # packaged file, hub id, local path
    notes: str  # how the split, subsets and answers were made
    full_sizes: dict  # questions before subsetting {"train": int, "eval": int}
    identity: str  # what the data is, for the embedding cache key: name + version / path


@dataclass
class Found:
    """What a loader read: the train split, maybe an eval split, and how to describe them."""

    train: VQASplit
    eval: VQASplit | None  # None: load_vqa holds out EVAL_FRACTION of the images
    source: str
    notes: list[str]
    identity: str


# --- images -------------------------------------------------------------------------------------------------


def open_rgb(source: Path | bytes, shown: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return im.convert("RGB")  # convert() loads the pixels, so the file can close
    except FileNotFoundError:
        raise BadInput(f"image file {shown} not found: restore it or drop its questions") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise BadInput(
            f"image {shown} does not decode ({type(e).__name__}): replace it or drop its questions"
        ) from None


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


def _index_images(keys: list[str]) -> tuple[list[str], np.ndarray]:
    # (N,) image key per question -> (M,) distinct keys in first-seen order, (N,) index into them
    order: dict[str, int] = {}
    index = np.array([order.setdefault(k, len(order)) for k in keys], dtype=np.int64)
    return list(order), index


def first_answer(answer: str) -> str:
    """DAQUAR lists several answers comma-separated ("chair, table"): the first one is the class."""
    return answer.split(",")[0].strip()


def _answers(raw: list[str], notes: list[str]) -> list[str]:
    out = [first_answer(str(a)) for a in raw]
    multi = sum("," in str(a) for a in raw)
    if multi:
        notes.append(
            f"{multi} of {len(raw)} answers listed several (comma-separated): the first is the class"
        )
    return out


# --- easy-vqa (packaged) ------------------------------------------------------------------------------------

EASY_DIST = "easy-vqa"


def _easy_dir() -> Path | None:
    try:
        path = Path(str(importlib.metadata.distribution(EASY_DIST).locate_file("easy_vqa/data")))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if (path / "train" / "questions.json").is_file() else None


def easy_type(question: str) -> str:
    # easy-VQA's templates: "what color is ..." / "what is the color of ..." ask colours, other "what ..." shapes
    if not question.startswith("what"):
        return "yes/no"
    return "color" if "color" in question else "shape"


def _easy_split(folder: Path) -> VQASplit:
    # questions.json: a list of [question, answer, image id]; image id n is images/n.png
    rows = json.loads((folder / "questions.json").read_text())
    names, index = _index_images([str(r[2]) for r in rows])
    paths = [folder / "images" / f"{n}.png" for n in names]
    return VQASplit(
        questions=[r[0].strip() for r in rows],
        answers=[r[1].strip() for r in rows],
        image_index=index,
        images=file_images(paths),
        types=[easy_type(r[0]) for r in rows],
    )


def load_easy() -> Found:
    folder = _easy_dir()
    if folder is None:
        raise BadInput("easy-vqa is not installed: pip install --no-deps easy-vqa==1.0")
    version = importlib.metadata.version(EASY_DIST)
    return Found(
        train=_easy_split(folder / "train"),
        eval=_easy_split(folder / "test"),
        source=f"packaged easy-vqa {version} ({folder})",
        notes=["official split train/test; question types from the templates: yes/no, color, shape"],
        identity=f"easy-vqa=={version}",
    )


# --- fashion-vqa (generated from Fashion-MNIST) ---------------------------------------------------------------

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "eval": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
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


def _fashion_dir() -> Path | None:
    ok = all((FASHION_DIR / f).is_file() for pair in FASHION_FILES.values() for f in pair)
    return FASHION_DIR if ok else None


def read_idx(path: Path) -> np.ndarray:
    """idx file (gzip): magic 0, 0, 0x08 (uint8), ndim; ndim big-endian uint32 sizes; then the raw bytes."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


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
    folder = _fashion_dir()
    if folder is None:
        raise BadInput(
            f"fashion-vqa needs Fashion-MNIST at {FASHION_DIR}: apt-get install -y dataset-fashion-mnist"
        )
    splits = {}
    for i, (part, (img_file, lab_file)) in enumerate(FASHION_FILES.items()):
        images, labels = read_idx(folder / img_file), read_idx(folder / lab_file).astype(np.int64)
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


# --- DAQUAR, original release format -------------------------------------------------------------------------

DAQUAR_IMAGE = re.compile(r"\bimage(\d+)\b")


def read_daquar_qa(path: Path) -> list[tuple[str, str, str]]:
    """qa.*.txt: question lines ("what is on the table in the image1 ?") alternating with answer lines ->
    (question without the image number, raw answer, image name)."""
    lines = [
        (n, s.strip()) for n, s in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if s.strip()
    ]
    rows = []
    for i in range(0, len(lines), 2):
        n, q = lines[i]
        found = DAQUAR_IMAGE.search(q)
        if found is None:
            raise BadInput(
                f"{path} line {n}: expected a DAQUAR question naming its image (imageN), got {q!r}"
            )
        if i + 1 >= len(lines) or lines[i + 1][1].endswith("?") or DAQUAR_IMAGE.search(lines[i + 1][1]):
            raise BadInput(
                f"{path} line {n}: question without an answer; DAQUAR files alternate question and answer lines: "
                "give the file with answers (qa.*.train.txt / qa.*.test.txt)"
            )
        question = re.sub(
            r"\s+\?$", "?", DAQUAR_IMAGE.sub("image", q)
        )  # the image number is an id, not content
        rows.append((question, lines[i + 1][1], f"image{found.group(1)}"))
    return rows


def _daquar_files(folder: Path) -> tuple[Path, Path] | None:
    # prefer the full set (qa.894.*) over the reduced one (qa.37.*) when both are there
    trains = sorted(folder.glob("qa.*train*.txt"), key=lambda p: ("894" not in p.name, p.name))
    for train in trains:
        test = train.with_name(train.name.replace("train", "test"))
        if test.is_file():
            return train, test
    return None


def _daquar_image_dir(folder: Path) -> Path:
    for d in (folder / "images", folder / "nyu_depth_images", folder):
        if d.is_dir() and any(d.glob("image*.png")):
            return d
    return folder / "images"


def _daquar_split(path: Path, image_dir: Path, notes: list[str]) -> VQASplit:
    rows = read_daquar_qa(path)
    names, index = _index_images([r[2] for r in rows])
    paths = [image_dir / f"{n}.png" for n in names]
    first_q = {int(j): i for i, j in reversed(list(enumerate(index)))}
    check_files(
        paths, [f"asked about by question {first_q[m] + 1} of {path.name}" for m in range(len(paths))]
    )
    return VQASplit([r[0] for r in rows], _answers([r[1] for r in rows], notes), index, file_images(paths))


def load_daquar_folder(folder: Path, train_file: Path | None = None) -> Found:
    """DAQUAR's own release: qa.*.train.txt + qa.*.test.txt (the given train file, else the full 894-class set)."""
    if train_file is not None:
        test_file = train_file.with_name(train_file.name.replace("train", "test"))
        if not test_file.is_file():
            raise BadInput(f"--dataset {train_file}: its eval file {test_file.name} is not beside it")
    else:
        train_file, test_file = _daquar_files(folder)
    image_dir = _daquar_image_dir(folder)
    notes = [f"DAQUAR files {train_file.name} / {test_file.name}; 'imageN' in questions replaced by 'image'"]
    train = _daquar_split(train_file, image_dir, notes)
    return Found(
        train,
        _daquar_split(test_file, image_dir, notes),
        f"local DAQUAR {folder}",
        notes,
        _file_identity(train_file, test_file),
    )


def _file_identity(*paths: Path) -> str:
    # where + what: the question files' paths and a hash of their bytes
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return f"{[str(p.resolve()) for p in paths]} sha256 {h.hexdigest()[:16]}"


# --- generic tables: CSV / TSV / JSONL / JSON ------------------------------------------------------------------

IMAGE_COLUMNS = ("image", "image_path", "image_file", "image_id", "img", "file", "filename", "path")
QUESTION_COLUMNS = ("question", "questions", "query", "text", "prompt")
ANSWER_COLUMNS = ("answer", "answers", "label", "target", "multiple_choice_answer")
TYPE_COLUMNS = ("question_type", "type", "qtype")


def read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
        if suffix == ".jsonl":
            return [json.loads(s) for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as e:
        raise BadInput(f"{path} does not parse as {suffix[1:].upper()} ({e}): fix the file") from None
    if isinstance(data, dict):  # {"column": [values]} -> rows
        keys = list(data)
        data = [dict(zip(keys, vals)) for vals in zip(*data.values())]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise BadInput(f"{path}: expected a list of objects with image, question and answer fields")
    return data


def pick_column(
    columns: list[str], given: str | None, candidates: tuple[str, ...], what: str, flag: str, where: str
) -> str:
    if given:
        if given not in columns:
            raise BadInput(f"{flag} {given!r}: no such column in {where} (columns: {', '.join(columns)})")
        return given
    for c in candidates:
        if c in columns:
            return c
    raise BadInput(
        f"{where} has no {what} column (looked for {', '.join(candidates)}; columns: {', '.join(columns)}): "
        f"rename one or pass {flag} NAME"
    )


@dataclass
class Columns:
    image: str | None = None  # --image-column
    question: str | None = None  # --text-column
    answer: str | None = None  # --label-column


def _image_path(value: str, base: Path) -> Path:
    # a path (relative to the table's folder) or a bare id: images/<id>.png|.jpg beside the table
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if p.suffix.lower() in IMAGE_SUFFIXES or p.is_file():
        return p
    for d in (base / "images", base):
        for s in IMAGE_SUFFIXES:
            if (d / f"{value}{s}").is_file():
                return d / f"{value}{s}"
    return p


def table_split(path: Path, cols: Columns, notes: list[str]) -> tuple[VQASplit, list[str] | None]:
    """One table -> a split (+ a split column's values per row, when the table has one)."""
    rows = read_rows(path)
    if not rows:
        raise BadInput(f"{path} holds no rows: give image, question and answer rows")
    columns = list(rows[0])
    img = pick_column(columns, cols.image, IMAGE_COLUMNS, "image", "--image-column", str(path))
    q = pick_column(columns, cols.question, QUESTION_COLUMNS, "question", "--text-column", str(path))
    if cols.answer is None and not any(c in columns for c in ANSWER_COLUMNS):
        raise BadInput(
            f"{path} has questions but no answers (columns: {', '.join(columns)}): add an answer column "
            "or pass --label-column NAME"
        )
    a = pick_column(columns, cols.answer, ANSWER_COLUMNS, "answer", "--label-column", str(path))
    typ = next((c for c in TYPE_COLUMNS if c in columns), None)
    for n, r in enumerate(rows, 1):
        if r.get(a) in (None, "") or r.get(q) in (None, ""):
            raise BadInput(
                f"{path} row {n}: empty {'answer' if r.get(a) in (None, '') else 'question'}: fill it or drop the row"
            )
    keys = [str(_image_path(str(r[img]), path.parent)) for r in rows]
    names, index = _index_images(keys)
    paths = [Path(k) for k in names]
    first_row = {int(j): i for i, j in reversed(list(enumerate(index)))}
    check_files(paths, [f"row {first_row[m] + 1} of {path.name}" for m in range(len(paths))])
    split = VQASplit(
        questions=[str(r[q]).strip() for r in rows],
        answers=_answers([str(r[a]).strip() for r in rows], notes),
        image_index=index,
        images=file_images(paths),
        types=[str(r[typ]) for r in rows] if typ else None,
    )
    return split, ([str(r["split"]).strip().lower() for r in rows] if "split" in columns else None)


def _table_files(folder: Path) -> tuple[Path, Path | None] | None:
    tables = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in TABLE_SUFFIXES]
    train = next((p for p in tables if "train" in p.stem.lower()), None)
    if train is None:
        return (tables[0], None) if len(tables) == 1 else None
    evals = [p for p in tables if p != train and any(w in p.stem.lower() for w in ("test", "eval", "val"))]
    return train, (evals[0] if evals else None)


def load_local(path: Path, cols: Columns) -> Found:
    if path.is_dir():
        if _daquar_files(path) is not None:
            return load_daquar_folder(path)
        pair = _table_files(path)
        if pair is None:
            raise BadInput(
                f"--dataset {path}: no VQA data found: expect DAQUAR's qa.*.train.txt + qa.*.test.txt and images/, "
                "or train.csv|jsonl (+ test.csv|jsonl) with image, question and answer columns"
            )
        train_file, eval_file = pair
    elif path.suffix.lower() in TABLE_SUFFIXES:
        train_file, eval_file = path, None
    elif path.suffix == ".txt" and "train" in path.name:
        return load_daquar_folder(path.parent, path)
    else:
        raise BadInput(
            f"--dataset {path}: not a folder, a CSV/TSV/JSONL/JSON table or a DAQUAR qa.*.train.txt file"
        )
    notes: list[str] = []
    train, split_col = table_split(train_file, cols, notes)
    ev = None
    if eval_file is not None:
        ev, _ = table_split(eval_file, cols, notes)
        notes.insert(0, f"files {train_file.name} / {eval_file.name}")
    elif split_col is not None:
        is_eval = np.array([s in ("test", "eval", "validation", "val") for s in split_col])
        if is_eval.any() and not is_eval.all():
            ev, train = train.subset(np.flatnonzero(is_eval)), train.subset(np.flatnonzero(~is_eval))
            notes.insert(0, "split from the table's `split` column")
    files = [train_file] + ([eval_file] if eval_file else [])
    return Found(train, ev, f"local {path}", notes, _file_identity(*files))


# --- hub datasets ---------------------------------------------------------------------------------------------


def hf_split(ds, cols: Columns, where: str, notes: list[str]) -> VQASplit:
    """A `datasets.Dataset` with image / question / answer columns -> a split; images deduplicated by content."""
    import datasets

    columns = list(ds.column_names)
    img = pick_column(columns, cols.image, IMAGE_COLUMNS, "image", "--image-column", where)
    q = pick_column(columns, cols.question, QUESTION_COLUMNS, "question", "--text-column", where)
    if cols.answer is None and not any(c in columns for c in ANSWER_COLUMNS):
        raise BadInput(
            f"{where} has questions but no answers (columns: {', '.join(columns)}): pass --label-column NAME"
        )
    a = pick_column(columns, cols.answer, ANSWER_COLUMNS, "answer", "--label-column", where)
    typ = next((c for c in TYPE_COLUMNS if c in columns), None)
    if isinstance(ds.features.get(img), datasets.Image):
        ds = ds.cast_column(img, datasets.Image(decode=False))  # {bytes, path}: hash without decoding
    blobs: list[bytes] = []
    for n, v in enumerate(ds[img]):
        if isinstance(v, dict) and v.get("bytes"):
            blobs.append(v["bytes"])
        elif isinstance(v, (dict, str)):
            p = Path(v["path"] if isinstance(v, dict) else v)
            if not p.is_file():
                raise BadInput(
                    f"image file {p} not found (row {n + 1} of {where}): the hub set must hold the images"
                )
            blobs.append(p.read_bytes())
        elif isinstance(v, Image.Image):
            buf = io.BytesIO()
            v.save(buf, format="PNG")
            blobs.append(buf.getvalue())
        else:
            raise BadInput(f"row {n + 1} of {where}: column {img!r} holds {type(v).__name__}, not an image")
    digests = [hashlib.sha1(b).hexdigest() for b in blobs]
    names, index = _index_images(digests)
    first = {d: i for i, d in reversed(list(enumerate(digests)))}
    uniq = [blobs[first[d]] for d in names]
    shown = [f"{where} row {first[d] + 1}" for d in names]
    images = ImageSet(shown, lambda i: uniq[i], lambda i: open_rgb(uniq[i], shown[i]))
    answers = [v[0] if isinstance(v, list) and v else v for v in ds[a]]  # a list of answers: the first
    return VQASplit(
        questions=[str(s).strip() for s in ds[q]],
        answers=_answers([str(s).strip() for s in answers], notes),
        image_index=index,
        images=images,
        types=[str(t) for t in ds[typ]] if typ else None,
    )


def load_hub(name: str, cols: Columns, eval_split: str | None) -> Found:
    import datasets

    repo, _, config = name.partition(":")
    try:
        dd = datasets.load_dataset(repo, config or None)
    except Exception as e:  # offline, unknown repo, gated: all the user's to fix
        raise BadInput(
            f"--dataset {name}: not a packaged VQA set ({', '.join(VQA_DATASETS)}) or a local path, and the hub could "
            f"not load it ({type(e).__name__}); offline, use a packaged set or local DAQUAR / CSV / JSONL files"
        ) from None
    splits = list(dd)
    if eval_split and eval_split not in splits:
        raise BadInput(f"--eval-split {eval_split}: {name} has splits {', '.join(splits)}")
    ev_name = eval_split or next((s for s in ("test", "validation", "val") if s in splits), None)
    tr_name = "train" if "train" in splits else next(s for s in splits if s != ev_name)
    notes = [f"hub splits {tr_name} / {ev_name}" if ev_name else f"hub split {tr_name} only"]
    train = hf_split(dd[tr_name], cols, f"{name}[{tr_name}]", notes)
    ev = hf_split(dd[ev_name], cols, f"{name}[{ev_name}]", notes) if ev_name else None
    fp = getattr(dd[tr_name], "_fingerprint", "")
    return Found(train, ev, f"hub {name}", notes, f"hub {name} {fp}")


# --- the registry and load_vqa --------------------------------------------------------------------------------


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
                    "pip install --no-deps easy-vqa==1.0", _easy_dir, load_easy))  # fmt: skip
register(VQADataset("fashion-vqa", "2,000/500 2x2 Fashion-MNIST mosaics (56x56), 7 template questions each "
                    "(position, presence, count), 17 answers; generated", "apt-get install -y dataset-fashion-mnist",
                    _fashion_dir, load_fashion_vqa))  # fmt: skip


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
