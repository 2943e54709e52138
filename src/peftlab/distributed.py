"""Data-parallel processes of one run (`accelerate launch` / torchrun): who this process is, its part of each global
batch, and evaluation gathered from every process exactly once.

`world()` is 1 in a plain run and then nothing here touches torch.distributed; under a launcher `run_experiment` calls
`check(cfg)` and `start(precision)`, the train loop trains on `shard(...)`'s part of each batch, and evaluation goes
through `predict(...)`. Only `is_main()` writes the record, artifacts, store row and stdout.
"""

from __future__ import annotations

import os

from peftlab.errors import BadInput


def world() -> int:
    """How many processes train this run (WORLD_SIZE, set by accelerate launch / torchrun; 1 without them)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_world() -> int:
    """Processes of this run on this machine (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world())))


def physical_cores() -> int:
    """This machine's physical cores (logical ones where psutil cannot tell): what threads and workers share."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def is_main() -> bool:
    return rank() == 0


def check(cfg, n: int | None = None) -> None:
    """What a run on n processes (default: this launch's) needs, as one line each: a task that shards, a global batch
    that divides."""
    n = world() if n is None else n
    if cfg.task == "vqa":
        raise BadInput(f"--task vqa trains its fusion head in one process; this run was started as {n} processes "
                       "(accelerate launch / torchrun): start it as plain `peftlab run ...`")  # fmt: skip
    if cfg.batch_size % n:
        raise BadInput(f"--batch-size {cfg.batch_size} is the global batch and must divide over the {n} processes "
                       f"of this run; give a multiple of {n} (each process takes batch-size / {n})")  # fmt: skip


def start(precision: str) -> None:
    """Join the process group: NCCL on GPUs, gloo on CPU (accelerate picks; cpu=True where torch sees no GPU). The
    first Accelerator fixes the run's mixed precision for every later one (the loop's, evaluation's)."""
    import torch
    from accelerate import Accelerator

    from peftlab.precision import MIXED

    Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=MIXED[precision])


def shard(batch: list[int], n: int | None = None, k: int | None = None) -> list[int]:
    """Process k's contiguous part of a global batch: the parts of k = 0..n-1, concatenated, are the batch. A batch of
    B = n*b gives b each; a short last batch (B < n*b) splits as evenly as it can, larger parts first, and may leave
    a process nothing (B < n)."""
    n, k = world() if n is None else n, rank() if k is None else k
    size, extra = divmod(len(batch), n)
    start = k * size + min(k, extra)
    return batch[start : start + size + (k < extra)]


def predict(model, enc, batch_size: int, forward=None):
    """(N,) predicted class ids in the order of enc, on every process. The length-ordered examples are split over the
    processes by accelerate's prepared DataLoader (the last round padded by repeating early examples so every process
    runs the same number of batches) and `gather_for_metrics` drops that padding: each prediction is counted once.
    batch_size is global, as --batch-size: each process takes ceil(batch_size / world)."""
    import numpy as np
    import torch
    from accelerate import Accelerator

    from peftlab.train.encode import eval_batches

    accelerator = Accelerator()  # the run's state, as start() set it
    forward = forward or (lambda m, b: m(**b).logits)
    order = [
        i for idx in eval_batches(enc, len(enc) or 1) for i in idx
    ]  # longest first: less padding per batch
    loader = torch.utils.data.DataLoader(
        order,
        batch_size=-(-batch_size // world()),
        collate_fn=lambda idx: (torch.tensor(idx), enc.collate(idx, with_labels=False)),
    )
    preds = np.full(len(enc), -1, dtype=np.int64)
    seen = 0
    was_training = model.training
    model.to(accelerator.device).eval()  # (a no-op on CPU; on GPUs the model may not have been placed yet)
    with torch.inference_mode():
        for idx, batch in accelerator.prepare(loader):
            logits = forward(model, batch)  # (b, K) on this process
            idx, pred = accelerator.gather_for_metrics((idx, logits.argmax(-1)))  # (B,) over all processes
            preds[idx.cpu().numpy()] = pred.cpu().numpy()
            seen += len(idx)
    model.train(was_training)
    if (
        seen != len(enc) or (preds < 0).any()
    ):  # gather_for_metrics' promise, checked: never a silent wrong metric
        raise RuntimeError(f"evaluation gathered {seen} predictions for {len(enc)} examples")
    return preds
