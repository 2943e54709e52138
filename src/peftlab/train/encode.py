"""Turns a data split into model inputs once: token ids per text (padded later, per batch) or pixel tensors.

`encode(split, processor, task, cfg)` -> Encoded; `Encoded.batches(...)` yields index lists, `collate` pads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Encoded:
    task: str
    labels: torch.Tensor  # (N,) int64
    input_ids: list[torch.Tensor] | None = None  # text: N tensors of (T_i,), unpadded
    token_type_ids: list[torch.Tensor] | None = None
    pad_id: int = 0
    pixel_values: torch.Tensor | None = None  # image: (N, 3, S, S) float32, normalised

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        """(N,) tokens per text (images: all 1)."""
        if self.input_ids is None:
            return np.ones(len(self), dtype=np.int64)
        return np.array([len(t) for t in self.input_ids], dtype=np.int64)

    def collate(self, idx: list[int], with_labels: bool = True) -> dict:
        """A batch for indices idx. Text pads to the batch's longest sequence: (B, T_max) ids + attention_mask."""
        out: dict[str, torch.Tensor] = {}
        if self.input_ids is not None:
            seqs = [self.input_ids[i] for i in idx]
            t_max = max(len(s) for s in seqs)
            ids = torch.full((len(idx), t_max), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), t_max), dtype=torch.long)
            for row, s in enumerate(seqs):
                ids[row, : len(s)] = s
                mask[row, : len(s)] = 1
            out["input_ids"], out["attention_mask"] = ids, mask
            if self.token_type_ids is not None:
                tt = torch.zeros((len(idx), t_max), dtype=torch.long)
                for row, i in enumerate(idx):
                    tt[row, : len(self.token_type_ids[i])] = self.token_type_ids[i]
                out["token_type_ids"] = tt
        else:
            out["pixel_values"] = self.pixel_values[idx]
        if with_labels:
            out["labels"] = self.labels[idx]
        return out


def train_batches(
    enc: Encoded, batch_size: int, generator: torch.Generator, group_by_length: bool
) -> list[list[int]]:
    """One epoch of shuffled batches. With group_by_length, texts of similar length share a batch (less padding):
    shuffle, cut into mega-batches of 50 batches, sort each by length, cut into batches, shuffle the batch order."""
    n = len(enc)
    perm = torch.randperm(n, generator=generator).tolist()
    if not group_by_length or enc.input_ids is None:
        return [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    lengths = enc.lengths()
    mega = batch_size * 50
    batches = []
    for start in range(0, n, mega):
        chunk = sorted(perm[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def eval_batches(enc: Encoded, batch_size: int) -> list[list[int]]:
    """Batches in length order (text) so padding is minimal; predictions are put back in place by index."""
    order = np.argsort(-enc.lengths(), kind="stable").tolist()
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def size_kwargs(processor, image_size: int | None) -> dict:
    """--image-size S as an image processor's arguments: resize (shortest edge or square, as the processor does it)
    and crop to S; {} keeps the processor's own size."""
    if image_size is None:
        return {}
    size = getattr(processor, "size", None) or {}
    out = {
        "size": {"shortest_edge": image_size}
        if "shortest_edge" in size
        else {"height": image_size, "width": image_size}
    }
    if getattr(processor, "crop_size", None):
        out["crop_size"] = {"height": image_size, "width": image_size}
    return out


def _image_tensor(images: list, processor, image_size: int | None) -> torch.Tensor:
    """PIL images -> (N, 3, S, S) float32 through the model's own image processor (resize, crop, rescale, normalise)."""
    kwargs = size_kwargs(processor, image_size)
    chunks = []
    for start in range(0, len(images), 256):  # bounded peak memory while converting
        batch = processor(images=images[start : start + 256], return_tensors="pt", **kwargs)
        chunks.append(batch["pixel_values"].float())
    return torch.cat(chunks)


def encode(split, processor, task: str, *, max_length: int = 128, image_size: int | None = None) -> Encoded:
    labels = torch.as_tensor(np.asarray(split.labels), dtype=torch.long)
    if task == "text-classification":
        tok = processor(list(split.inputs), truncation=True, max_length=max_length)
        ids = [torch.tensor(x, dtype=torch.long) for x in tok["input_ids"]]
        tts = None
        if "token_type_ids" in tok:
            tts = [torch.tensor(x, dtype=torch.long) for x in tok["token_type_ids"]]
        return Encoded(task, labels, input_ids=ids, token_type_ids=tts, pad_id=processor.pad_token_id or 0)
    return Encoded(task, labels, pixel_values=_image_tensor(list(split.inputs), processor, image_size))
