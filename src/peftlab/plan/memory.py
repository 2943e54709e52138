"""A run's own peak memory, predicted: what it adds to the process while it runs (the record's `memory.run_peak_mb`).

`peak(parts)` over `parts(...)`: the weights it touches (the checkpoint is memory-mapped: a page counts once read, and a
word-embedding table only at the rows the data uses, unless it trains); in
training the gradients and AdamW's two moments of what trains, the activations the largest batch keeps for its
backward (flops/graph.py's Saved list) and the backward's working set; in evaluation a forward's working set at the
evaluation batch; the encoded data and frozen-prefix caches it builds. Its constants are measured (below): RSS is the
allocator's high-water mark, not the live tensors, and only runs show where it lands.
"""

from __future__ import annotations

MB = 2**20
# What a run holds besides the arithmetic below, measured on this project's runs (MiB): the tokenizer or image
# processor, PEFT's wrappers, autograd's bookkeeping, the allocator's rounding. A run that only loads MiniLM-L6 and
# evaluates from its caches holds ~120 MiB (80 + its 41 MiB of touched weights); one that does the same with
# MobileNetV2 holds ~62 MiB (50 + 9 MiB of weights): no tokenizer, a smaller model object. See docs/plan.md.
RUNTIME_MB = {"transformer": 80.0, "cnn": 50.0}
# The backward's working set above the kept activations: activation gradients, and freed blocks glibc's allocator does
# not hand back between them, measured at ~0.9 × the kept activations (MiniLM-L6 LoRA / IA3 / BitFit / full steps).
# AdamW's moments are made after the first backward, in memory the activations freed: only what exceeds half of
# the kept activations adds to the peak (full fine-tuning of MiniLM-L6: 172 MiB of moments, no growth).
BACKWARD_FACTOR = 0.9
OPTIMIZER_REUSE = 0.5
# see forward_bytes: how many tensors of each distinct activation size a forward without gradients leaves at its
# high-water (text: batches of different lengths make different sizes, so freed blocks are reused less)
FORWARD_COPIES = {"transformer": 4, "cnn": 3}


def saved_bytes(g, batch: int, tokens: int) -> float:
    """Bytes autograd keeps between forward and backward for one training step."""
    total = 0.0
    for s in g.saved:
        total += s.bytes_per * s.numel.at(tokens) * (1 if s.per_step else batch)
    return total


def forward_bytes(g, batch: int, tokens: int, kind: str) -> float:
    """What a forward pass without gradients (evaluation, the frozen-prefix capture) holds at its high-water: each
    distinct activation size a few times (FORWARD_COPIES), the allocator reusing freed blocks of a size it has seen.
    Measured: MobileNetV2 at 64 px, batch 64: 136 MiB (17 sizes summing to 63 MiB, evaluation alone); MiniLM-L6's
    capture over 600 tweets in batches of 64: ~90-150 MiB (4 sizes summing to 30 MiB at 64 tokens)."""
    sizes = {numel.at(tokens) for _what, numel, _b in g.elementwise}
    return FORWARD_COPIES[kind] * 4.0 * batch * sum(sizes)


def parts(*, kind: str, resident_params: int, trainable: int, train_graph, eval_graph, train_steps, eval_steps,
          data_bytes: float, cache_bytes: float, training: bool, capture_graph=None,
          capture_steps=()) -> dict:  # fmt: skip
    """Each part of the peak in MiB (see the module doc)."""
    out = {
        "weights": 4.0 * resident_params / MB,
        "data": data_bytes / MB,
        "prefix_cache": cache_bytes / MB,
        "runtime": RUNTIME_MB[kind],
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
    acts = p.get("activations", 0.0)
    adam = max(p.get("optimizer", 0.0) - OPTIMIZER_REUSE * acts, 0.0)
    train = p.get("gradients", 0.0) + adam + acts + p.get("backward_working_set", 0.0)
    return stays + max(train, p.get("eval_working_set", 0.0), p.get("capture_working_set", 0.0))
