"""The VQA answer head: fuse an image and a question embedding, Linear + ReLU, Linear over the answer vocabulary.

tasks/vqa/run.py builds `FusionHead`, trains it with `train_head` on cached embeddings and checks `head_params` against it.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

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


@contextmanager
def one_thread():
    """Matrices of a few hundred columns: one thread is as fast as two on an idle machine and 20x faster on a busy
    one (OpenMP threads spin waiting for each other on oversubscribed cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Pairs:
    """Training or eval examples as indices into the embedding tables."""

    img: torch.Tensor  # (N,) int64 row of the image embedding
    txt: torch.Tensor  # (N,) int64 row of the question embedding
    labels: torch.Tensor  # (N,) int64 answer id, -1 for an answer the training split never gave

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class HeadStats:
    train_s: float
    steps: int
    samples_per_s: float
    final_loss: float


def _schedule(step: int, total: int, warmup: int) -> float:
    # linear warm-up to 1 over `warmup` steps, then linear decay to 0 at `total`
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train_head(head: FusionHead, img_emb: torch.Tensor, txt_emb: torch.Tensor, pairs: Pairs, *, epochs: float,
               lr: float, batch_size: int, weight_decay: float, warmup_ratio: float, max_grad_norm: float, seed: int,
               progress: bool = True, desc: str = "head") -> HeadStats:  # fmt: skip
    """AdamW on minibatches of cached embeddings (no weight decay on biases); seeded shuffling."""
    g = torch.Generator().manual_seed(seed)
    n = len(pairs)
    per_epoch = math.ceil(n / batch_size)
    total = max(1, math.ceil(epochs * per_epoch))
    decay = [p for p in head.parameters() if p.dim() >= 2]
    no_decay = [p for p in head.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    warmup = int(total * warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _schedule(s, total, warmup))
    head.train()
    step, seen, loss_sum, loss_n, last = 0, 0, 0.0, 0, float("nan")
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=not progress, leave=False)
    start = time.perf_counter()
    with one_thread():
        while step < total:
            perm = torch.randperm(n, generator=g)
            for b in range(0, n, batch_size):
                if step >= total:
                    break
                idx = perm[b : b + batch_size]
                logits = head(img_emb[pairs.img[idx]], txt_emb[pairs.txt[idx]])  # (B, K)
                loss = F.cross_entropy(logits, pairs.labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if max_grad_norm > 0:
                    nn.utils.clip_grad_norm_(head.parameters(), max_grad_norm)
                opt.step()
                sched.step()
                step, seen = step + 1, seen + len(idx)
                loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
                if step % per_epoch == 0 or step == total:  # mean loss over the last epoch
                    last, loss_sum, loss_n = loss_sum / loss_n, 0.0, 0
                    bar.set_postfix_str(f"loss {last:.3f}")
                bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    head.eval()
    return HeadStats(seconds, total, seen / max(seconds, 1e-9), last)


def predict(
    head: FusionHead, img_emb: torch.Tensor, txt_emb: torch.Tensor, pairs: Pairs, batch_size: int = 4096
) -> torch.Tensor:
    """(N,) predicted answer ids."""
    head.eval()
    out = torch.empty(len(pairs), dtype=torch.long)
    with one_thread(), torch.inference_mode():
        for b in range(0, len(pairs), batch_size):
            sl = slice(b, b + batch_size)
            out[sl] = head(img_emb[pairs.img[sl]], txt_emb[pairs.txt[sl]]).argmax(-1)
    return out
