"""Local VQA data: a DAQUAR folder, or CSV / TSV / JSONL / JSON tables with image, question and answer columns.

`load_local(path, Columns(...))` -> Found; images are paths relative to the table, or ids found in images/ beside it.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peftlab.data.images import IMAGE_SUFFIXES
from peftlab.data.vqa.daquar import daquar_files, file_identity, load_daquar_folder
from peftlab.data.vqa.types import Found, VQASplit, check_files, file_images, first_answers, index_images
from peftlab.errors import BadInput

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")

IMAGE_COLUMNS = ("image", "image_path", "image_file", "image_id", "img", "file", "filename", "path")
QUESTION_COLUMNS = ("question", "questions", "query", "text", "prompt")
ANSWER_COLUMNS = ("answer", "answers", "label", "target", "multiple_choice_answer")
TYPE_COLUMNS = ("question_type", "type", "qtype")
TEST_NAMES = ("test", "eval")  # split-column values (and file-name parts) of the test split
VALIDATION_NAMES = ("validation", "valid", "val", "dev")  # ... of the validation split


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
    names, index = index_images(keys)
    paths = [Path(k) for k in names]
    first_row = {int(j): i for i, j in reversed(list(enumerate(index)))}
    check_files(paths, [f"row {first_row[m] + 1} of {path.name}" for m in range(len(paths))])
    split = VQASplit(
        questions=[str(r[q]).strip() for r in rows],
        answers=first_answers([str(r[a]).strip() for r in rows], notes),
        image_index=index,
        images=file_images(paths),
        types=[str(r[typ]) for r in rows] if typ else None,
    )
    return split, ([str(r["split"]).strip().lower() for r in rows] if "split" in columns else None)


def _part(stem: str) -> str | None:
    # a table's part from its name: train.csv, test.jsonl, eval.csv, val.csv, validation.tsv, dev.json
    stem = stem.lower()
    if "train" in stem:
        return "train"
    if any(w in stem for w in TEST_NAMES):
        return "test"
    if any(w in stem for w in ("val", "dev")):
        return "validation"
    return None


def _table_files(folder: Path) -> tuple[Path, Path | None, Path | None] | None:
    """-> (train, test, validation) tables; with no test table a validation table is the test split (as food101)."""
    tables = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in TABLE_SUFFIXES]
    train = next((p for p in tables if _part(p.stem) == "train"), None)
    if train is None:
        return (tables[0], None, None) if len(tables) == 1 else None
    tests = [p for p in tables if _part(p.stem) == "test"]
    vals = [p for p in tables if _part(p.stem) == "validation"]
    if not tests:
        tests, vals = vals[:1], vals[1:]
    return train, (tests[0] if tests else None), (vals[0] if vals else None)


def load_local(path: Path, cols: Columns) -> Found:
    if path.is_dir():
        if daquar_files(path) is not None:
            return load_daquar_folder(path)
        found = _table_files(path)
        if found is None:
            raise BadInput(
                f"--dataset {path}: no VQA data found: expect DAQUAR's qa.*.train.txt + qa.*.test.txt and images/, "
                "or train.csv|jsonl (+ test.csv|jsonl, + validation.csv|jsonl) with image, question and answer columns"
            )
        train_file, eval_file, val_file = found
    elif path.suffix.lower() in TABLE_SUFFIXES:
        train_file, eval_file, val_file = path, None, None
    elif path.suffix == ".txt" and "train" in path.name:
        return load_daquar_folder(path.parent, path)
    else:
        raise BadInput(
            f"--dataset {path}: not a folder, a CSV/TSV/JSONL/JSON table or a DAQUAR qa.*.train.txt file"
        )
    notes: list[str] = []
    train, split_col = table_split(train_file, cols, notes)
    ev = val = None
    if eval_file is not None:
        ev, _ = table_split(eval_file, cols, notes)
        if val_file is not None:
            val, _ = table_split(val_file, cols, notes)
        shown = " / ".join(f.name for f in (train_file, val_file, eval_file) if f is not None)
        notes.insert(0, f"files {shown} (test: {eval_file.name})")
    elif split_col is not None:
        # rows marked test / eval are the test split, validation / val / valid / dev the validation split; with no
        # test rows the validation rows are the test split (as food101); every other value is training
        part = np.array(["test" if s in TEST_NAMES else "validation" if s in VALIDATION_NAMES else "train"
                         for s in split_col])  # fmt: skip
        if not (part == "test").any():
            part[part == "validation"] = "test"
        if (part == "test").any() and (part == "train").any():
            ev = train.subset(np.flatnonzero(part == "test"))
            if (part == "validation").any():
                val = train.subset(np.flatnonzero(part == "validation"))
            train = train.subset(np.flatnonzero(part == "train"))
            notes.insert(0, "split from the table's `split` column")
    files = [f for f in (train_file, eval_file, val_file) if f is not None]
    return Found(train, ev, f"local {path}", notes, file_identity(*files), val)
