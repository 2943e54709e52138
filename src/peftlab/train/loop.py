"""The training loop: AdamW, linear warm-up then linear decay, gradient clipping, on accelerate.Accelerator.

`train(model, enc, cfg, lr=...)` trains in place and returns TrainStats. Under `accelerate launch` (world > 1) the
model is wrapped in DDP, each process trains on its contiguous part of every global batch (distributed.shard) and
the gradients are all-reduced, so a step is the single-process step on the same global batch up to float rounding.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from peftlab import distributed, trackers
from peftlab.precision import MIXED
from peftlab.train.dropout import fast_dropout
from peftlab.train.encode import Encoded, train_batches


@dataclass
class TrainStats:
    steps: int
    samples: int  # samples seen, counting repeats across epochs
    train_s: float  # wall seconds inside the loop, evaluation excluded
    final_loss: float
    samples_per_s: float


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices, not biases or norm weights (1-d tensors), as HF Trainer does."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fused_kwargs(model: torch.nn.Module) -> dict:
    """One fused AdamW kernel over all parameters where torch has it (fp32 on CPU since 2.4): on MiniLM-L6 full
    fine-tuning (22.7M parameters) a step takes ~50 ms instead of ~500 ms for the default multi-tensor path."""
    params = [p for p in model.parameters() if p.requires_grad]
    ok = params and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params)
    return {"fused": True} if ok and len({p.device.type for p in params}) == 1 else {}


def freeze_norm_statistics(model: torch.nn.Module) -> None:
    """Batch norms whose weights do not train stay in eval mode: their running mean / variance are part of the frozen
    backbone, so they keep the pretrained values (as timm freezes a frozen backbone's BN). An adapter saved by PEFT then
    reloads onto the original checkpoint with identical logits; trainable BNs (full, last-layer) update as usual."""
    for m in model.modules():
        frozen = not any(p.requires_grad for p in m.parameters(recurse=False))
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and frozen:
            m.eval()


class _IndexBatches(torch.utils.data.Dataset):
    """A dataset whose items are whole batches (lists of indices), so accelerate can shard them across processes."""

    def __init__(self, batches: list[list[int]]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> list[int]:
        return self.batches[i]


def train(
    model: torch.nn.Module,
    enc: Encoded,
    *,
    lr: float,
    epochs: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.01,
    warmup_ratio: float = 0.1,
    max_grad_norm: float = 1.0,
    group_by_length: bool = True,
    progress: bool = True,
    desc: str = "train",
    forward=None,
    after_step=None,
    on_epoch=None,
    precision: str = "fp32",
) -> TrainStats:
    """Train `model` on `enc`. `forward(model, batch) -> loss` may replace model(**batch).loss (cached-prefix paths);
    `after_step(model, step)` runs after each optimiser step while the gradients are still there (AdaLoRA's budget);
    `on_epoch(model, epoch)` after each pass over the data (and after the last step of a fractional epoch): tuning
    evaluates on validation there and may raise to stop (a pruned trial). Its time is not training time."""
    # precision: peftlab.precision's resolved name; on CUDA, batches come from pinned memory with non-blocking copies
    cuda = torch.cuda.is_available()
    n_proc = distributed.world()
    # several processes: the same graph every step; static_graph also lets a method leave a parameter unused.
    # split_batches: --batch-size is the global batch split over the processes, so the scheduler steps once per step
    # (without it accelerate steps it once per process, as if each process's batch were a step of its own)
    ddp = [DistributedDataParallelKwargs(static_graph=True)] if n_proc > 1 else None
    accelerator = Accelerator(cpu=not cuda, mixed_precision=MIXED[precision], kwargs_handlers=ddp,
                              dataloader_config=DataLoaderConfiguration(non_blocking=cuda, split_batches=n_proc > 1))  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(enc) / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * epochs))
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, **fused_kwargs(model))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    freeze_norm_statistics(model)
    forward = forward or (lambda m, b: m(**b).loss)
    if n_proc > 1 and distributed.rank() > 0:  # dropout masks differ between processes, as between examples
        torch.manual_seed(seed + 7919 * distributed.rank())

    def epoch_batches():
        """One epoch as (batch on the device, loss weight, examples in the global batch)."""
        global_batches = train_batches(enc, batch_size, generator, group_by_length)
        if n_proc == 1:
            loader = torch.utils.data.DataLoader(
                _IndexBatches(global_batches), batch_size=None, collate_fn=enc.collate, pin_memory=cuda
            )
            for batch in accelerator.prepare(loader):
                yield batch, None, len(batch["labels"])
            return
        # Several processes: each trains on its contiguous part of every global batch. DDP averages the n processes'
        # gradients, so process k's mean loss over its b_k examples is weighted n * b_k / B: the average is then the
        # gradient of the mean loss over the global batch of B, whatever the parts' sizes. A process whose part of a
        # short last batch is empty runs one example weighted 0 (DDP needs every process in every all-reduce).
        for global_batch in global_batches:
            part = distributed.shard(global_batch)
            batch = enc.collate(part or global_batch[:1])
            batch = {k: v.to(accelerator.device, non_blocking=cuda) for k, v in batch.items()}
            yield batch, n_proc * len(part) / len(global_batch), len(global_batch)

    bar = tqdm(
        total=total_steps, desc=desc, file=sys.stderr, disable=not progress, leave=False, mininterval=0.5
    )
    step, seen, running, epoch, paused = 0, 0, None, 0, 0.0
    # several processes: a Tracking on each (only the main one writes), so all join the per-step loss reduce
    tracked = trackers.active()
    start = time.perf_counter()
    with fast_dropout(model):  # the same dropout with cheaper masks (train/dropout.py)
        while step < total_steps:
            epoch += 1
            for batch, weight, n_global in epoch_batches():
                loss = forward(model, batch)
                if weight is not None:
                    loss = loss * weight
                accelerator.backward(loss)
                if max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                scheduler.step()
                if after_step is not None:
                    after_step(accelerator.unwrap_model(model), step)
                optimizer.zero_grad(set_to_none=True)
                # an exponential moving average of the loss, kept on the device: no host sync per step (linear in the
                # losses, so over several processes its mean, taken at the end, is the global batches' average)
                running = loss.detach() if running is None else 0.9 * running + 0.1 * loss.detach()
                step += 1
                seen += n_global  # samples/s is global: every process counts the whole batch
                if tracked is not None:  # --report-to: one host sync per step for the step's own loss
                    step_loss = loss.detach() if n_proc == 1 else accelerator.reduce(loss.detach(), "mean")
                    tracked.log_step(step, loss=float(step_loss.item()), lr=scheduler.get_last_lr()[0],
                                     samples_per_s=seen / (time.perf_counter() - start - paused),
                                     epoch=step / steps_per_epoch)  # fmt: skip
                if progress and (step % 10 == 0 or step == total_steps):
                    elapsed = time.perf_counter() - start
                    bar.set_postfix(
                        loss=f"{running.item():.4f}", samples_s=f"{seen / elapsed:.1f}", refresh=False
                    )
                    bar.update(step - bar.n)
                if step >= total_steps:
                    break
            if on_epoch is not None:
                t0 = time.perf_counter()
                on_epoch(accelerator.unwrap_model(model), epoch)
                model.train()
                freeze_norm_statistics(model)
                paused += time.perf_counter() - t0
    train_s = time.perf_counter() - start - paused
    bar.close()
    model = accelerator.unwrap_model(model)
    model.eval()
    if running is not None and n_proc > 1:
        running = accelerator.reduce(running, "mean")
    final = float(running.item()) if running is not None else float("nan")
    return TrainStats(
        steps=step, samples=seen, train_s=train_s, final_loss=final, samples_per_s=seen / max(train_s, 1e-9)
    )
