"""The VQA answer head: fuse an image and a question embedding, Linear + ReLU, Linear over the answer vocabulary.

tasks/vqa/run.py builds `FusionHead`s, trains them together with `train_heads` on cached embeddings (train/fast.py)
and checks `head_params` against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from peftlab.tasks.vqa.vqamodel import FusionHead, fused_width
from peftlab.train.fast import EVAL_BATCH, FitStats, fit_heads, logits_in_batches

INPUTS = ("both", "image", "question")  # "image" / "question": the one-embedding baselines


def head_params(
    d_img: int, d_txt: int, num_answers: int, fusion: str, hidden: int, inputs: str = "both"
) -> list[dict]:
    """Predicted parameters per component, by arithmetic on the widths (all trainable)."""
    d_fused, project = fused_width(d_img, d_txt, fusion, hidden, inputs)
    h, k = hidden, num_answers
    parts = []
    if project:
        parts.append(
            {"component": "image projection", "params": d_img * h + h, "formula": f"{d_img}*{h} + {h}"}
        )
        parts.append(
            {"component": "question projection", "params": d_txt * h + h, "formula": f"{d_txt}*{h} + {h}"}
        )
    parts.append(
        {"component": "hidden Linear+ReLU", "params": d_fused * h + h, "formula": f"{d_fused}*{h} + {h}"}
    )
    parts.append({"component": "answer Linear", "params": h * k + k, "formula": f"{h}*{k} + {k}"})
    for p in parts:
        p["trainable"] = p["params"]
    return parts


@dataclass
class Pairs:
    """Training or eval examples as indices into the embedding tables."""

    img: torch.Tensor  # (N,) int64 row of the image embedding
    txt: torch.Tensor  # (N,) int64 row of the question embedding
    labels: torch.Tensor  # (N,) int64 answer id, -1 for an answer the training split never gave

    def __len__(self) -> int:
        return len(self.labels)


def _gather(img_emb: torch.Tensor, txt_emb: torch.Tensor, pairs: Pairs):
    # (B,) example ids -> (B, Di) image rows, (B, Dt) question rows: two index_selects, no per-sample Python
    def gather(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return img_emb.index_select(0, pairs.img[idx]), txt_emb.index_select(0, pairs.txt[idx])

    return gather


def train_heads(heads: list[FusionHead], img_emb: torch.Tensor, txt_emb: torch.Tensor, pairs: Pairs, *,
                epochs: float, lr: float, batch_size: int, weight_decay: float, warmup_ratio: float,
                max_grad_norm: float, seed: int, threads: int | None = 1, progress: bool = True,
                desc: str = "head") -> FitStats:  # fmt: skip
    """AdamW on minibatches of cached embeddings (no weight decay on biases), seeded shuffling, every head on the same
    batches (train/fast.py). The tables stay whole: a batch gathers its rows from img_emb (M, Di) and txt_emb (T, Dt)."""
    return fit_heads(heads, _gather(img_emb, txt_emb, pairs), pairs.labels, epochs=epochs, lr=lr,
                     batch_size=batch_size, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
                     max_grad_norm=max_grad_norm, seed=seed, threads=threads, progress=progress, desc=desc)  # fmt: skip


def train_head(
    head: FusionHead, img_emb: torch.Tensor, txt_emb: torch.Tensor, pairs: Pairs, **knobs
) -> FitStats:
    """One head alone (train_heads' knobs); FitStats.final_loss holds its one loss."""
    return train_heads([head], img_emb, txt_emb, pairs, **knobs)


def predict(head: FusionHead, img_emb: torch.Tensor, txt_emb: torch.Tensor, pairs: Pairs,
            batch_size: int = EVAL_BATCH) -> torch.Tensor:  # fmt: skip
    """(N,) predicted answer ids, batch_size questions at a time under inference_mode."""
    gather = _gather(img_emb, txt_emb, pairs)
    return logits_in_batches(head, gather, len(pairs), batch_size).argmax(-1).to(torch.long)
