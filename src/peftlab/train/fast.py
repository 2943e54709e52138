"""A lean training loop for small heads over features already in memory: batches are index slices of one seeded
permutation per epoch, gathered from contiguous tensors; fused AdamW; no DataLoader and no per-sample Python.

`fit_heads(heads, gather, labels, ...)` trains one or several heads on the same batches (VQA's fusion head with its
question-only and image-only baselines; `head` on cached classification features) and returns FitStats; on two
cores, several heads step in two parts side by side (one thread each), with the one-thread numbers to the bit;
`epoch_batches` is the batcher, `logits_in_batches` evaluates in large batches under inference_mode.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from peftlab.train.loop import fused_kwargs, param_groups

EVAL_BATCH = 4096  # rows per evaluation batch: a (4096, 2432) float32 input is 40 MB


@dataclass
class FitStats:
    train_s: float  # wall seconds of the loop, every head together
    steps: int
    samples: int  # samples drawn, counting repeats across epochs (each one feeds every head)
    samples_per_s: float
    # per head: mean loss over the last epoch (or over the part of it a fractional epoch ran)
    final_loss: list[float]
    # per head: moving average 0.9 / 0.1 over the steps, as train/loop.py reports it
    ema_loss: list[float]


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """One epoch: a permutation of range(n) cut into slices of batch_size (the last one shorter): every sample exactly
    once, in an order fixed by the generator's state. Views of one (n,) int64 tensor, no copies."""
    return torch.randperm(n, generator=generator).split(batch_size)


def schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor of step 0..total-1: linear warm-up to 1 over `warmup` steps (the first step at 1/warmup),
    then linear decay to 0 at `total`. The VQA head's schedule."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def hf_schedule(step: int, total: int, warmup: int) -> float:
    """transformers' get_linear_schedule_with_warmup (the first step at 0), as train/loop.py runs it."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def total_steps(n: int, batch_size: int, epochs: float) -> int:
    """Optimiser steps of a run: ceil(ceil(n / B) x epochs), at least 1 (the same count as train/loop.py)."""
    return max(1, math.ceil(math.ceil(n / batch_size) * epochs))


@contextmanager
def torch_threads(n: int | None):
    """Run with n intra-op threads (None: leave as is), restored after. Heads of a few hundred columns train on one:
    as fast as two on an idle 2-core machine at batch 32, and many times faster on a busy one, where OpenMP threads
    spin waiting for each other on oversubscribed cores."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_heads(
    heads: Sequence[nn.Module],
    gather: Callable[[torch.Tensor], tuple],
    labels: torch.Tensor,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    weight_decay: float,
    warmup_ratio: float,
    max_grad_norm: float,
    seed: int,
    threads: int | None = None,
    progress: bool = True,
    desc: str = "head",
    lr_factor: Callable[[int, int, int], float] = schedule,
    on_epoch: Callable[[int], None] | None = None,
    batches: Callable[[torch.Generator], Sequence] | None = None,
) -> FitStats:
    """Train every head on the same batches: gather(idx (B,) int64) -> the inputs each head is called with,
    labels (N,) int64. The loss is the sum of the heads' cross-entropies; their parameters are disjoint, so each
    head's gradient is its own loss's, clipped by its own norm, and AdamW (elementwise per parameter) updates each head
    as if it trained alone on these batches. Seeded: the same seed gives the same batches and the same numbers.
    lr_factor(step, total, warmup) scales lr; on_epoch(epoch) runs after each pass over the data (and after the last
    step of a fractional one), outside the timed training, and may raise to stop (a pruned tuning trial).
    batches(generator) -> one epoch's index batches (default epoch_batches; classification passes the accelerate
    loop's own batcher, so both paths draw the same batches for a seed)."""
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    batches = batches or (lambda gen: epoch_batches(n, batch_size, gen))
    per_epoch = math.ceil(n / batch_size)
    total = total_steps(n, batch_size, epochs)
    warmup = int(total * warmup_ratio)
    holder = nn.ModuleList(heads)
    holder.train()
    # several heads on two cores: each half's step (forward, backward, clipping, AdamW) on its own core
    groups = _groups(heads, threads)
    parts = [_Part.of([heads[i] for i in ids], weight_decay, lr) for ids in groups]
    # the parts return their heads' losses concatenated, group after group; back[i] is head i's place there
    back = torch.tensor([i for ids in groups for i in ids]).argsort()
    pool = ThreadPoolExecutor(max_workers=1) if len(parts) > 1 else None
    step, seen, epoch, paused = 0, 0, 0, 0.0
    epoch_loss, epoch_steps = torch.zeros(len(heads)), 0  # summed on the tensor side: no host sync per step
    last, ema = [float("nan")] * len(heads), None
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=not progress, leave=False)
    start = time.perf_counter()
    with torch_threads(threads):
        while step < total:
            for idx in batches(g):
                if step >= total:
                    break
                idx = torch.as_tensor(idx)  # (B,) int64
                inputs, y = gather(idx), labels[idx]
                lr_now = lr * lr_factor(step, total, warmup)
                if pool is None:
                    got = parts[0].step(inputs, y, lr_now, max_grad_norm)
                else:  # the parts share no parameter: each one's step is what it would be alone, bit for bit
                    other = pool.submit(parts[1].step, inputs, y, lr_now, max_grad_norm)
                    got = parts[0].step(inputs, y, lr_now, max_grad_norm) + other.result()
                losses = torch.stack(got)[back]  # (H,) in head order
                step, seen = step + 1, seen + len(idx)
                epoch_loss += losses.detach()
                epoch_steps += 1
                ema = losses.detach() if ema is None else 0.9 * ema + 0.1 * losses.detach()
                if step % per_epoch == 0 or step == total:
                    last = (epoch_loss / epoch_steps).tolist()
                    epoch_loss, epoch_steps = torch.zeros(len(heads)), 0
                    bar.set_postfix_str("loss " + " ".join(f"{v:.3f}" for v in last))
                if progress and (step % 20 == 0 or step == total):
                    bar.update(step - bar.n)
            epoch += 1
            if on_epoch is not None:
                t0 = time.perf_counter()
                on_epoch(epoch)
                holder.train()
                paused += time.perf_counter() - t0
    bar.close()
    if pool is not None:
        pool.shutdown()
    seconds = time.perf_counter() - start - paused
    holder.eval()
    return FitStats(seconds, total, seen, seen / max(seconds, 1e-9), last, ema.tolist())


@dataclass
class _Part:
    """Heads that step together in one thread, with their own AdamW: AdamW is elementwise per parameter, so one
    optimiser per part updates every head exactly as one over all of them would."""

    heads: list[nn.Module]
    own: list[list[nn.Parameter]]  # per head: its trainable parameters (clipped by their own norm)
    opt: torch.optim.Optimizer

    @classmethod
    def of(cls, heads: list[nn.Module], weight_decay: float, lr: float) -> _Part:
        holder = nn.ModuleList(heads)
        opt = torch.optim.AdamW(param_groups(holder, weight_decay), lr=lr, **fused_kwargs(holder))
        return cls(heads, [[p for p in h.parameters() if p.requires_grad] for h in heads], opt)

    def step(self, inputs: tuple, y: torch.Tensor, lr: float, max_grad_norm: float) -> list[torch.Tensor]:
        """One optimiser step on a batch -> each head's loss (detached)."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        losses = [F.cross_entropy(h(*inputs), y) for h in self.heads]
        torch.stack(losses).sum().backward()  # disjoint parameters: each head gets its own loss's gradient
        if max_grad_norm > 0:
            for params in self.own:  # each head's own global norm, as if alone: one foreach call per head
                nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
        self.opt.step()
        return [loss.detach() for loss in losses]


def _groups(heads: Sequence[nn.Module], threads: int | None) -> list[list[int]]:
    """Head indices in one group, or in two of about equal parameters (their matmul work) that step on two threads of
    one intra-op thread each. Small products do not split well over OpenMP threads (VQA's three heads: ~8.5 ms of
    forward and backward a step on one thread or on two), but two halves side by side each keep a core busy (5.8 ms
    here). Two only with one intra-op thread, two or more cores, and no dropout: masks drawn from the shared
    generator by two threads would come in a racing order, and the same seed must give the same numbers."""
    from peftlab.distributed import physical_cores

    everything = [list(range(len(heads)))]
    dropout = any(isinstance(m, nn.Dropout) and m.p > 0 for h in heads for m in h.modules())
    if len(heads) < 2 or threads != 1 or physical_cores() < 2 or dropout:
        return everything
    sizes = [sum(p.numel() for p in h.parameters() if p.requires_grad) for h in heads]
    groups, load = ([], []), [0, 0]
    for i in sorted(range(len(heads)), key=lambda i: -sizes[i]):  # largest first, onto the lighter side
        side = 0 if load[0] <= load[1] else 1
        groups[side].append(i)
        load[side] += sizes[i]
    return [sorted(groups[0]), sorted(groups[1])] if groups[1] else everything


def logits_in_batches(
    head: nn.Module, gather: Callable[[torch.Tensor], tuple], n: int, batch_size: int = EVAL_BATCH
) -> torch.Tensor:
    """(n, K) logits of an eval-mode head over rows 0..n-1, batch_size rows at a time, under inference_mode."""
    head.eval()
    chunks = []
    with torch.inference_mode():
        for idx in torch.arange(n).split(batch_size):
            chunks.append(head(*gather(idx)))
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)
