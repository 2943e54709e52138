"""Local data: CSV / TSV / JSON / JSONL / Parquet files, image folders (one subfolder per class), split folders.

`local_splits(path)` -> ({split: datasets.Dataset}, base_dir, what); `table.pools_from_splits` does the rest.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet
from datasets.table import InMemoryTable

from peftlab.data.images import IMAGE_SUFFIXES
from peftlab.errors import BadInput

DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
SUFFIX_ALIASES = {".pq": ".parquet", ".ndjson": ".jsonl"}
SPLIT_NAMES = ("train", "test", "validation", "valid", "val", "dev")


def data_suffix(path: Path) -> str:
    """'.csv' for data.csv and data.csv.gz; '' when the name has no recognised data suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = SUFFIX_ALIASES.get(suffixes[-1], suffixes[-1]) if suffixes else ""
    return last if last in DATA_SUFFIXES else ""


def looks_like_path(name: str) -> bool:
    """A name meant as a local path (so a missing one is 'not found', not a hub id)."""
    return bool(data_suffix(Path(name))) or name.startswith(("./", "../", "/", "~", ".\\")) or "\\" in name


def _dataset(table: pa.Table) -> datasets.Dataset:
    # Features come from the schema; a Parquet file written by `datasets` keeps its ClassLabel / Image features
    return datasets.Dataset(InMemoryTable(table))


def _read_json(path: Path, jsonl: bool) -> datasets.Dataset:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    stripped = text.strip()
    records = None
    if not jsonl and stripped[:1] in "[{":
        try:
            whole = json.loads(stripped)
        except json.JSONDecodeError as err:
            if stripped[:1] == "[" or "Extra data" not in err.msg:
                raise BadInput(
                    f"{path} is not valid JSON ({err.msg} at line {err.lineno}): fix the file"
                ) from None
            whole = None  # several objects: JSON lines in a .json file
        if isinstance(whole, list):
            records = whole
        elif isinstance(whole, dict):
            lists = {k: v for k, v in whole.items() if isinstance(v, list)}
            if (
                lists
                and len(lists) == len(whole)
                and all(isinstance(r, dict) for v in lists.values() for r in v)
            ):
                records = next(iter(lists.values()))  # {"data": [{...}, ...]}
            elif lists and len(lists) == len(whole) and len({len(v) for v in lists.values()}) == 1:
                # {"text": [...], "label": [...]}: columns of equal length
                records = [dict(zip(whole, row)) for row in zip(*whole.values())]
            else:
                records = [whole]
    if records is None:
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise BadInput(
                        f"line {lineno} of {path} is not valid JSON ({err.msg}): fix that line"
                    ) from None
    if not all(isinstance(r, dict) for r in records):
        raise BadInput(
            f'{path} does not hold one JSON object per example: write records like {{"text": ..., "label": ...}}'
        )
    try:
        return datasets.Dataset.from_list(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise BadInput(
            f"{path} mixes value types within a column ({str(err).splitlines()[0]}): make each column one type"
        ) from None


def read_table(path: Path) -> datasets.Dataset:
    """One data file -> an in-memory datasets.Dataset (no cache files are written)."""
    suffix = data_suffix(path)
    if not suffix:
        raise BadInput(
            f"unsupported file type {path.name!r}: use .csv, .tsv, .json, .jsonl or .parquet (optionally .gz)"
        )
    if path.stat().st_size == 0:
        raise BadInput(f"{path} is empty: add a header row and examples")
    try:
        if suffix in (".csv", ".tsv"):
            tsv = suffix == ".tsv"
            parse = pa_csv.ParseOptions(
                delimiter="\t" if tsv else ",", quote_char=False if tsv else '"', newlines_in_values=not tsv
            )
            ds = _dataset(pa_csv.read_csv(path, parse_options=parse))
        elif suffix == ".parquet":
            ds = _dataset(pa_parquet.read_table(path))
        else:
            ds = _read_json(path, jsonl=suffix == ".jsonl")
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Empty CSV file" in reason:
            raise BadInput(f"{path} is empty: add a header row and examples") from None
        raise BadInput(f"{path} could not be read as {suffix[1:].upper()} ({reason}): fix the file") from None
    if len(ds) == 0:
        raise BadInput(
            f"{path} is empty (columns {', '.join(ds.column_names) or 'none'}, no rows): add examples"
        )
    return ds


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_folder(folder: Path) -> datasets.Dataset:
    """folder/<class>/<image> -> Dataset{image: absolute path, label: class name}; classes sorted by name."""
    classes = _visible_dirs(folder)
    if not classes:
        raise BadInput(
            f"folder {folder} has no class subfolders: put images in one subfolder per class "
            f"({folder}/<class>/<image>.png), or pass a data file (.csv, .tsv, .json, .jsonl, .parquet)"
        )
    paths, labels = [], []
    for cls in classes:
        images = sorted(p for p in cls.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise BadInput(
                f"class folder {cls} has no images ({', '.join(IMAGE_SUFFIXES)}): add images or remove the folder"
            )
        paths += [str(p.resolve()) for p in images]
        labels += [cls.name] * len(images)
    return datasets.Dataset.from_dict({"image": paths, "label": labels})


def local_splits(path: Path) -> tuple[dict[str, datasets.Dataset], Path, str]:
    """A file or folder -> ({split: Dataset}, folder that relative image paths start from, a short description)."""
    path = path.expanduser().resolve()
    if path.is_file():
        return {"train": read_table(path)}, path.parent, f"file {path}"
    subdirs = _visible_dirs(path)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
    if split_dirs and len(split_dirs) == len(subdirs) and any(d.name.lower() == "train" for d in split_dirs):
        # folder/train/<class>/..., folder/test/<class>/...
        split_dirs.sort(key=lambda d: SPLIT_NAMES.index(d.name.lower()))  # train first
        return {d.name.lower(): image_folder(d) for d in split_dirs}, path, f"image folder {path}"
    split_files = [
        f
        for f in sorted(path.iterdir())
        if f.is_file() and data_suffix(f) and f.name.split(".")[0].lower() in SPLIT_NAMES
    ]
    if any(f.name.split(".")[0].lower() == "train" for f in split_files):
        # folder/train.csv, folder/test.csv
        split_files.sort(key=lambda f: SPLIT_NAMES.index(f.name.split(".")[0].lower()))  # train first
        names = [f.name.split(".")[0].lower() for f in split_files]
        if len(set(names)) != len(names):
            raise BadInput(
                f"folder {path} holds two files for one split ({', '.join(f.name for f in split_files)}): keep one each"
            )
        return {n: read_table(f) for n, f in zip(names, split_files)}, path, f"folder {path}"
    return {"train": image_folder(path)}, path, f"image folder {path}"
