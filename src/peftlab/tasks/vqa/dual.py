"""The offline CLIP-style pair (`--encoder dual`): two frozen towers, two linear projections trained here (InfoNCE).

tasks/vqa/run.py calls `fit_dual(...)` on the training split's tower embeddings; not CLIP: projections only, tiny data.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from peftlab.tasks.vqa.cache import cache_dir
from peftlab.tasks.vqa.vqamodel import DUAL_DIM, DualProjection
from peftlab.train.fast import torch_threads

DUAL_EPOCHS, DUAL_BATCH, DUAL_LR = 30, 256, 1e-3
DUAL_VERSION = 1  # bump when the recipe changes: it is part of the cache key
UNINFORMATIVE = {"yes", "no"}  # answers that describe no image on their own (numbers too)


def dual_params(d_img: int, d_txt: int, dim: int = DUAL_DIM) -> int:
    return d_img * dim + d_txt * dim + 1  # two bias-free projections + the logit scale


def contrastive_pairs(
    questions: list[str], answers: list[str], image_index
) -> tuple[list[int], list[str], str]:
    """The training split's (image, answer text) pairs, leaving out answers that name nothing (yes/no, numbers);
    when too few remain (< 2 distinct texts), (image, question) pairs instead. -> image rows, texts, what was used."""
    keep = [i for i, a in enumerate(answers) if a.lower() not in UNINFORMATIVE and not a.isdigit()]
    if len({answers[i] for i in keep}) >= 2:
        return [int(image_index[i]) for i in keep], [answers[i] for i in keep], "(image, answer text) pairs"
    return [int(i) for i in image_index], list(questions), "(image, question) pairs"


def info_nce(
    img_z: torch.Tensor, txt_z: torch.Tensor, positive: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: (B, P) x (B, P) -> (B, B) logits; positive (B, B) bool marks pairs
    sharing an image or a text (a batch often holds "circle" twice), each row's target spread evenly over them."""
    logits = scale.exp().clamp(max=100) * img_z @ txt_z.T  # (B, B)
    target = positive.float() / positive.float().sum(1, keepdim=True)  # rows sum to 1
    loss_i = -(target * logits.log_softmax(1)).sum(1).mean()  # image -> texts
    loss_t = -(target.T * logits.T.log_softmax(1)).sum(1).mean()  # text -> images
    return (loss_i + loss_t) / 2


@dataclass
class DualFit:
    projection: DualProjection
    pairs: int
    what: str  # which pairs
    train_s: float
    final_loss: float | None
    cached: bool


def fit_dual(img_feats: torch.Tensor, txt_feats: torch.Tensor, pair_img: list[int], pair_txt: list[int], *,
             key_parts: dict, seed: int, what: str, progress: bool = True) -> DualFit:  # fmt: skip
    """Train the projections on pairs (pair_img[j], pair_txt[j]) of rows of img_feats (M, Di) / txt_feats (T, Dt),
    or load them from the cache when the same towers, pairs, recipe and seed were trained before."""
    torch.manual_seed(seed)
    proj = DualProjection(img_feats.shape[1], txt_feats.shape[1])
    key = {"version": DUAL_VERSION, "dim": DUAL_DIM, "epochs": DUAL_EPOCHS, "batch": DUAL_BATCH, "lr": DUAL_LR,
           "seed": seed, **key_parts}  # fmt: skip
    path = (
        cache_dir() / f"dual-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]}.pt"
    )
    if path.is_file():
        try:
            proj.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            proj.eval().requires_grad_(False)
            return DualFit(proj, len(pair_img), what, 0.0, None, cached=True)
        except (RuntimeError, OSError, KeyError):
            pass  # unreadable: train again
    img_rows, txt_rows = torch.tensor(pair_img), torch.tensor(pair_txt)  # (N,), (N,)
    n = len(img_rows)
    opt = torch.optim.AdamW(proj.parameters(), lr=DUAL_LR, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    steps = DUAL_EPOCHS * math.ceil(n / DUAL_BATCH)
    bar = tqdm(
        total=steps,
        desc="contrastive projections",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    start, last = time.perf_counter(), float("nan")
    with torch_threads(1):  # matrices of a few hundred columns: one thread, see train/fast.py
        for _ in range(DUAL_EPOCHS):
            perm = torch.randperm(n, generator=g)
            for b in range(0, n, DUAL_BATCH):
                idx = perm[b : b + DUAL_BATCH]
                i_rows, t_rows = img_rows[idx], txt_rows[idx]  # (B,), (B,)
                same_img, same_txt = i_rows[:, None] == i_rows[None, :], t_rows[:, None] == t_rows[None, :]
                positive = same_img | same_txt  # (B, B)
                loss = info_nce(
                    proj.image(img_feats[i_rows]), proj.text(txt_feats[t_rows]), positive, proj.logit_scale
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last = loss.item()
                bar.update(1)
    bar.close()
    proj.eval().requires_grad_(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(proj.state_dict(), tmp)
    tmp.replace(path)
    return DualFit(proj, n, what, time.perf_counter() - start, last, cached=False)
