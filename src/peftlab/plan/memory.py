"""A run's own peak memory, predicted: what it adds to the process while it runs (the record's `memory.run_peak_mb`).

`peak(parts)` over `parts(...)`: the weights it loads; in training the gradients and AdamW's two moments of what trains,
the activations the largest batch keeps for its backward (flops/graph.py's Saved list) and the backward's working set;
in evaluation a forward's working set at the evaluation batch; the encoded data and frozen-prefix caches it builds.
"""

from __future__ import annotations

MB = 2**20
# What a run holds besides the arithmetic below, measured on this project's runs (MiB): the tokenizer or image
# processor, PEFT's wrappers, autograd's bookkeeping, the allocator's rounding. See docs/plan.md.
RUNTIME_MB = 40.0


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


def parts(*, total_params: int, trainable: int, train_graph, eval_graph, train_steps, eval_steps,
          data_bytes: float, cache_bytes: float, training: bool) -> dict:  # fmt: skip
    """Each part of the peak in MiB (see the module doc)."""
    weights = 4.0 * total_params
    out = {
        "weights": weights / MB,
        "data": data_bytes / MB,
        "prefix_cache": cache_bytes / MB,
        "runtime": RUNTIME_MB,
    }
    train_steps, eval_steps = set(train_steps), set(eval_steps)  # distinct shapes
    if training and train_steps:
        acts = max(saved_bytes(train_graph, b, t) for b, t in train_steps)
        work = max(3 * _largest(train_graph, b, t) for b, t in train_steps)
        out.update(gradients=4.0 * trainable / MB, optimizer=8.0 * trainable / MB, activations=acts / MB,
                   backward_working_set=work / MB)  # fmt: skip
    if eval_steps:
        out["eval_working_set"] = max(3 * _largest(eval_graph, b, t) for b, t in eval_steps) / MB
    return out


def peak(p: dict) -> float:
    """The peak: what stays (weights, data, caches, runtime) + the larger of the training and evaluation phases."""
    stays = p["weights"] + p["data"] + p["prefix_cache"] + p["runtime"]
    train = sum(p.get(k, 0.0) for k in ("gradients", "optimizer", "activations", "backward_working_set"))
    return stays + max(train, p.get("eval_working_set", 0.0))
