"""CNN classifiers' steps as ops: MobileNetV2 (a chain of conv + BatchNorm with residual adds) and ResNet (blocks whose
1x1 shortcut conv reads the block's input); spatial sizes follow each conv's stride. Used by flops/step.py.

Each conv pads k // 2, so an output side is (side - 1) // stride + 1; ResNet's stem adds a 3×3 stride-2 max pool.
"""

from __future__ import annotations

from peftlab.flops.graph import Act, Dim, Graph
from peftlab.params.plan import under


def out_side(side: int, k: int, stride: int) -> int:
    # padding k // 2: (side + 2·(k // 2) - k) // stride + 1
    return (side + 2 * (k // 2) - k) // stride + 1


def _conv(g: Graph, ctx, layer, x: Act, hw: tuple[int, int]) -> tuple[Act, tuple[int, int]]:
    k = layer.shape[2]
    hw_out = (out_side(hw[0], k, layer.stride), out_side(hw[1], k, layer.stride))
    return ctx.run(g, ctx.site(layer, hw_in=hw, hw_out=hw_out), x), hw_out


def _recording(g: Graph, ctx, name: str, arch) -> bool:
    """Record ops of blocks start .. stop-1 only: what precedes a cut is read from the cache, not run (it holds no
    trainable parameter, so nothing after it needs its gradient either), and a capture pass stops at its block."""
    blocks = arch.blocks
    index = next((i for i, b in enumerate(blocks) if under(name, [b])), None)
    stop = len(blocks) if ctx.stop is None else ctx.stop
    if index is None:  # stem (before the blocks) or what follows them (final conv, head)
        after = any(x.name == name for x in arch.layers[_first_after(arch) :])
        return ctx.head if after else ctx.start == 0
    return ctx.start <= index < stop


def _first_after(arch) -> int:
    """Index in arch.layers of the first layer after the last block."""
    last = max(i for i, x in enumerate(arch.layers) if under(x.name, arch.blocks))
    return last + 1


def _head(g: Graph, ctx, arch, x: Act) -> None:
    """Global average pool -> dropout -> classifier (1 row per sample)."""
    pooled = g.ew(x, what="pool", numel=ctx.width_of_features)
    for layer in [x for x in arch.layers if x.kind == "linear"]:
        pooled = ctx.run(g, ctx.site(layer, rows=Dim.of(1)), pooled)


def walk_mobilenet(g: Graph, arch, ctx) -> None:
    hw = ctx.image
    x = g.data()
    block_in, block = x, None
    for layer in arch.layers:
        if layer.kind == "linear":
            break
        with g.recorded(_recording(g, ctx, layer.name, arch)):
            if layer.block != block:  # a new inverted residual: its input may be added back at its end
                block, block_in = layer.block, x
            if layer.kind == "conv":
                x, hw = _conv(g, ctx, layer, x, hw)
            else:  # BatchNorm (+ ReLU6); after a block's reduce conv, the residual add when shapes allow
                x = g.ew(x, trains=ctx.trains(layer), what="batchnorm", keep_in=True, keep_new=1)
                if layer.name.endswith("reduce_1x1.normalization") and block is not None:
                    x = g.ew(x, block_in, what="residual")
    if ctx.head:
        _head(g, ctx, arch, x)


def walk_resnet(g: Graph, arch, ctx) -> None:
    hw = ctx.image
    x = g.data()
    unit, unit_in, shortcut = None, x, None
    for layer in arch.layers:
        if layer.kind == "linear":
            break
        name = layer.name
        with g.recorded(_recording(g, ctx, name, arch)):
            if ".layers." in name:
                this = name.split(".layer.")[0].split(".shortcut.")[0]  # resnet.encoder.stages.s.layers.j
                if this != unit:
                    x = _close(g, unit, x, unit_in, shortcut)
                    unit, unit_in, shortcut, hw_in = this, x, None, hw
                if ".shortcut." in name:
                    if layer.kind == "conv":
                        shortcut, _ = _conv(g, ctx, layer, unit_in, hw_in)
                    else:
                        shortcut = g.ew(shortcut, trains=ctx.trains(layer), what="batchnorm", keep_in=True)
                    continue
            if layer.kind == "conv":
                x, hw = _conv(g, ctx, layer, x, hw)
            else:
                x = g.ew(x, trains=ctx.trains(layer), what="batchnorm", keep_in=True, keep_new=1)
                if name.endswith("embedder.embedder.normalization"):
                    hw = (out_side(hw[0], 3, 2), out_side(hw[1], 3, 2))  # max pool 3×3, stride 2
    x = _close(g, unit, x, unit_in, shortcut)
    if ctx.head:
        _head(g, ctx, arch, x)


def _close(g: Graph, unit, x: Act, unit_in: Act, shortcut) -> Act:
    """End of a ResNet block: the main path + (the shortcut conv's output, or the block's input), then ReLU."""
    if unit is None:
        return x
    return g.ew(x, shortcut if shortcut is not None else unit_in, what="residual")
