"""One forward (and backward) pass of a prepared model as ops: the family walker (flops/transformer.py, flops/cnn.py) over
the method's effect, from a block `start` (a cached prefix ends there) to a block `stop` (a capture pass ends there).

`step_graph(arch, plan, effect, training=True, image=(64, 64))` -> Graph; flops/__init__.py sums its ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.flops import cnn, transformer
from peftlab.flops.graph import TOKENS, Act, Dim, Graph, Poly
from peftlab.flops.sites import Effect, Site
from peftlab.params.layers import Arch, Layer
from peftlab.params.plan import Plan, under

WALKERS = {  # family -> walker; transformers share one (flops/transformer.py)
    "mobilenet_v2": cnn.walk_mobilenet,
    "resnet": cnn.walk_resnet,
}


def walker(arch: Arch):
    """The walker for this architecture, or None (a family the FLOP arithmetic does not cover yet)."""
    if arch.kind == "transformer":
        return transformer.walk if arch.model_class in transformer.HEADS and "heads" in arch.info else None
    return WALKERS.get(arch.family)


def trained_sets(arch: Arch, plan: Plan) -> tuple[set[str], set[str]]:
    """(layers whose weight trains, layers whose bias trains): planned weights and biases, and PEFT's trainable copies
    of modules_to_save (the forward runs the copy)."""
    weights = set(plan.train_weight) | {x.name for x in arch.layers if under(x.name, plan.copied)}
    return weights, set(plan.train_bias) | weights


@dataclass
class Walk:
    """What a walker needs besides the graph: the model, what trains, the method's effect, the shapes, the range."""

    arch: Arch
    effect: Effect
    weights: set[str]
    biases: set[str]
    tokens: Dim = TOKENS
    image: tuple[int, int] | None = None
    start: int = 0
    stop: int | None = None
    training: bool = True
    head: bool = True  # what follows the blocks runs (False: a capture pass, stopped at block `stop`)
    prefix: Act | None = None  # prefix tuning: the trained keys and values every block's attention reads

    @property
    def dropout(self) -> int:
        """1 when the blocks' hidden dropout runs (training, p > 0): a mask kept per dropout site."""
        return int(self.training and self.arch.info.get("hidden_dropout", 0.0) > 0)

    @property
    def width(self) -> int:
        """Hidden size H of a transformer (the first query's input width)."""
        return next(x.in_features for x in self.arch.layers if x.role == "query")

    @property
    def width_of_features(self) -> Poly:
        return Poly.of(next(x.in_features for x in self.arch.layers if x.kind == "linear"))

    def trains(self, layer: Layer) -> bool:
        """Any parameter of the layer trains (its output then needs a gradient)."""
        n = layer.name
        return n in self.weights or (n in self.biases and layer.bias > 0) or n in self.effect.trained

    def site(self, layer: Layer, rows: Dim | None = None, hw_in=(1, 1), hw_out=(1, 1)) -> Site:
        trains = layer.name in self.weights
        bias = trains or (layer.name in self.biases and layer.bias > 0)
        return Site(layer, rows, hw_in, hw_out, trains, bias)

    def run(self, g: Graph, site: Site, x: Act) -> Act:
        """The layer (with the method's adapter, where it adapts it), its ops counted in the layer's component."""
        with g.at(site.layer.component, site.layer.block):
            hook = self.effect.adapters.get(site.layer.name)
            return hook(g, site, x) if hook is not None else site.base(g, x)


def step_graph(arch: Arch, plan: Plan, effect: Effect, *, training: bool, image=None, start: int = 0,
               stop: int | None = None, device: str = "cpu") -> Graph:  # fmt: skip
    """The ops of one pass: training (forward + backward, train mode) or not (forward, eval mode)."""
    # peftlab's CPU training runs attention with dropout as two matmuls (train/dropout.py); otherwise one SDPA kernel
    composite = training and device == "cpu" and arch.info.get("attention_dropout", 0.0) > 0
    g = Graph(training=training, composite_attention=composite)
    weights, biases = trained_sets(arch, plan)
    if image is None and "image" in arch.info:
        image = tuple(arch.info["image"])
    walk = Walk(
        arch, effect, weights, biases, TOKENS, image, start, stop, training=training, head=stop is None
    )
    walker(arch)(g, arch, walk)
    if training and effect.per_step is not None and start < len(arch.blocks) and stop is None:
        effect.per_step(g)
    return g
