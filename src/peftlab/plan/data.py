"""What a run will feed its model, before it runs: split sizes, each text's length after truncation, the image side, and
from those the exact (batch, tokens) of every optimiser step and evaluation batch, cut as the loop cuts them.

`shapes_from_config(cfg, ...)` reads packaged or local data and the model's tokenizer (no weights); a hub dataset needs
its sizes given (`--train-size`); `shapes_from_encodings(cfg, enc_train, enc_eval)` is the same inside a run.
`train_steps(shapes, cfg)` / `eval_steps(...)` -> [(batch, tokens)]: text batches pad to their longest sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from peftlab.errors import BadInput


@dataclass
class Shapes:
    """Sizes and lengths of a run's data. Lengths None: text whose lengths are not known here (`tokens` assumed)."""

    task: str
    n_train: int
    n_eval: int | None  # the test split the run evaluates on; None: unknown (no eval prediction)
    train_lengths: np.ndarray | None = None  # (n_train,) tokens per text, truncated to max_length
    eval_lengths: np.ndarray | None = None
    tokens: int | None = None  # text without lengths: every text taken as this long
    image: tuple[int, int] | None = None  # (height, width) of the model's input
    labels: int | None = None  # classes, when the data was read
    source: str = ""  # where the numbers come from
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> bool:
        return self.image is None


class _Lengths:
    """Just enough of train.encode.Encoded for train_batches / eval_batches: its length and per-text lengths."""

    def __init__(self, lengths: np.ndarray):
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self.input_ids = True  # text: batches group by length

    def __len__(self) -> int:
        return len(self._lengths)

    def lengths(self) -> np.ndarray:
        return self._lengths


def train_steps(shapes: Shapes, cfg) -> list[tuple[int, int]]:
    """(batch size, padded tokens) of every optimiser step, in order, as train/loop.py makes them: the same seeded
    shuffles and length grouping; ceil(ceil(N / B) × epochs) steps (a fractional epoch stops early)."""
    import torch

    from peftlab.train.encode import train_batches

    n, b = shapes.n_train, cfg.batch_size
    total = max(1, math.ceil(math.ceil(n / b) * cfg.epochs))
    if shapes.train_lengths is None:  # images, or text of assumed length: every batch alike but the last
        t = shapes.tokens or 0
        sizes = [min(b, n - i) for i in range(0, n, b)]
        return [(sizes[i % len(sizes)], t) for i in range(total)]
    enc = _Lengths(shapes.train_lengths)
    generator = torch.Generator().manual_seed(cfg.seed)
    steps: list[tuple[int, int]] = []
    while len(steps) < total:
        for idx in train_batches(enc, b, generator, True):
            steps.append((len(idx), int(shapes.train_lengths[idx].max())))
            if len(steps) >= total:
                break
    return steps


def eval_steps(
    lengths: np.ndarray | None, n: int | None, batch_size: int, tokens: int | None
) -> list[tuple[int, int]]:
    """(batch size, padded tokens) of an evaluation (or a frozen-prefix capture) pass: longest texts first."""
    if not n:
        return []
    if lengths is None:
        return [(min(batch_size, n - i), tokens or 0) for i in range(0, n, batch_size)]
    order = np.sort(np.asarray(lengths))[::-1]
    return [(len(order[i : i + batch_size]), int(order[i])) for i in range(0, len(order), batch_size)]


def image_size(cfg, model_config, processor) -> tuple[int, int]:
    """The side a run resizes to: --image-size, else the image processor's crop or size, else the config's."""
    if cfg.image_size:
        return cfg.image_size, cfg.image_size
    for attr in ("crop_size", "size"):
        size = getattr(processor, attr, None) or {}
        if isinstance(size, dict):
            if "height" in size and "width" in size:
                return int(size["height"]), int(size["width"])
            if "shortest_edge" in size:
                return int(size["shortest_edge"]), int(size["shortest_edge"])
    vision = getattr(model_config, "vision_config", None) or model_config
    side = getattr(vision, "image_size", None)
    side = (
        side if isinstance(side, int) else 224
    )  # ResNet and MobileNet configs may not say: 224, their training size
    return side, side


def _is_hub(name: str) -> bool:
    from peftlab.data.local import looks_like_path
    from peftlab.data.packaged import PACKAGED_DATASETS

    return (
        name not in PACKAGED_DATASETS and not Path(name).expanduser().exists() and not looks_like_path(name)
    )


def shapes_from_config(cfg, model_config, *, train_size: int | None = None, eval_size: int | None = None,
                       seq_length: int | None = None) -> Shapes:  # fmt: skip
    """Shapes of cfg's data without training: packaged and local data are read (texts tokenized with the model's own
    tokenizer when it can be read here); a hub dataset's sizes cannot be known without downloading it, so they must be
    given (`train_size`, `eval_size`), and its texts are taken as `seq_length` tokens (default: --max-length)."""
    from peftlab.models.loading import load_processor

    task = cfg.task
    text = task == "text-classification"
    processor = load_processor(cfg.model, task)
    image = None if text else image_size(cfg, model_config, processor)
    cap = lambda n, m: n if m is None else min(n, m)  # noqa: E731  (--max-*-samples cap a given size too)
    if train_size is not None or _is_hub(cfg.dataset):
        if train_size is None:
            raise BadInput(
                f"--dataset {cfg.dataset}: a hub dataset's size is not known without downloading it; give "
                "--train-size N (and --eval-size N for the test split), or plan on a local copy of the data"
            )
        if train_size < 1 or (eval_size is not None and eval_size < 1):
            raise BadInput("--train-size / --eval-size: give whole numbers of examples >= 1")
        tokens = (seq_length or cfg.max_length) if text else None
        shapes = Shapes(task, cap(train_size, cfg.max_train_samples),
                        cap(eval_size, cfg.max_eval_samples) if eval_size is not None else None,
                        tokens=tokens, image=image, source="sizes given on the command line")  # fmt: skip
        if text:
            how = (
                f"{seq_length} tokens (--seq-length)"
                if seq_length
                else f"--max-length {cfg.max_length} (an upper bound)"
            )
            shapes.notes.append(f"text lengths not read: every text taken as {how}")
        if eval_size is None:
            shapes.notes.append("no --eval-size: evaluation time not predicted")
        return shapes
    from peftlab.data import load_data

    data = load_data(cfg.dataset, task=task, split_seed=cfg.split_seed, max_train_samples=cfg.max_train_samples,
                     max_eval_samples=cfg.max_eval_samples, text_column=cfg.text_column,
                     label_column=cfg.label_column, image_column=cfg.image_column, eval_split=cfg.eval_split)  # fmt: skip
    shapes = Shapes(task, len(data.train.labels), len(data.eval.labels), image=image,
                    labels=len(data.label_names), source=f"read from the data of {cfg.dataset}")  # fmt: skip
    if text:
        if processor is None:
            shapes.tokens = seq_length or cfg.max_length
            shapes.notes.append(
                f"no tokenizer here for {cfg.model}: every text taken as {shapes.tokens} tokens"
            )
        else:
            shapes.train_lengths = _lengths(processor, data.train.inputs, cfg.max_length)
            shapes.eval_lengths = _lengths(processor, data.eval.inputs, cfg.max_length)
    return shapes


def _lengths(tokenizer, texts, max_length: int) -> np.ndarray:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)


def shapes_from_encodings(cfg, enc_train, enc_eval) -> Shapes:
    """The same from a run's own encodings (exact lengths and image side)."""
    text = enc_train.input_ids is not None
    image = None if text else tuple(int(s) for s in enc_train.pixel_values.shape[2:])
    return Shapes(cfg.task, len(enc_train), len(enc_eval),
                  train_lengths=enc_train.lengths() if text else None,
                  eval_lengths=enc_eval.lengths() if text else None, image=image,
                  source="the run's encoded data")  # fmt: skip
