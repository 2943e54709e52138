"""A run's own peak memory, predicted: what it adds to the process while it runs (the record's `memory.run_peak_mb`).

`peak(parts)` over `parts(...)`: the weights it loads (twice: see LOADED_COPIES); in
training the gradients and AdamW's two moments of what trains, the activations the largest batch keeps for its
backward (flops/graph.py's Saved list) and the backward's working set; in evaluation a forward's working set at the
evaluation batch; the encoded data and frozen-prefix caches it builds. The two factors are measured (see below).
"""

from __future__ import annotations

MB = 2**20
# What a run holds besides the arithmetic below, measured on this project's runs (MiB): the tokenizer or image
# processor, PEFT's wrappers, autograd's bookkeeping, the allocator's rounding. See docs/plan.md.
RUNTIME_MB = 40.0
# A run's RSS grows by about twice its fp32 weights while it loads the checkpoint and first runs the model (the file's
# pages and the tensors; measured: baseline and head runs of MiniLM-L6 add ~2 × 87 MiB besides caches and data).
LOADED_COPIES = 2
# The backward's working set above the kept activations: activation gradients, and freed blocks glibc's allocator does
# not hand back between them, measured at ~0.7 × the kept activations (MiniLM-L6 LoRA / IA3 / BitFit steps).
BACKWARD_FACTOR = 0.7
# see forward_bytes: how many tensors of each distinct activation size a forward holds at once (transformers: an op's
# input and output; CNNs: a conv's output, its BatchNorm's and its activation's)
FORWARD_COPIES = {"transformer": 2, "cnn": 3}


def _largest(g, batch: int, tokens: int) -> float:
    """Bytes of the largest activation one op of g writes for this batch (its output)."""
    sizes = [x[1].at(tokens) for x in g.elementwise]
    return 4.0 * batch * max(sizes, default=0.0)


def saved_bytes(g, batch: int, tokens: int) -> float:
    """Bytes autograd keeps between forward and backward for one training step."""
    total = 0.0
    for s in g.saved:
        total += s.bytes_per * s.numel.at(tokens) * (1 if s.per_step else batch)
    return total


def forward_bytes(g, batch: int, tokens: int, kind: str) -> float:
    """What a forward pass without gradients (evaluation, the frozen-prefix capture) holds at its high-water: each
    distinct activation size a few times (FORWARD_COPIES), the allocator reusing freed blocks of a size it has seen.
    Measured: MobileNetV2 at 64 px, batch 64: 136 MiB (17 sizes summing to 63 MiB); MiniLM-L6, batch 64 × 64 tokens:
    ~75 MiB (4 sizes summing to 30 MiB)."""
    sizes = {numel.at(tokens) for _what, numel, _b in g.elementwise}
    return FORWARD_COPIES[kind] * 4.0 * batch * sum(sizes)


def parts(*, kind: str, total_params: int, trainable: int, train_graph, eval_graph, train_steps, eval_steps,
          data_bytes: float, cache_bytes: float, training: bool, capture_graph=None,
          capture_steps=()) -> dict:  # fmt: skip
    """Each part of the peak in MiB (see the module doc)."""
    out = {
        "weights": LOADED_COPIES * 4.0 * total_params / MB,
        "data": data_bytes / MB,
        "prefix_cache": cache_bytes / MB,
        "runtime": RUNTIME_MB,
    }
    train_steps, eval_steps = set(train_steps), set(eval_steps)  # distinct shapes
    if training and train_steps:
        acts = max(saved_bytes(train_graph, b, t) for b, t in train_steps)
        work = max(
            BACKWARD_FACTOR * acts, max(forward_bytes(train_graph, b, t, kind) for b, t in train_steps)
        )
        out.update(gradients=4.0 * trainable / MB, optimizer=8.0 * trainable / MB, activations=acts / MB,
                   backward_working_set=work / MB)  # fmt: skip
    if eval_steps:
        out["eval_working_set"] = max(forward_bytes(eval_graph, b, t, kind) for b, t in eval_steps) / MB
    if capture_graph is not None and capture_steps:
        out["capture_working_set"] = (
            max(forward_bytes(capture_graph, b, t, kind) for b, t in set(capture_steps)) / MB
        )
    return out


def peak(p: dict) -> float:
    """The peak: what stays (weights, data, caches, runtime) + the larger of the training and evaluation phases."""
    stays = p["weights"] + p["data"] + p["prefix_cache"] + p["runtime"]
    train = sum(p.get(k, 0.0) for k in ("gradients", "optimizer", "activations", "backward_working_set"))
    return stays + max(train, p.get("eval_working_set", 0.0), p.get("capture_working_set", 0.0))
