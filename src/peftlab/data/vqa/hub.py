"""VQA data from the Hugging Face hub: any dataset with image, question and answer columns (DAQUAR mirrors, ...).

`load_hub(name, Columns(...), eval_split)` -> Found; images are deduplicated by content so each is embedded once.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from peftlab.data.images import open_rgb
from peftlab.data.vqa.local import (
    ANSWER_COLUMNS,
    IMAGE_COLUMNS,
    QUESTION_COLUMNS,
    TYPE_COLUMNS,
    VALIDATION_NAMES,
    Columns,
    pick_column,
)
from peftlab.data.vqa.types import Found, ImageSet, VQASplit, first_answers, index_images
from peftlab.errors import BadInput


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
    names, index = index_images(digests)
    first = {d: i for i, d in reversed(list(enumerate(digests)))}
    uniq = [blobs[first[d]] for d in names]
    shown = [f"{where} row {first[d] + 1}" for d in names]
    images = ImageSet(shown, lambda i: uniq[i], lambda i: open_rgb(uniq[i], shown[i]))
    answers = [v[0] if isinstance(v, list) and v else v for v in ds[a]]  # a list of answers: the first
    return VQASplit(
        questions=[str(s).strip() for s in ds[q]],
        answers=first_answers([str(s).strip() for s in answers], notes),
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
            f"--dataset {name}: not a packaged VQA set or a local path, and the hub could "
            f"not load it ({type(e).__name__}); offline, use a packaged set or local DAQUAR / CSV / JSONL files"
        ) from None
    splits = list(dd)
    if eval_split and eval_split not in splits:
        raise BadInput(f"--eval-split {eval_split}: {name} has splits {', '.join(splits)}")
    # test: --eval-split, else test, else a validation split (then validation comes from train); validation: the
    # first validation split that is not the test split
    ev_name = eval_split or next((s for s in ("test", *VALIDATION_NAMES) if s in splits), None)
    tr_name = "train" if "train" in splits else next(s for s in splits if s != ev_name)
    val_name = next((s for s in VALIDATION_NAMES if s in splits and s not in (ev_name, tr_name)), None)
    notes = [f"hub splits {tr_name} / {ev_name}" if ev_name else f"hub split {tr_name} only"]
    if val_name:
        notes[0] += f"; validation: hub split {val_name}"
    train = hf_split(dd[tr_name], cols, f"{name}[{tr_name}]", notes)
    ev = hf_split(dd[ev_name], cols, f"{name}[{ev_name}]", notes) if ev_name else None
    val = hf_split(dd[val_name], cols, f"{name}[{val_name}]", notes) if val_name else None
    fp = getattr(dd[tr_name], "_fingerprint", "")
    return Found(train, ev, f"hub {name}", notes, f"hub {name} {fp}", val)
