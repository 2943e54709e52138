"""FLOPs from the architecture: what one training step, one evaluation pass and the frozen-prefix capture compute, per
sample (a polynomial in the tokens T for text) and per component, for a method on a model, from its config alone.

`predict_flops(arch, plan, method, knobs, task, anat)` -> FlopPlan (or one without graphs and a `note` saying why);
flops/counter.py measures the same on a real model with torch's FlopCounterMode (the tests hold the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peftlab.flops.graph import Graph, Poly
from peftlab.flops.sites import Effect, Site
from peftlab.flops.step import step_graph, trained_sets, walker
from peftlab.params.layers import Arch
from peftlab.params.plan import Plan, under

__all__ = ["Effect", "FlopPlan", "Site", "cut_block", "effect_of", "predict_flops", "step_graph"]


def effect_of(method, arch: Arch, anat, knobs, task: str, plan: Plan) -> Effect:
    """The method's own effect (its `flops` hook), with norm copies (LN tuning) marked as trained; a method that adds
    weights to a Linear / Conv2d without a hook gets `unsupported` rather than a guess."""
    effect = method.flops(arch, anat, knobs, task, plan) if method.flops is not None else Effect()
    by_name = {x.name: x for x in arch.layers}
    for added in plan.added:
        for name in added.layers:
            if by_name[name].kind == "norm":
                effect.trained.add(name)
            elif name not in effect.adapters and not effect.unsupported:
                effect.unsupported = f"no FLOP formula for {method.name}'s adapters yet"
        if not added.layers and method.flops is None and not effect.unsupported:
            effect.unsupported = f"no FLOP formula for {method.name} yet"
    return effect


def cut_block(arch: Arch, plan: Plan, effect: Effect) -> int | None:
    """Where the frozen-prefix cache cuts (train/cache.py's rule): the first block with a trainable parameter, or the
    number of blocks when only the head trains; None when something before the blocks trains (embeddings, virtual
    tokens) or block 0 trains: then every step runs the whole model."""
    if effect.virtual_tokens or effect.prefix_tokens or effect.encoder is not None:
        return None
    weights, biases = trained_sets(arch, plan)
    trained = weights | {n for n in biases if n in {x.name for x in arch.layers if x.bias}}
    trained |= effect.trained | set(effect.adapters)
    first_block = min(i for i, x in enumerate(arch.layers) if under(x.name, arch.blocks))
    if any(x.name in trained for x in arch.layers[:first_block]):
        return None
    for i, b in enumerate(arch.blocks):
        if any(under(n, [b]) for n in trained):
            return i or None
    return len(arch.blocks)


@dataclass
class FlopPlan:
    """A method on a model as FLOPs. Graphs hold per-sample (and per-step) ops; None when `note` says why not."""

    arch: Arch | None
    train: Graph | None = None  # one training step (the part after the cut when cached)
    eval: Graph | None = None  # one evaluation forward (after the cut when cached)
    capture: Graph | None = None  # the capture pass over the frozen prefix (eval mode), None when uncached
    cut: int | None = None  # first block the step runs when cached; None = uncached
    capture_stop: int | None = None  # the capture pass runs blocks[:capture_stop]
    text: bool = True  # counts are polynomials in T (tokens per sample)
    note: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.train is not None


def predict_flops(arch: Arch | None, plan: Plan | None, method, knobs, task: str, anat, *, image=None,
                  device: str = "cpu", family: str = "") -> FlopPlan:  # fmt: skip
    """FLOPs of `method` on `arch` (params.families.architecture) with its parameter plan; image (h, w) for images."""
    if arch is None or walker(arch) is None:
        return FlopPlan(arch, note=f"no FLOP formula for {family or (arch.family if arch else '?')} yet")
    if plan is None or plan.unsupported:
        return FlopPlan(arch, note=f"no FLOP formula: {plan.unsupported if plan else 'no parameter plan'}")
    effect = effect_of(method, arch, anat, knobs, task, plan)
    if effect.unsupported:
        return FlopPlan(arch, note=effect.unsupported)
    text = "image" not in arch.info
    if image is None and not text:
        image = tuple(arch.info["image"])
    cut = cut_block(arch, plan, effect)
    n = len(arch.blocks)
    kw = {"image": image, "device": device}
    out = FlopPlan(arch, text=text, cut=cut, notes=list(effect.notes))
    start = cut or 0
    if method.needs_training:
        out.train = step_graph(arch, plan, effect, training=True, start=start, **kw)
    else:
        out.train = Graph(training=True, composite_attention=False)  # nothing trains: no step
    out.eval = step_graph(arch, plan, effect, training=False, start=start, **kw)
    if cut is not None:
        # head and last-layer cuts share one pass that stops after the last block (train/cache.py prefix_inputs)
        out.capture_stop = cut if cut < n - 1 else n
        out.capture = step_graph(arch, plan, effect, training=False, stop=out.capture_stop, **kw)
    return out


def totals(g: Graph) -> tuple[Poly, Poly, Poly, Poly]:
    """(forward per sample, backward per sample, forward per step, backward per step) of a graph."""
    fs = bs = fp = bp = Poly()
    for op in g.ops:
        if op.per_step:
            fp, bp = fp + op.fwd, bp + op.bwd
        else:
            fs, bs = fs + op.fwd, bs + op.bwd
    return fs, bs, fp, bp


def batch_flops(g: Graph, batch: int, tokens: int) -> int:
    """FLOPs of one pass over a batch of `batch` samples padded to `tokens` tokens (forward + backward)."""
    fs, bs, fp, bp = totals(g)
    return int((fs + bs).at(tokens) * batch + (fp + bp).at(tokens))
