"""`peftlab predict RUN_DIR`: a finished run's saved model on new inputs -> the label and every label's probability.

`predict(run_dir, texts=..., images=..., questions=..., input_path=...)` -> (Prediction per input, in input order);
inputs go through the run's own preprocessing (its tokenizer and --max-length, its image processor and --image-size)
in batches, with a progress bar on stderr when there is more than one batch. VQA runs take images + questions.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from peftlab.errors import BadInput

TEXT, IMAGE, VQA = "text-classification", "image-classification", "vqa"
QUESTION_COLUMNS = ("question", "query", "text")


@dataclass
class Item:
    """One input: what the output shows for it, and what the model reads (text, image source, question)."""

    shown: object  # the text, the image path, or {"image": path, "question": q}
    value: object = None  # text str | image source (path, bytes dict, PIL image)
    question: str | None = None
    base_dir: Path | None = None  # where relative image paths in a data file are read from


@dataclass
class Prediction:
    input: object
    label: str
    probs: dict[str, float]  # every label -> softmax probability, in the model's label order

    def to_dict(self) -> dict:
        return {"input": self.input, "label": self.label, "probs": self.probs}


@dataclass
class Predictor:
    """What predicting needs from a run: its labels and a function from a batch of items to (B, K) logits."""

    task: str
    labels: list[str]
    logits: Callable[[list[Item]], torch.Tensor]
    batch_size: int


# --- gathering the inputs ------------------------------------------------------------------------------------


def _table_rows(path: Path) -> tuple[list[dict], list[str]]:
    from peftlab.data.local import read_table

    ds = read_table(path)
    return ds.to_list(), list(ds.column_names)


def _column(columns: list[str], wanted: str | None, guesses: tuple, what: str, path: Path) -> str:
    """The run's own column name (--text-column / --image-column) when the file has it, else the usual names."""
    if wanted and wanted in columns:
        return wanted
    found = next((c for c in guesses if c in columns), None)
    if found is None:
        names = ", ".join(([wanted] if wanted else []) + list(guesses))
        raise BadInput(
            f"--input {path}: no {what} column (it has {', '.join(columns) or 'none'}); name one {names}"
        )
    return found


def _image_folder(path: Path) -> list[Item]:
    from peftlab.data.images import IMAGE_SUFFIXES

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"--input {path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [Item(str(f), f) for f in files]


def _from_file(path: Path, task: str, config: dict) -> list[Item]:
    from peftlab.data.table import IMAGE_COLUMNS, TEXT_COLUMNS

    if path.is_dir():
        if task == TEXT:
            raise BadInput(
                f"--input {path} is a folder of images, but this run classifies text: give a CSV/JSONL file"
            )
        if task == VQA:
            raise BadInput(
                f"--input {path}: a VQA run needs a CSV/JSONL file with image and question columns"
            )
        return _image_folder(path)
    if not path.is_file():
        raise BadInput(f"--input {path}: no such file or folder")
    rows, columns = _table_rows(path)
    if not rows:
        raise BadInput(f"--input {path}: the file has no rows")
    base = path.resolve().parent
    if task == TEXT:
        col = _column(columns, config.get("text_column"), TEXT_COLUMNS, "text", path)
        return [Item(str(r[col]), str(r[col])) for r in rows]
    col = _column(columns, config.get("image_column"), IMAGE_COLUMNS, "image", path)
    # a path (checked before anything loads) or what the file holds (encoded bytes, pixels) as the image
    values = [Path(r[col]) if isinstance(r[col], str) else r[col] for r in rows]
    shown = [r[col] if isinstance(r[col], str) else f"{path.name}:{i + 1}" for i, r in enumerate(rows)]
    if task == IMAGE:
        return [Item(s, v, base_dir=base) for s, v in zip(shown, values)]
    qcol = _column(columns, config.get("text_column"), QUESTION_COLUMNS, "question", path)
    questions = [str(r[qcol]) for r in rows]
    return [Item({"image": s, "question": q}, v, q, base) for s, v, q in zip(shown, values, questions)]


def _vqa_pairs(images: list[str], questions: list[str]) -> list[Item]:
    """--image/--question pairs: as many of each, or one of either asked of / about all of the other."""
    if not images or not questions:
        raise BadInput("a VQA run answers questions about images: give --image PATH and --question TEXT "
                       "(or --input FILE with image and question columns)")  # fmt: skip
    if len(images) == 1:
        images = images * len(questions)
    elif len(questions) == 1:
        questions = questions * len(images)
    if len(images) != len(questions):
        raise BadInput(f"got {len(images)} --image and {len(questions)} --question: give them in pairs, or one "
                       "image with many questions, or one question for many images")  # fmt: skip
    return [Item({"image": i, "question": q}, Path(i), q) for i, q in zip(images, questions)]


def gather(task: str, config: dict, texts=(), images=(), questions=(), input_path=None) -> list[Item]:
    """The command line's inputs, checked against what the run's model reads, in the order given."""
    texts, images, questions = list(texts or []), list(images or []), list(questions or [])
    kind = {TEXT: "a text", IMAGE: "an image", VQA: "a VQA"}[task]
    if task != TEXT and texts:
        raise BadInput(f"--text given, but this run is {kind} model: give --image PATH"
                       + (" and --question TEXT" if task == VQA else "") + " or --input")  # fmt: skip
    if task == TEXT and images:
        raise BadInput("--image given, but this run classifies text: give --text TEXT or --input FILE")
    if task != VQA and questions:
        raise BadInput(f"--question is for VQA runs; this run is {kind} classifier")
    items: list[Item] = []
    if task == TEXT:
        items += [Item(t, t) for t in texts]
    elif task == IMAGE:
        items += [Item(i, Path(i)) for i in images]
    elif images or questions:
        items += _vqa_pairs(images, questions)
    if input_path is not None:
        items += _from_file(Path(input_path).expanduser(), task, config)
    if not items:
        what = {TEXT: "--text TEXT", IMAGE: "--image PATH", VQA: "--image PATH --question TEXT"}[task]
        raise BadInput(f"nothing to predict: give {what} (repeatable) or --input FILE")
    return items


def _pil(item: Item):
    from peftlab.data.images import to_rgb

    shown = item.shown["image"] if isinstance(item.shown, dict) else item.shown
    return to_rgb(item.value, item.base_dir, f"input {shown}")


def check_images(items: list[Item]) -> None:
    """Every image path exists, before anything loads: a typo is one line, not a failure halfway through."""
    for item in items:
        if isinstance(item.value, Path):
            path = (
                item.value
                if item.value.is_absolute() or item.base_dir is None
                else item.base_dir / item.value
            )
            if not path.is_file():
                raise BadInput(f"image {str(path)!r} not found: check the path")


# --- the model -----------------------------------------------------------------------------------------------


def _classifier(folder: Path, batch_size: int) -> Predictor:
    from types import SimpleNamespace

    from peftlab.artifacts import portable
    from peftlab.train.encode import encode, eval_batches

    model, processor, p = portable.load(folder)
    device = torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )  # as training: a GPU when there is one
    model.to(device)

    def logits(items: list[Item]) -> torch.Tensor:
        inputs = [it.value for it in items] if p.task == TEXT else [_pil(it) for it in items]
        split = SimpleNamespace(inputs=inputs, labels=[0] * len(items))
        enc = encode(split, processor, p.task, max_length=p.max_length or 128, image_size=p.image_size)
        out = torch.empty(len(items), len(p.label_names))
        with torch.inference_mode():
            for idx in eval_batches(enc, batch_size):  # length-sorted batches, put back in place by index
                batch = {k: v.to(device) for k, v in enc.collate(idx, with_labels=False).items()}
                out[idx] = model(**batch).logits.float().cpu()
        return out

    return Predictor(p.task, p.label_names, logits, batch_size)


def _answerer(record, folder: Path, batch_size: int) -> Predictor:
    from peftlab.tasks.vqa.answer import Answerer

    answerer = Answerer.load(record, folder)

    def logits(items: list[Item]) -> torch.Tensor:
        images = [_pil(it) for it in items]
        return answerer.logits(images, [it.question for it in items]).float()

    return Predictor(VQA, answerer.answers, logits, batch_size)


def load_predictor(record, folder: Path, batch_size: int | None = None) -> Predictor:
    """A Predictor for a run opened by artifacts.runs.open_run; batches of --batch-size, else the run's eval size."""
    if batch_size is not None and batch_size < 1:
        raise BadInput(f"--batch-size {batch_size}: must be >= 1")
    size = batch_size or int((record.config or {}).get("eval_batch_size") or 64)
    if record.task == VQA:
        return _answerer(record, folder, size)
    return _classifier(folder, size)


def run(predictor: Predictor, items: list[Item], progress: bool = True) -> Iterator[Prediction]:
    """Predictions in input order, computed one batch of inputs at a time (images are read per batch)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), unit="input", desc="predict", file=sys.stderr,
               disable=not progress or len(items) <= predictor.batch_size)  # fmt: skip
    try:
        for start in range(0, len(items), predictor.batch_size):
            chunk = items[start : start + predictor.batch_size]
            probs = torch.softmax(predictor.logits(chunk), dim=-1)  # (B, K)
            for item, row in zip(chunk, probs.tolist()):
                best = max(range(len(row)), key=row.__getitem__)
                yield Prediction(item.shown, predictor.labels[best], dict(zip(predictor.labels, row)))
            bar.update(len(chunk))
    finally:
        bar.close()


def predict(run_dir, texts=(), images=(), questions=(), input_path=None, batch_size=None,
            progress: bool = False) -> list[Prediction]:  # fmt: skip
    """All predictions for these inputs, in order (the library form of `peftlab predict`). The inputs are checked
    against the run before its model loads."""
    from peftlab.artifacts.runs import open_run

    record, folder = open_run(run_dir, "predict")
    items = gather(record.task, record.config or {}, texts, images, questions, input_path)
    check_images(items)
    return list(run(load_predictor(record, folder, batch_size), items, progress))
