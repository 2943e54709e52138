"""The VQA answer head: fuse an image and a question embedding, Linear + ReLU, Linear over the answer vocabulary.

tasks/vqa/run.py builds `FusionHead`s, trains them together with `train_heads` on cached embeddings (train/fast.py)
and checks `head_params` against them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from peftlab.train.fast import EVAL_BATCH, FitStats, fit_heads, logits_in_batches

INPUTS = ("both", "image", "question")  # "image" / "question": the one-embedding baselines


def fused_width(d_img: int, d_txt: int, fusion: str, hidden: int, inputs: str = "both") -> tuple[int, bool]:
    """(width of the fused vector, whether the two embeddings are first projected to `hidden` to multiply them)."""
    if inputs == "image":
        return d_img, False
    if inputs == "question":
        return d_txt, False
    project = fusion != "concat" and d_img != d_txt  # an element-wise product needs equal widths
    d_prod = hidden if project else d_img
    return {"concat": d_img + d_txt, "product": d_prod, "concat-product": d_img + d_txt + d_prod}[
        fusion
    ], project


class FusionHead(nn.Module):
    """concat:          [i; q]              (B, Di) ++ (B, Dq) -> (B, Di + Dq)
    product:            i * q               (B, D) * (B, D) -> (B, D); unequal widths: (Pi i) * (Pq q), (B, H)
    concat-product:     [i; q; i * q]       (B, Di + Dq + D)
    then Linear(D_fused, H) + ReLU (+ Dropout) + Linear(H, K)."""

    def __init__(self, d_img: int, d_txt: int, num_answers: int, fusion: str = "concat", hidden: int = 512,
                 dropout: float = 0.0, inputs: str = "both"):  # fmt: skip
        super().__init__()
        self.fusion, self.inputs = fusion, inputs
        d_fused, project = fused_width(d_img, d_txt, fusion, hidden, inputs)
        self.proj_img = nn.Linear(d_img, hidden) if project else None
        self.proj_txt = nn.Linear(d_txt, hidden) if project else None
        self.hidden = nn.Linear(d_fused, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, num_answers)

    def fuse(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        if self.inputs == "image":
            return img
        if self.inputs == "question":
            return txt
        if self.fusion == "concat":
            return torch.cat([img, txt], dim=-1)
        prod = self.proj_img(img) * self.proj_txt(txt) if self.proj_img is not None else img * txt
        return prod if self.fusion == "product" else torch.cat([img, txt, prod], dim=-1)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        h = self.drop(F.relu(self.hidden(self.fuse(img, txt))))  # (B, D_fused) -> (B, H)
        return self.out(h)  # (B, H) -> (B, K)


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
